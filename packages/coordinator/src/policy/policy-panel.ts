import { Kvm } from "@nats-io/kv";
import type { NatsConnection } from "@hsmfleet/bus";
import type { Tally } from "@hsmfleet/core";
import { POLICY_STATE_BUCKET } from "./policy-serve.js";
import type { PolicyState } from "./policy-serve.js";
import { LAST_REPORT_KEY } from "./report-job.js";
import type { FleetReport } from "./report-job.js";

/** What the dashboard shows of the policy engine: watermarks, last runs, the last report. */
export interface PolicyPanel {
  watermarks: {
    policy: string;
    target: string;
    percent: number;
    highPercent: number;
    lowPercent: number;
    atMs: number;
  }[];
  runs: {
    policy: string;
    action: string;
    trigger: string;
    endMs: number;
    done: number;
    failed: number;
    bytes: number;
    stoppedBy: string;
    suspended: boolean;
  }[];
  removals: { policy: string; pending: number; removed: number; failed: number; backlog: number }[];
  report?:
    | { atMs: number; root: string; jobId: string; files: Tally; byState: Record<string, Tally> }
    | undefined;
}

/** Reads the policy state bucket (empty panel when no policy serve or report ran yet). */
export const readPolicyPanel = async (nc: NatsConnection): Promise<PolicyPanel> => {
  const panel: PolicyPanel = { watermarks: [], runs: [], removals: [] };
  let kv;
  try {
    kv = await new Kvm(nc).open(POLICY_STATE_BUCKET);
    await kv.status();
  } catch {
    return panel;
  }
  for await (const key of await kv.keys()) {
    const e = await kv.get(key);
    if (!e || e.operation !== "PUT") continue;
    try {
      if (key === LAST_REPORT_KEY) {
        const r = JSON.parse(e.string()) as FleetReport;
        panel.report = {
          atMs: r.atMs,
          root: r.root,
          jobId: r.jobId,
          files: r.files,
          byState: r.byState,
        };
        continue;
      }
      const s = JSON.parse(e.string()) as PolicyState;
      for (const u of s.usage?.samples ?? [])
        panel.watermarks.push({
          policy: s.policy,
          target: u.target,
          percent: u.percent,
          highPercent: s.usage!.highPercent,
          lowPercent: s.usage!.lowPercent,
          atMs: s.usage!.atMs,
        });
      if (s.lastRun)
        panel.runs.push({
          policy: s.policy,
          action: s.action,
          trigger: s.lastTrigger,
          endMs: s.lastRunEndMs,
          done: s.lastRun.done,
          failed: s.lastRun.failed,
          bytes: s.lastRun.bytesDone,
          stoppedBy: s.lastRun.stoppedBy,
          suspended: s.lastRun.suspended,
        });
      if (s.removals)
        panel.removals.push({
          policy: s.policy,
          pending: s.removals.pending,
          removed: s.removals.removed,
          failed: s.removals.failed,
          backlog: s.removals.backlog,
        });
    } catch {
      // a record this version cannot read: left out
    }
  }
  return panel;
};
