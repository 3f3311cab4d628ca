import type { JsMsg } from "@hsmfleet/bus";
import { errorMessage } from "@hsmfleet/core";
import { jobRootFor } from "@hsmfleet/fs";
import type { HsmBackend } from "@hsmfleet/fs";
import { HsmItemStatus } from "@hsmfleet/protocol";
import type { HsmActionItem, HsmActionList, HsmItemResult, JobStatus } from "@hsmfleet/protocol";

import { REQUEST_FOR_ACTION, endItemStep, result, startItemStep } from "./hsm-results.js";

/**
 * An action list on the lustre backend: one `lfs hsm_<action>` batch per action kind in the list;
 * a refused batch goes per file, so each refusal is named. Every file is named beneath the job
 * root's fd, no symlink followed (lustre-paths.ts in fs).
 */
export const runLustreList = async (
  backend: HsmBackend,
  job: JobStatus,
  list: HsmActionList,
  msg: JsMsg,
): Promise<HsmItemResult[]> => {
  const root = await jobRootFor(job.spec.root);
  const byAction = new Map<number, HsmActionItem[]>();
  for (const item of list.items) {
    const group = byAction.get(item.action) ?? [];
    group.push(item);
    byAction.set(item.action, group);
  }
  const results: HsmItemResult[] = [];
  for (const [action, items] of byAction) {
    const request = REQUEST_FOR_ACTION[action];
    const rels = items.map((i) => i.path);
    if (!request) {
      for (const i of items)
        results.push(result(i, HsmItemStatus.Failed, `unknown action ${action}`));
      continue;
    }
    try {
      await backend.requestMany(request, root, rels, { archiveId: list.archiveId });
      for (const i of items) results.push(result(i, HsmItemStatus.Done));
    } catch {
      for (const [k, i] of items.entries()) {
        try {
          await backend.requestMany(request, root, [rels[k]!], { archiveId: list.archiveId });
          results.push(result(i, HsmItemStatus.Done));
        } catch (err) {
          results.push(result(i, HsmItemStatus.Failed, errorMessage(err)));
        }
      }
    }
  }
  // The copytool moves the data: only failures are traced (or every item with a threshold of 0).
  for (const r of results) endItemStep(startItemStep(msg, list.jobId, r), r);
  return results;
};
