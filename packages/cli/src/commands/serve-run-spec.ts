/**
 * How `hsmfleet serve` runs one validated job spec on the fleet: through the same job runners the
 * CLI commands use (`hsmfleet export|import|restore`, `hsmfleet hsm archive|release` through the
 * workers, `hsmfleet verify`). HSM requests take the spec's path as `hsmfleet hsm <request> -r`
 * does (a directory: every file under it), under root `/`, on the backend of
 * `HSMFLEET_HSM_BACKEND` (default hsm-emulation; its archive container is the spec's `container`,
 * default `hsmfleet-archive`).
 */
import { mkdir } from "node:fs/promises";
import { join } from "node:path";
import {
  newJobId,
  runExportJob,
  runHsmJob,
  runImportJob,
  runRestoreJob,
  runVerifyJob,
} from "@hsmfleet/coordinator";
import type { JobLifecycle, JobSpec } from "@hsmfleet/coordinator";
import type { StorageTarget } from "@hsmfleet/blob/targets";
import type { NatsConnection } from "@hsmfleet/bus";
import { DEFAULT_HSM_XATTR, UsageError } from "@hsmfleet/core";
import { HSM_BACKEND_KINDS } from "@hsmfleet/fs";
import type { HsmBackendKind } from "@hsmfleet/fs";
import type { Logger } from "@hsmfleet/telemetry";
import { hsmPaths } from "./hsm.js";

export interface JobEnv {
  nc: NatsConnection;
  storage: StorageTarget;
  logger: Logger;
  stateDir: string;
  signal: AbortSignal;
}

type Summary = Record<string, unknown> & { state: string; jobId: string };

/** Default archive container of HSM specs on the emulation backend (as `hsmfleet hsm`). */
export const SERVE_HSM_CONTAINER = "hsmfleet-archive";

const hsmBackend = (): HsmBackendKind => {
  const b = process.env["HSMFLEET_HSM_BACKEND"] ?? "hsm-emulation";
  if (!(HSM_BACKEND_KINDS as readonly string[]).includes(b))
    throw new UsageError(`HSMFLEET_HSM_BACKEND=${b}: not one of ${HSM_BACKEND_KINDS.join(", ")}`);
  return b as HsmBackendKind;
};

/** Runs one validated spec on the fleet; returns its summary and its error count. */
export const runSpec = async (
  spec: JobSpec,
  env: JobEnv,
  life: JobLifecycle,
): Promise<{ summary: Summary; errors: number }> => {
  const jobId = newJobId(spec.kind);
  life.jobId = jobId;
  const jobDir = join(env.stateDir, "jobs", jobId);
  await mkdir(jobDir, { recursive: true });
  const common = {
    nc: env.nc,
    storage: env.storage,
    jobId,
    logger: env.logger,
    signal: env.signal,
    errorLog: join(jobDir, "errors.ndjson"),
  };
  const onProgress = (p: object) => life.progress({ ...p });
  switch (spec.kind) {
    case "export": {
      const s = await runExportJob({
        ...common,
        root: spec.path,
        container: spec.container!,
        prefix: spec.prefix,
        maxErrors: spec.maxErrors,
        onProgress,
      });
      return { summary: s as unknown as Summary, errors: s.errors };
    }
    case "import": {
      const s = await runImportJob({
        ...common,
        target: spec.path,
        container: spec.container!,
        prefixes: spec.prefixes,
        mode: spec.mode,
        conflict: spec.conflict,
        maxErrors: spec.maxErrors,
        conflictLog: join(jobDir, "conflicts.ndjson"),
        onProgress,
      });
      return { summary: s as unknown as Summary, errors: s.totalErrors };
    }
    case "restore": {
      const s = await runRestoreJob({
        ...common,
        path: spec.path,
        maxErrors: spec.maxErrors,
        onProgress,
      });
      return { summary: s as unknown as Summary, errors: s.errors };
    }
    case "verify": {
      const s = await runVerifyJob({
        ...common,
        root: spec.path,
        container: spec.container!,
        prefix: spec.prefix,
        hsmXattr: DEFAULT_HSM_XATTR,
        errorLog: join(jobDir, "differences.ndjson"),
        onProgress,
      });
      // A difference is what a verify finds, not an error of the job: CompletedPartial says so.
      return { summary: s as unknown as Summary, errors: s.differences };
    }
    case "archive":
    case "release": {
      const backend = hsmBackend();
      const s = await runHsmJob({
        nc: env.nc,
        jobId,
        request: spec.kind,
        root: "/",
        paths: hsmPaths([spec.path], {
          backend,
          hsmXattr: DEFAULT_HSM_XATTR,
          lfs: "lfs",
          recursive: true,
        }),
        backend,
        hsmXattr: DEFAULT_HSM_XATTR,
        container: spec.container ?? SERVE_HSM_CONTAINER,
        prefix: spec.prefix ?? "",
        signal: env.signal,
        logger: env.logger,
        onProgress,
      });
      return { summary: s as unknown as Summary, errors: s.errors };
    }
  }
};
