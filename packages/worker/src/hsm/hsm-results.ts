import type { JsMsg } from "@hsmfleet/bus";
import type { HsmRequestName } from "@hsmfleet/core";
import { HsmAction, HsmItemStatus } from "@hsmfleet/protocol";
import type { HsmActionItem, HsmActionList, HsmItemResult } from "@hsmfleet/protocol";
import { startStep } from "@hsmfleet/telemetry";
import type { TracedStep } from "@hsmfleet/telemetry";

/** HSM action lists: the request of each action, item results, and their spans. */
export const REQUEST_FOR_ACTION: Partial<Record<number, HsmRequestName>> = {
  [HsmAction.Archive]: "archive",
  [HsmAction.Release]: "release",
  [HsmAction.Restore]: "restore",
  [HsmAction.Remove]: "remove",
  [HsmAction.Cancel]: "cancel",
};

export const result = (item: HsmActionItem, status: HsmItemStatus, error = ""): HsmItemResult => ({
  fid: item.fid,
  cookie: item.cookie,
  action: item.action,
  path: item.path,
  status,
  error,
  bytes: 0,
});

export const OUTCOME_OF_STATUS: Partial<Record<number, string>> = {
  [HsmItemStatus.Done]: "ok",
  [HsmItemStatus.Skipped]: "skipped",
  [HsmItemStatus.Cancelled]: "cancelled",
  [HsmItemStatus.Failed]: "error",
};

/** The action a list carries ("archive", …; "mixed" for a list of several, as a copytool's can be). */
export const listActionName = (list: HsmActionList): string => {
  const first = list.items[0]?.action;
  if (first === undefined) return "empty";
  if (list.items.some((i) => i.action !== first)) return "mixed";
  return REQUEST_FOR_ACTION[first] ?? `action-${first}`;
};

/** The list's span attributes: items by outcome and bytes moved. */
export const listSpanAttributes = (
  list: HsmActionList,
  action: string,
  results: HsmItemResult[],
): Record<string, string | number> => {
  const counts = { done: 0, skipped: 0, cancelled: 0, failed: 0 };
  let bytes = 0;
  for (const r of results) {
    bytes += r.bytes;
    if (r.status === HsmItemStatus.Done) counts.done++;
    else if (r.status === HsmItemStatus.Skipped) counts.skipped++;
    else if (r.status === HsmItemStatus.Cancelled) counts.cancelled++;
    else counts.failed++;
  }
  return {
    "hsmfleet.hsm.action": action,
    "hsmfleet.hsm.list_id": list.listId,
    "hsmfleet.hsm.partition": list.partition,
    "hsmfleet.files": results.length,
    "hsmfleet.hsm.done": counts.done,
    "hsmfleet.hsm.skipped": counts.skipped,
    "hsmfleet.hsm.cancelled": counts.cancelled,
    "hsmfleet.hsm.failed": counts.failed,
    "hsmfleet.errors": counts.failed,
    "hsmfleet.bytes": bytes,
  };
};

/** One action on one file ("archive file"), a child of its list's span (see startStep's rule). */
export const startItemStep = (
  msg: JsMsg,
  jobId: string,
  item: Pick<HsmActionItem, "action" | "fid" | "path">,
): TracedStep =>
  startStep(msg, `${REQUEST_FOR_ACTION[item.action] ?? "hsm"} file`, {
    jobId,
    path: item.path,
    attributes: { "hsmfleet.hsm.fid": item.fid },
  });

export const endItemStep = (step: TracedStep, r: HsmItemResult): void =>
  step.end(OUTCOME_OF_STATUS[r.status] ?? "error", {
    bytes: r.bytes,
    ...(r.status === HsmItemStatus.Failed ? { err: new Error(r.error) } : {}),
  });
