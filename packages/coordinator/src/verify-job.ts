import { readFile, rm } from "node:fs/promises";
import { hostname, tmpdir } from "node:os";
import { join } from "node:path";
import { JobStore, ensureTopology, jetstream } from "@hsmfleet/bus";
import type { NatsConnection, TopologyOptions } from "@hsmfleet/bus";
import type { StorageTarget } from "@hsmfleet/blob/targets";
import { UsageError, displayPath, normalizePrefix } from "@hsmfleet/core";
import {
  JobKind,
  JobState,
  encodeWalkShard,
  jobStateName,
  jobCompleted,
  describeJobState,
  newJobSpec,
  newJobStatus,
  rootWalkShard,
  subjects,
} from "@hsmfleet/protocol";
import type { JobStatus } from "@hsmfleet/protocol";
import type { Logger } from "@hsmfleet/telemetry";
import { errorToJson } from "./format.js";
import { followJob } from "./job-follower.js";
import { newJobId } from "./job-id.js";
import { LocalLog } from "./local-log.js";
import { checkScanRoot, safeUser } from "./scan-job.js";

export interface VerifyJobOptions {
  nc: NatsConnection;
  /** The tree to compare; mounted at the same path on every worker VM. */
  root: string;
  container: string;
  prefix?: string | undefined;
  /** Also compare the data (MD5 against Content-MD5, or a download). Default false. */
  content?: boolean | undefined;
  /** The coordinator's credentials, to check that the container exists. Default: not checked. */
  storage?: StorageTarget | undefined;
  /** NDJSON file receiving every difference. Default: a temp file, removed at the end. */
  errorLog?: string | undefined;
  jobId?: string | undefined;
  /** Differences kept in the summary. Default 100. */
  sampleLimit?: number | undefined;
  onProgress?: ((progress: VerifyProgress) => void) | undefined;
  signal?: AbortSignal | undefined;
  logger?: Logger | undefined;
  topology?: TopologyOptions | undefined;
}

export interface VerifyProgress {
  jobId: string;
  filesCompared: number;
  bytesCompared: number;
  contentChecked: number;
  differences: number;
  elapsedMs: number;
}

export interface VerifySummary {
  jobId: string;
  root: string;
  container: string;
  prefix: string;
  content: boolean;
  state: string;
  reason: string;
  /** True only when the job completed and found no difference and no error. */
  identical: boolean;
  /** Entries of the tree compared (files, directories, symlinks). */
  entries: number;
  files: number;
  bytes: number;
  /** Files whose data was compared (with content) and bytes read for that. */
  contentChecked: number;
  contentBytes: number;
  /** Entries found identical. */
  identicalEntries: number;
  /** Differences (operation `verify`) and failures (anything else), each one line of the log. */
  differences: number;
  errors: number;
  /** Differences by code (MissingBlob, SizeDiffers, …). */
  byCode: Record<string, number>;
  /** Devices, FIFOs, sockets: Blob holds none; not differences. */
  unsupported: number;
  elapsedSeconds: number;
  samples: Array<{ path: string; operation: string; code: string; message: string }>;
  errorLog: string | null;
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
      .client.exists()
      .catch(() => true); // a credential that may not read container properties: let workers tell
    if (!exists) throw new UsageError(`container "${options.container}" does not exist`);
  }
  const { jobs } = await ensureTopology(options.nc, options.topology);
  const store = new JobStore(jobs);
  const jobId = options.jobId ?? newJobId("verify");
  const errorLogPath = options.errorLog ?? join(tmpdir(), `hsmfleet-${jobId}-differences.ndjson`);
  const errorLog = await LocalLog.open(errorLogPath);
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
      hsmXattr: "",
    }),
    { published: 1, errorLog: errorLogPath },
  );
  await store.create(status);
  const rootShard = rootWalkShard(jobId);
  await jetstream(options.nc).publish(subjects.walk(jobId), encodeWalkShard(rootShard), {
    msgID: rootShard.shardId,
  });
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

export const formatVerifySummary = (s: VerifySummary, maxShown = 50): string => {
  const n = (v: number) => v.toLocaleString("en-US");
  const lines: string[] = [];
  for (const d of s.samples.slice(0, maxShown)) lines.push(`${d.code}: ${d.message}`);
  if (s.differences + s.errors > Math.min(maxShown, s.samples.length)) {
    lines.push(
      `… ${n(s.differences + s.errors - Math.min(maxShown, s.samples.length))} more${s.errorLog ? ` in ${s.errorLog}` : " (use --differences FILE for all)"}`,
    );
  }
  lines.push(
    `verify ${s.jobId} of ${s.root} against ${s.container}${s.prefix ? `/${s.prefix}` : ""}${s.content ? " (with content)" : ""}: ${s.identical ? "identical" : s.state === "succeeded" ? "DIFFERENT" : describeJobState(s.state, s.errors)}${s.reason ? ` (${s.reason})` : ""} in ${s.elapsedSeconds.toFixed(1)} s`,
    `  entries compared      ${n(s.entries)} (${n(s.files)} files, ${n(s.bytes)} bytes)`,
    `  identical             ${n(s.identicalEntries)}`,
    ...(s.content
      ? [`  content checked       ${n(s.contentChecked)} files, ${n(s.contentBytes)} bytes`]
      : []),
    `  differences           ${n(s.differences)}${
      Object.keys(s.byCode).length > 0
        ? ` (${Object.entries(s.byCode)
            .map(([k, v]) => `${k} ${v}`)
            .join(", ")})`
        : ""
    }`,
    `  errors                ${n(s.errors)}`,
  );
  if (s.unsupported > 0) lines.push(`  unsupported (skipped) ${n(s.unsupported)}`);
  return lines.join("\n");
};
