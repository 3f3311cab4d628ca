import { readFile, rm } from "node:fs/promises";
import { hostname, tmpdir } from "node:os";
import { join } from "node:path";
import { JobStore, ensureTopology, jetstream } from "@hsmfleet/bus";
import type { NatsConnection, TopologyOptions } from "@hsmfleet/bus";
import type { StorageTarget } from "@hsmfleet/blob/targets";
import { DEFAULT_HSM_XATTR, UsageError, displayPath, normalizePrefix } from "@hsmfleet/core";
import {
  JobKind,
  JobState,
  jobStateName,
  jobCompleted,
  newJobSpec,
  newJobStatus,
  rootWalkShard,
} from "@hsmfleet/protocol";
import type { JobStatus } from "@hsmfleet/protocol";
import type { Logger } from "@hsmfleet/telemetry";
import { errorToJson } from "../format.js";
import { followJob } from "../job-follower.js";
import { newJobId } from "../job-id.js";
import type { VerifyProgress, VerifySummary } from "./verify-summary.js";
import { LocalLog } from "../local-log.js";
import { checkScanRoot, safeUser } from "../scan/scan-job.js";
import { publishRootShard } from "../root-shards.js";

export interface VerifyJobOptions {
  nc: NatsConnection;
  /** The tree to compare; mounted at the same path on every worker VM. */
  root: string;
  container: string;
  prefix?: string | undefined;
  /** Also compare the data (MD5 against Content-MD5, or a download). Default false. */
  content?: boolean | undefined;
  /**
   * The xattr holding the HSM state (struct hsm_attrs). Released files are compared by their
   * attributes only: their data is in the archive. Default `trusted.hsm`.
   */
  hsmXattr?: string | undefined;
  /** The coordinator's credentials, to check that the container exists. Default: not checked. */
  storage?: StorageTarget | undefined;
  /**
   * NDJSON file receiving every difference, kept (and named in the job's record). Default: a temp
   * file, removed at the end (the record names none).
   */
  errorLog?: string | undefined;
  jobId?: string | undefined;
  /** Differences kept in the summary. Default 100. */
  sampleLimit?: number | undefined;
  onProgress?: ((progress: VerifyProgress) => void) | undefined;
  signal?: AbortSignal | undefined;
  logger?: Logger | undefined;
  topology?: TopologyOptions | undefined;
}

const countLog = async (
  path: string,
): Promise<{ differences: number; errors: number; byCode: Record<string, number> }> => {
  const text = await readFile(path, "utf8").catch(() => "");
  const out = { differences: 0, errors: 0, byCode: {} as Record<string, number> };
  for (const line of text.split("\n")) {
    if (line.trim() === "") continue;
    const e = JSON.parse(line) as { operation: string; code: string };
    if (e.operation === "verify") out.differences++;
    else out.errors++;
    out.byCode[e.code] = (out.byCode[e.code] ?? 0) + 1;
  }
  return out;
};

/**
 * Compares a tree with its blobs across the fleet, like mpifileutils' dcmp: every entry with its
 * blob (existence, type, size, modtime, permissions, owner, group), blobs with no entry, and with
 * `content` the data. Read-only on both sides, so it takes no root lock.
 */
export const runVerifyJob = async (options: VerifyJobOptions): Promise<VerifySummary> => {
  const root = await checkScanRoot(options.root, "verify source");
  if (!options.container) throw new UsageError("verify needs --container NAME");
  const prefix = normalizePrefix(options.prefix);
  if (options.storage !== undefined) {
    const { openContainer } = await import("@hsmfleet/blob");
    const exists = await openContainer(options.storage, options.container)
      .exists()
      .catch(() => true); // a credential that may not read container properties: let workers tell
    if (!exists) throw new UsageError(`container "${options.container}" does not exist`);
  }
  const { jobs } = await ensureTopology(options.nc, options.topology);
  const store = new JobStore(jobs);
  const jobId = options.jobId ?? newJobId("verify");
  const errorLogPath = options.errorLog ?? join(tmpdir(), `hsmfleet-${jobId}-differences.ndjson`);
  const errorLog = await LocalLog.open(errorLogPath, undefined, options.errorLog === undefined);
  const status: JobStatus = newJobStatus(
    newJobSpec({
      jobId,
      kind: JobKind.Verify,
      root: Buffer.from(root),
      createdAtMs: Date.now(),
      createdBy: `${safeUser()}@${hostname()}`,
      maxErrors: -1,
      container: options.container,
      prefix,
      verifyContent: options.content ?? false,
      hsmXattr: options.hsmXattr ?? DEFAULT_HSM_XATTR,
    }),
    // A temporary log is removed at the end: the record then names none.
    {
      published: 1,
      outstanding: [rootWalkShard(jobId).shardId],
      errorLog: options.errorLog ?? "",
    },
  );
  await store.create(status);
  const rootShard = rootWalkShard(jobId);
  await publishRootShard(jetstream(options.nc), status, rootShard);
  options.logger?.info({ jobId, root, container: options.container, prefix }, "verify started");
  const final = await followJob({
    nc: options.nc,
    js: jetstream(options.nc),
    store,
    status,
    errorLog,
    errorSampleLimit: options.sampleLimit ?? 100,
    // Its "errors" counters carry the differences found: those do not make it incomplete.
    completionErrors: () => 0,
    signal: options.signal,
    logger: options.logger,
    onProgress: options.onProgress
      ? (s) =>
          options.onProgress?.({
            jobId,
            filesCompared: s.export.filesFound,
            bytesCompared: s.export.bytesFound,
            contentChecked: s.export.filesExported,
            differences: s.export.errors + s.scan.errors,
            elapsedMs: Date.now() - s.startedAtMs,
          })
      : undefined,
  });
  const counted = await countLog(errorLogPath);
  const e = final.export;
  const s = final.scan;
  const end = final.finishedAtMs || final.updatedAtMs;
  const summary: VerifySummary = {
    jobId,
    root: displayPath(final.spec.root),
    container: options.container,
    prefix,
    content: final.spec.verifyContent,
    // Real errors (unreadable entries, failed requests) make it completed with errors.
    state:
      jobCompleted(final.state) && counted.errors > 0
        ? jobStateName(JobState.CompletedWithErrors)
        : jobStateName(final.state),
    reason: final.reason,
    identical: jobCompleted(final.state) && counted.differences + counted.errors === 0,
    // The walk counts the root directory too (like find); it has no blob to compare.
    entries: s.files + Math.max(0, s.directories - 1) + s.symlinks,
    files: e.filesFound,
    bytes: e.bytesFound,
    contentChecked: e.filesExported,
    contentBytes: e.bytesExported,
    contentNotChecked: final.spec.verifyContent ? e.released : 0,
    identicalEntries: e.skipped,
    differences: counted.differences,
    errors: counted.errors,
    byCode: counted.byCode,
    unsupported: e.unsupported,
    elapsedSeconds: Math.max(0, (end - final.startedAtMs) / 1000),
    samples: final.errorSamples.map(errorToJson),
    errorLog: options.errorLog ?? null,
  };
  if (options.errorLog === undefined) await rm(errorLogPath, { force: true });
  return summary;
};
