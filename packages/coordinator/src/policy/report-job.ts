import { Kvm } from "@nats-io/kv";
import type { NatsConnection, TopologyOptions } from "@hsmfleet/bus";
import { emptyReportTally } from "@hsmfleet/core";
import type { PolicyFile, ReportTally } from "@hsmfleet/core";
import type { Logger } from "@hsmfleet/telemetry";
import { runPolicyEvaluation } from "./policy-job.js";
import { POLICY_STATE_BUCKET } from "./policy-serve.js";

export interface ReportOptions {
  nc: NatsConnection;
  root: string;
  /** File classes to count by (a policy file's); none: every file is "(none)". */
  file?: PolicyFile | undefined;
  /** Length of the oldest-files and top-directories lists. Default 20. */
  top?: number | undefined;
  signal?: AbortSignal | undefined;
  logger?: Logger | undefined;
  topology?: TopologyOptions | undefined;
}

export const REPORT_DEFAULTS = { top: 20 } as const;

export interface FleetReport extends ReportTally {
  jobId: string;
  root: string;
  state: string;
  atMs: number;
  entries: number;
  errors: number;
  elapsedMs: number;
}

/** The report the dashboard shows: the last one made, in the policy state bucket. */
export const LAST_REPORT_KEY = "report";

const NO_FILE: PolicyFile = {
  settings: {
    backend: "hsm-emulation",
    hsmXattr: "trusted.hsm",
    lfsPath: "lfs",
    archiveId: 1,
    container: "",
    prefix: "",
    partitions: 16,
  },
  classes: [],
  policies: [],
};

/**
 * `hsmfleet report`: a distributed walk (the policy job kind with no policy) whose shards send
 * their tallies; the coordinator adds them up in bounded memory. The result is also kept as the
 * last report in KV (the dashboard shows it).
 */
export const runReport = async (o: ReportOptions): Promise<FleetReport> => {
  const file = o.file ?? NO_FILE;
  const ev = await runPolicyEvaluation({
    nc: o.nc,
    file,
    root: o.root,
    reportTop: o.top ?? REPORT_DEFAULTS.top,
    topK: 0,
    signal: o.signal,
    logger: o.logger,
    topology: o.topology,
  });
  const report: FleetReport = {
    jobId: ev.jobId,
    root: o.root,
    state: ev.state,
    atMs: Date.now(),
    entries: ev.entries,
    errors: ev.errors,
    elapsedMs: ev.elapsedMs,
    ...(ev.report ?? emptyReportTally()),
  };
  const kv = await new Kvm(o.nc).create(POLICY_STATE_BUCKET, { history: 1 });
  await kv.put(LAST_REPORT_KEY, JSON.stringify(report)).catch((err: unknown) => {
    o.logger?.warn({ err }, "report: not kept for the dashboard");
  });
  return report;
};
