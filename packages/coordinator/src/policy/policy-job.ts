import { hostname } from "node:os";
import { JobStore, ensureTopology, jetstream, traceHeaders } from "@hsmfleet/bus";
import type { NatsConnection, TopologyOptions } from "@hsmfleet/bus";
import { ReportBuilder, TopK } from "@hsmfleet/core";
import type { PolicyEvaluation, PolicyFile, ReportTally, ResolvedPolicy } from "@hsmfleet/core";
import {
  JobKind,
  candidateBefore,
  decodePolicyCandidates,
  jobStateName,
  newJobSpec,
  newJobStatus,
  rootWalkShard,
} from "@hsmfleet/protocol";
import type { PolicyCandidate } from "@hsmfleet/protocol";
import { markStartup } from "@hsmfleet/telemetry";
import type { Logger } from "@hsmfleet/telemetry";
import { followJob } from "../job-follower.js";
import { newJobId } from "../job-id.js";
import { publishRootShard } from "../root-shards.js";
import { checkScanRoot, safeUser } from "../scan/scan-job.js";

export interface PolicyEvaluationOptions {
  nc: NatsConnection;
  file: PolicyFile;
  /** The policy evaluated; a report walk has none. */
  policy?: ResolvedPolicy | undefined;
  /** Report walks: the root walked (default: the policy's) and the length of the lists. */
  root?: string | undefined;
  reportTop?: number | undefined;
  /** Candidates kept per shard and after the merge. Default: the policy's max_actions. */
  topK?: number | undefined;
  /** Ages are measured from this instant on every worker. Default: now. */
  nowMs?: number | undefined;
  /** Per-user/group runs: only these owners' files. */
  onlyUids?: number[] | undefined;
  onlyGids?: number[] | undefined;
  jobId?: string | undefined;
  signal?: AbortSignal | undefined;
  logger?: Logger | undefined;
  topology?: TopologyOptions | undefined;
}

export interface PolicyEvaluationResult {
  jobId: string;
  state: string;
  /** Entries and files walked, errors. */
  entries: number;
  files: number;
  errors: number;
  /** Every file the policy would act on, and their bytes. */
  eligible: number;
  eligibleBytes: number;
  /** The best `topK` of them, first to act on first. */
  candidates: PolicyCandidate[];
  /** Report walks: the merged tallies. */
  report?: ReportTally | undefined;
  elapsedMs: number;
}

/**
 * A policy run's evaluation: a distributed walk (the shared walk, job kind `policy`) in which every
 * worker evaluates the rules per entry and keeps the shard's best K candidates; the coordinator
 * merges them into its own top-K as they arrive (distributed top-K), so its memory is O(K) however
 * many files the tree holds.
 */
export const runPolicyEvaluation = async (
  o: PolicyEvaluationOptions,
): Promise<PolicyEvaluationResult> => {
  const started = Date.now();
  markStartup("job-begin");
  const what = o.policy ? `policy ${o.policy.name}` : "report";
  const root = await checkScanRoot(o.root ?? o.policy?.root ?? "", `${what}: root`);
  const topK = o.topK ?? o.policy?.limits.maxActions ?? 0;
  const evaluation: PolicyEvaluation = {
    policy: o.policy,
    classes: o.file.classes,
    nowMs: o.nowMs ?? Date.now(),
    topK,
    backend: o.file.settings.backend,
    onlyUids: o.onlyUids,
    onlyGids: o.onlyGids,
    reportTop: o.reportTop,
  };
  const { jobs } = await ensureTopology(o.nc, o.topology);
  markStartup("job-topology");
  const store = new JobStore(jobs);
  const jobId = o.jobId ?? newJobId(o.policy ? `policy-${o.policy.name}` : "report");
  const status = newJobStatus(
    newJobSpec({
      jobId,
      kind: JobKind.Policy,
      root: Buffer.from(root),
      backend: o.file.settings.backend,
      hsmXattr: o.file.settings.hsmXattr,
      maxErrors: -1,
      createdAtMs: started,
      createdBy: `${safeUser()}@${hostname()}`,
      policy: JSON.stringify(evaluation),
    }),
    {
      published: 1,
      outstanding: [rootWalkShard(jobId).shardId],
      coordinator: `${hostname()}:${process.pid}`,
    },
  );
  await store.create(status);
  markStartup("job-record");
  const js = jetstream(o.nc);
  await publishRootShard(js, status, rootWalkShard(jobId), traceHeaders(o));
  markStartup("job-published");
  o.logger?.info({ jobId, policy: o.policy?.name, root }, `${what}: evaluation started`);
  const merged = new TopK<PolicyCandidate>(topK, candidateBefore);
  const report = o.reportTop === undefined ? undefined : new ReportBuilder(o.reportTop);
  let eligible = 0;
  let eligibleBytes = 0;
  const final = await followJob({
    nc: o.nc,
    js,
    store,
    status,
    signal: o.signal,
    logger: o.logger,
    onCandidates: (data) => {
      const batch = decodePolicyCandidates(data);
      if (batch.jobId !== jobId) return;
      eligible += batch.eligible;
      eligibleBytes += batch.eligibleBytes;
      for (const c of batch.candidates.slice(0, topK)) merged.offer(c);
      if (batch.report) report?.merge(batch.report);
    },
  });
  const s = final.scan;
  return {
    jobId,
    state: jobStateName(final.state),
    entries: s.files + s.directories + s.symlinks + s.other,
    files: s.files,
    errors: s.errors,
    eligible,
    eligibleBytes,
    candidates: merged.sorted(),
    report: report?.build(),
    elapsedMs: Date.now() - started,
  };
};
