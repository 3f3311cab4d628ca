import { rm } from "node:fs/promises";
import { hostname, tmpdir } from "node:os";
import { join } from "node:path";
import type { StorageTarget } from "@hsmfleet/blob";
import { jobLogContainer } from "@hsmfleet/blob/targets";
import { JobStore, RootLocks, ensureTopology, jetstream } from "@hsmfleet/bus";
import type { NatsConnection, TopologyOptions } from "@hsmfleet/bus";
import { UsageError, errorMessage, importMarkerName, normalizePrefix } from "@hsmfleet/core";
import {
  DEFAULT_CHUNK_SIZE_BYTES,
  JobKind,
  JobState,
  jobCompleted,
  newJobSpec,
  jobLimitsOf,
  newJobStatus,
  shardIdFor,
} from "@hsmfleet/protocol";
import type { ConflictMode, ImportMode, JobStatus, JobLimits } from "@hsmfleet/protocol";
import type { Logger } from "@hsmfleet/telemetry";
import { followJob } from "../job-follower.js";
import { jobErrors } from "../job-errors.js";
import { etaSeconds } from "../eta.js";
import { buildImportSummary } from "./import-summary.js";
import type { ImportProgress, ImportSummary } from "./import-summary.js";
import { writeJobLogs } from "../job-logs.js";
import { newJobId } from "../job-id.js";
import { LocalLog } from "../local-log.js";
import { claimRoot } from "../root-claim.js";
import { checkScanRoot, safeUser } from "../scan/scan-job.js";
import { JobRoot } from "@hsmfleet/fs";
import { publishRootShard } from "../root-shards.js";

export const IMPORT_MODES: readonly ImportMode[] = ["namespace", "full"];
export const CONFLICT_MODES: readonly ConflictMode[] = [
  "fail",
  "skip",
  "overwrite-dirty",
  "overwrite-always",
];

export const IMPORT_DEFAULTS = {
  mode: "namespace" as ImportMode,
  conflict: "fail" as ConflictMode,
  archiveId: 1,
  maxErrors: 0,
  backend: "hsm-emulation",
  hsmXattr: "trusted.hsm",
  batchMaxEntries: 256,
  /** --mode full: larger blobs are split into chunks of this size, taken by any worker. */
  chunkSizeBytes: DEFAULT_CHUNK_SIZE_BYTES,
} as const;

export interface ImportJobOptions {
  /**
   * Fleet-wide caps of the job: payload bytes per second and storage requests per second (0 or
   * undefined = none). Each live worker takes an equal share (docs/export.md, "Concurrency").
   */
  limits?: Partial<JobLimits> | undefined;
  nc: NatsConnection;
  /** Target directory (the file system root that maps to the container root). */
  target: string;
  container: string;
  /** Blob-name prefixes to import; default ["/"] (everything). Overlapping ones are refused. */
  prefixes?: string[] | undefined;
  mode?: ImportMode | undefined;
  conflict?: ConflictMode | undefined;
  archiveId?: number | undefined;
  /** "hsm-emulation" (default here) or "posix" (--mode full only). */
  backend?: string | undefined;
  hsmXattr?: string | undefined;
  /** The coordinator's credentials: to check the container and write the job's logs. */
  storage: StorageTarget;
  maxErrors?: number | undefined;
  /** Receives <job>/summary.json, errors.ndjson and conflicts.ndjson. Default `<container>-logs`. */
  logContainer?: string | undefined;
  errorLog?: string | undefined;
  conflictLog?: string | undefined;
  batchMaxEntries?: number | undefined;
  /** Default 256 MiB (IMPORT_DEFAULTS.chunkSizeBytes). */
  chunkSizeBytes?: number | undefined;
  jobId?: string | undefined;
  checkpointIntervalMs?: number | undefined;
  onProgress?: ((progress: ImportProgress) => void) | undefined;
  signal?: AbortSignal | undefined;
  logger?: Logger | undefined;
  topology?: TopologyOptions | undefined;
}

/**
 * Checks and normalizes import prefixes ("/" and "" = everything). Overlapping prefixes (equal,
 * or one inside the other) are refused: each blob must be imported by exactly one walk.
 */
export const normalizeImportPrefixes = (given: string[] | undefined): string[] => {
  const list = (given === undefined || given.length === 0 ? ["/"] : given).map((p) =>
    normalizePrefix(p),
  );
  for (let i = 0; i < list.length; i++) {
    for (let j = 0; j < list.length; j++) {
      if (i === j) continue;
      const a = list[i]!;
      const b = list[j]!;
      if (a === b || a === "" || b.startsWith(`${a}/`)) {
        throw new UsageError(
          `import prefixes overlap: "/${a}" ${a === b ? "is given twice" : `contains "/${b}"`}; give each part of the container once`,
        );
      }
    }
  }
  return list;
};

const importProgress = (s: JobStatus, workers: number): ImportProgress => {
  const elapsed = Math.max(1e-3, (Date.now() - s.startedAtMs) / 1000);
  const c = s.import;
  const bytesPerSecond = c.bytesDownloaded / elapsed;
  return {
    jobId: s.spec.jobId,
    blobsWalked: c.totalBlobsWalked,
    blobsPerSecond: c.totalBlobsWalked / elapsed,
    imported: c.totalBlobsImported,
    filesQueued: c.filesQueued,
    filesDownloaded: s.spec.import.mode === "full" ? c.importedFiles : 0,
    bytesQueued: c.bytesQueued,
    bytesDownloaded: c.bytesDownloaded,
    bytesPerSecond,
    etaSeconds:
      s.spec.import.mode === "full"
        ? etaSeconds({
            elapsedSeconds: elapsed,
            filesDone: c.importedFiles,
            filesTotal: c.filesQueued,
            bytesDone: c.bytesDownloaded,
            bytesTotal: c.bytesQueued,
          })
        : undefined,
    conflicts: c.totalConflicts,
    errors: jobErrors(s),
    workers,
  };
};

/** `IMPORT_<STATE>.<start>` in the target root, as AMLFS shows a running import. */
const stateFileName = importMarkerName;

/**
 * Imports a container (or parts of it) into a file system across the fleet, with AMLFS's import
 * semantics: released stubs (--mode namespace) or data too (--mode full), conflict modes, error
 * tolerance, a logging container, and one job per target root (re-running the same command after
 * a coordinator crash resumes the job).
 */
export const runImportJob = async (options: ImportJobOptions): Promise<ImportSummary> => {
  const root = await checkScanRoot(options.target, "import target");
  if (!options.container) throw new UsageError("import needs --container NAME");
  const prefixes = normalizeImportPrefixes(options.prefixes);
  const mode = options.mode ?? IMPORT_DEFAULTS.mode;
  const conflict = options.conflict ?? IMPORT_DEFAULTS.conflict;
  const backend = options.backend ?? IMPORT_DEFAULTS.backend;
  if (!IMPORT_MODES.includes(mode))
    throw new UsageError(`--mode must be one of ${IMPORT_MODES.join(", ")}`);
  if (!CONFLICT_MODES.includes(conflict))
    throw new UsageError(`--conflict must be one of ${CONFLICT_MODES.join(", ")}`);
  if (backend !== "hsm-emulation" && backend !== "posix") {
    throw new UsageError(
      `--backend ${backend} is not supported by import here (hsm-emulation, or posix with --mode full)`,
    );
  }
  if (backend === "posix" && mode === "namespace") {
    throw new UsageError(
      "--mode namespace makes released HSM stubs and needs an HSM backend (--backend hsm-emulation or lustre); use --mode full for a plain POSIX target",
    );
  }
  const logContainerName = jobLogContainer(options.container, options.logContainer);
  const { openContainer } = await import("@hsmfleet/blob");
  const source = openContainer(options.storage, options.container);
  // The stream topology and the source's existence at once (neither needs the other).
  const [{ jobs, locks }, sourceExists] = await Promise.all([
    ensureTopology(options.nc, options.topology),
    source.exists(),
  ]);
  const store = new JobStore(jobs);
  if (!sourceExists) {
    throw new UsageError(`container ${options.container} does not exist at ${source.location}`);
  }
  const logContainer = openContainer(options.storage, logContainerName);
  await logContainer.ensureExists();

  const jobId = options.jobId ?? newJobId("import");
  const claim = await claimRoot({
    nc: options.nc,
    store,
    locks: new RootLocks(locks),
    root,
    jobId,
    what: "an import",
    logger: options.logger,
    sameJob: (holder) =>
      holder.spec.kind === JobKind.Import &&
      holder.spec.container === options.container &&
      holder.spec.import.mode === mode &&
      holder.spec.import.prefixes.join("\n") === prefixes.join("\n"),
  });
  let status: JobStatus | undefined = claim.resumed;
  const resumed = status !== undefined;
  const localLog = async (
    given: string | undefined,
    saved: string | undefined,
    bytes: number | undefined,
    kind: string,
  ) => {
    const path = saved || given || join(tmpdir(), `hsmfleet-${jobId}-${kind}.ndjson`);
    return {
      path,
      temporary: !saved && !given,
      log: await LocalLog.open(path, resumed ? (bytes ?? 0) : undefined, !saved && !given),
    };
  };
  const errors = await localLog(
    options.errorLog,
    status?.errorLog,
    status?.errorLogBytes,
    "errors",
  );
  const conflicts = await localLog(
    options.conflictLog,
    status?.conflictLog,
    status?.conflictLogBytes,
    "conflicts",
  );
  if (!status) {
    const now = Date.now();
    status = newJobStatus(
      newJobSpec({
        jobId,
        kind: JobKind.Import,
        root: Buffer.from(root),
        createdAtMs: now,
        createdBy: `${safeUser()}@${hostname()}`,
        maxErrors: options.maxErrors ?? IMPORT_DEFAULTS.maxErrors,
        container: options.container,
        logContainer: logContainerName,
        batchMaxEntries: options.batchMaxEntries ?? IMPORT_DEFAULTS.batchMaxEntries,
        chunkSize: options.chunkSizeBytes ?? IMPORT_DEFAULTS.chunkSizeBytes,
        limits: jobLimitsOf(options.limits),
        backend,
        hsmXattr: options.hsmXattr ?? IMPORT_DEFAULTS.hsmXattr,
        import: {
          mode,
          conflict,
          archiveId: options.archiveId ?? IMPORT_DEFAULTS.archiveId,
          prefixes,
          maxInflight: 0,
          restoreBatch: 0,
          fsRoot: Buffer.alloc(0),
        },
      }),
      {
        published: prefixes.length,
        outstanding: prefixes.map((p) => shardIdFor(jobId, [Buffer.from(p, "utf8")])),
        errorLog: errors.path,
        conflictLog: conflicts.path,
      },
    );
    try {
      await store.create(status);
      for (const p of prefixes) {
        const paths = [Buffer.from(p, "utf8")];
        const shard = { jobId, paths, depth: 0, shardId: shardIdFor(jobId, paths) };
        await publishRootShard(jetstream(options.nc), status, shard);
      }
    } catch (err) {
      await claim.release();
      throw err;
    }
    options.logger?.info(
      { jobId, root, container: options.container, prefixes, mode },
      "import started",
    );
  }

  // The state file sits in the target, where users may plant anything: it is created
  // O_CREAT|O_EXCL|O_NOFOLLOW beneath the target's fd and renamed without replacing (issue 14).
  const running = Buffer.from(stateFileName("IN_PROGRESS", status.startedAtMs));
  let marker: JobRoot | undefined;
  try {
    marker = await JobRoot.open(root);
    await marker.writeNewFile(running, Buffer.from(`${status.spec.jobId}\n`));
  } catch (err) {
    marker?.close();
    marker = undefined;
    options.logger?.warn(
      { err: errorMessage(err) },
      "could not write the import state file (an entry of that name exists?); the import goes on without it",
    );
  }
  try {
    const final = await followJob({
      nc: options.nc,
      js: jetstream(options.nc),
      store,
      status,
      errorLog: errors.log,
      conflictLog: conflicts.log,
      checkpointIntervalMs: options.checkpointIntervalMs,
      signal: options.signal,
      logger: options.logger,
      onProgress: options.onProgress
        ? (s, fleet) => options.onProgress?.(importProgress(s, fleet.liveWorkers()))
        : undefined,
    });
    // AMLFS removes the state file when the import succeeds; otherwise it says how it ended.
    if (marker) {
      const m = marker;
      if (jobCompleted(final.state)) await m.unlink(running).catch(() => undefined);
      else {
        const ended = final.state === JobState.Cancelled ? "CANCELLED" : "FAILED";
        await m
          .renameNoReplace(running, Buffer.from(stateFileName(ended, final.startedAtMs)))
          .catch((err: unknown) =>
            options.logger?.warn(
              { err: errorMessage(err) },
              "could not rename the import state file",
            ),
          );
      }
      m.close();
    }
    const summary = buildImportSummary(final, resumed);
    await writeJobLogs(
      logContainer,
      summary.jobId,
      summary,
      [
        ["errors.ndjson", final.errorLog],
        ["conflicts.ndjson", final.conflictLog],
      ],
      options.logger,
    );
    if (errors.temporary) await rm(errors.path, { force: true });
    if (conflicts.temporary) await rm(conflicts.path, { force: true });
    return summary;
  } finally {
    marker?.close(); // idempotent; closes the target's fd when the job did not get that far
    await claim.release();
  }
};
