import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import type { NatsConnection, TopologyOptions } from "@hsmfleet/bus";
import { UsageError, displayPath } from "@hsmfleet/core";
import type { PolicyFile, ResolvedPolicy } from "@hsmfleet/core";
import { HsmItemStatus } from "@hsmfleet/protocol";
import type { PolicyCandidate } from "@hsmfleet/protocol";
import type { Logger } from "@hsmfleet/telemetry";
import { runHsmJob } from "../hsm/hsm-job.js";
import { runPolicyEvaluation } from "./policy-job.js";
import type { PolicyEvaluationResult } from "./policy-job.js";
import { TokenBucket } from "./token-bucket.js";

export interface PolicyRunOptions {
  nc: NatsConnection;
  file: PolicyFile;
  /** The policy to run (by name). */
  name: string;
  /** Dry run: evaluate and list what would be done; nothing is changed. */
  execute: boolean;
  /**
   * Stop once the actions carried out add up to this many bytes (a watermark run: the bytes to
   * free to get under the low watermark). Default: no byte target.
   */
  targetBytes?: number | undefined;
  /** Re-measures the target between waves (usage may change while the run goes). */
  remainingBytes?: (() => Promise<number>) | undefined;
  onlyUids?: number[] | undefined;
  onlyGids?: number[] | undefined;
  nowMs?: number | undefined;
  /** Actions per HSM job (wave) when no rate limit sets it. Default 5,000. */
  waveMaxActions?: number | undefined;
  partitions?: number | undefined;
  signal?: AbortSignal | undefined;
  logger?: Logger | undefined;
  topology?: TopologyOptions | undefined;
  /** After the evaluation, before any action (logging; tests change the tree here). */
  onEvaluated?: ((summary: PolicyRunSummary) => Promise<void> | void) | undefined;
  /** Each action's outcome. */
  onAction?:
    ((path: string, status: "done" | "skipped" | "failed", error: string) => void) | undefined;
}

export const POLICY_RUN_DEFAULTS = { waveMaxActions: 5_000 } as const;

export interface PolicyRunSummary {
  policy: string;
  action: string;
  mode: "dry-run" | "execute";
  evaluationJob: string;
  /** How the evaluation walk ended (succeeded, failed, cancelled) and its errors. */
  evaluationState: string;
  walkErrors: number;
  hsmJobs: string[];
  entries: number;
  files: number;
  eligible: number;
  eligibleBytes: number;
  /** Chosen from the candidates (in order) under the limits and the byte target. */
  selected: number;
  selectedBytes: number;
  done: number;
  skipped: number;
  failed: number;
  bytesDone: number;
  /** Why the run stopped taking candidates. */
  stoppedBy: "target reached" | "max actions" | "max bytes" | "no more candidates" | "suspended";
  suspended: boolean;
  suspendReason: string;
  /** The first selected files (dry run: what would be done), at most 100. */
  sample: { path: string; size: number; rule: string; key: number }[];
  evaluationMs: number;
  elapsedMs: number;
}

export const findPolicy = (file: PolicyFile, name: string): ResolvedPolicy => {
  const p = file.policies.find((q) => q.name === name);
  if (!p)
    throw new UsageError(
      `no policy named ${JSON.stringify(name)} (the file has ${file.policies.map((q) => q.name).join(", ") || "none"})`,
    );
  return p;
};

/** The candidates to act on, in order, under max_actions, max_bytes and the byte target. */
const select = (
  policy: ResolvedPolicy,
  ev: PolicyEvaluationResult,
  targetBytes: number | undefined,
): { chosen: PolicyCandidate[]; bytes: number; stoppedBy: PolicyRunSummary["stoppedBy"] } => {
  const { maxActions, maxBytes } = policy.limits;
  const chosen: PolicyCandidate[] = [];
  let bytes = 0;
  for (const c of ev.candidates) {
    if (targetBytes !== undefined && bytes >= targetBytes)
      return { chosen, bytes, stoppedBy: "target reached" };
    if (chosen.length >= maxActions) return { chosen, bytes, stoppedBy: "max actions" };
    if (maxBytes > 0 && bytes + c.size > maxBytes) return { chosen, bytes, stoppedBy: "max bytes" };
    chosen.push(c);
    bytes += c.size;
  }
  if (targetBytes !== undefined && bytes >= targetBytes)
    return { chosen, bytes, stoppedBy: "target reached" };
  return { chosen, bytes, stoppedBy: "no more candidates" };
};

/**
 * One policy run: the distributed evaluation (runPolicyEvaluation), then — with `execute` — the
 * actions through the HSM pipeline (runHsmJob: archive or release lists on the FID partitions),
 * best candidates first, in waves paced by the policy's token bucket, stopping at the byte target
 * (low watermark), and suspended when the error rate passes the policy's threshold.
 */
export const runPolicy = async (o: PolicyRunOptions): Promise<PolicyRunSummary> => {
  const started = Date.now();
  const policy = findPolicy(o.file, o.name);
  if (policy.action === "remove")
    throw new UsageError(
      `policy ${policy.name} removes archive copies of deleted files: it runs in \`hsmfleet policy serve\` (it follows the sync change stream), not in \`policy run\``,
    );
  const ev = await runPolicyEvaluation({
    nc: o.nc,
    file: o.file,
    policy,
    nowMs: o.nowMs,
    onlyUids: o.onlyUids,
    onlyGids: o.onlyGids,
    signal: o.signal,
    logger: o.logger,
    topology: o.topology,
  });
  const { chosen, bytes, stoppedBy } = select(policy, ev, o.targetBytes);
  const summary: PolicyRunSummary = {
    policy: policy.name,
    action: policy.action,
    mode: o.execute ? "execute" : "dry-run",
    evaluationJob: ev.jobId,
    evaluationState: ev.state,
    walkErrors: ev.errors,
    hsmJobs: [],
    entries: ev.entries,
    files: ev.files,
    eligible: ev.eligible,
    eligibleBytes: ev.eligibleBytes,
    selected: chosen.length,
    selectedBytes: bytes,
    done: 0,
    skipped: 0,
    failed: 0,
    bytesDone: 0,
    stoppedBy,
    suspended: false,
    suspendReason: "",
    sample: chosen.slice(0, 100).map((c) => ({
      path: displayPath(c.path),
      size: c.size,
      rule: c.rule,
      key: c.key,
    })),
    evaluationMs: ev.elapsedMs,
    elapsedMs: 0,
  };
  await o.onEvaluated?.(summary);
  if (o.execute && chosen.length > 0) await execute(o, policy, chosen, summary);
  summary.elapsedMs = Date.now() - started;
  return summary;
};

const execute = async (
  o: PolicyRunOptions,
  policy: ResolvedPolicy,
  chosen: PolicyCandidate[],
  summary: PolicyRunSummary,
): Promise<void> => {
  const s = o.file.settings;
  const bucket = policy.limits.rate ? new TokenBucket(policy.limits.rate) : undefined;
  const waveMax = o.waveMaxActions ?? POLICY_RUN_DEFAULTS.waveMaxActions;
  const { suspendErrorRate, suspendMinActions } = policy.limits;
  let next = 0;
  while (next < chosen.length && !o.signal?.aborted) {
    if (o.remainingBytes && (await o.remainingBytes()) <= 0) {
      summary.stoppedBy = "target reached";
      break;
    }
    let n = Math.min(waveMax, chosen.length - next);
    if (bucket) {
      // Waves of at least a tenth of a period's count (or what is left), so a steady rate is
      // not one HSM job per file.
      const sizes = chosen.slice(next, next + n).map((c) => c.size);
      const minWave = Math.min(
        sizes.length,
        Math.max(1, Math.ceil(policy.limits.rate!.count / 10)),
      );
      if (bucket.available(sizes) < minWave) {
        await sleep(Math.max(10, bucket.waitMs(sizes.slice(0, minWave))), undefined, {
          signal: o.signal,
        }).catch(() => undefined);
        if (bucket.available(sizes) === 0) continue;
      }
      n = bucket.take(sizes);
      if (n === 0) continue;
    }
    const wave = chosen.slice(next, next + n);
    next += n;
    // Release moves no data: the bytes a release frees are the file's size.
    const sizes = new Map(wave.map((c) => [c.path.toString("base64"), c.size]));
    const stop = new AbortController();
    const onAbort = () => stop.abort();
    o.signal?.addEventListener("abort", onAbort);
    const hsm = await runHsmJob({
      nc: o.nc,
      request: policy.action === "archive" ? "archive" : "release",
      root: policy.root,
      paths: wave.map((c) => Buffer.concat([Buffer.from(join(policy.root, "/")), c.path])),
      backend: s.backend,
      hsmXattr: s.hsmXattr,
      lfsPath: s.lfsPath,
      archiveId: s.archiveId,
      container: s.container,
      prefix: s.prefix,
      partitions: o.partitions ?? s.partitions,
      signal: stop.signal,
      logger: o.logger,
      topology: o.topology,
      onItem: (item) => {
        const status =
          item.status === HsmItemStatus.Done
            ? "done"
            : item.status === HsmItemStatus.Skipped
              ? "skipped"
              : item.status === HsmItemStatus.Failed
                ? "failed"
                : undefined;
        if (!status) return;
        summary[status]++;
        if (status === "done")
          summary.bytesDone += sizes.get(item.path.toString("base64")) ?? item.bytes;
        o.onAction?.(displayPath(item.path), status, item.error);
        const finished = summary.done + summary.skipped + summary.failed;
        if (
          !summary.suspended &&
          finished >= suspendMinActions &&
          summary.failed / finished > suspendErrorRate
        ) {
          summary.suspended = true;
          summary.suspendReason = `${summary.failed} of ${finished} actions failed, more than suspend_error_rate ${suspendErrorRate}`;
          o.logger?.warn({ policy: policy.name }, `policy suspended: ${summary.suspendReason}`);
          stop.abort();
        }
      },
    }).finally(() => o.signal?.removeEventListener("abort", onAbort));
    summary.hsmJobs.push(hsm.jobId);
    if (summary.suspended) {
      summary.stoppedBy = "suspended";
      break;
    }
  }
};
