import { withJobSpan } from "@hsmfleet/telemetry";
import type { ExportSummary } from "./export/export-summary.js";
import type { HsmJobSummary } from "./hsm/hsm-summary.js";
import type { ScanSummary } from "./scan/scan-summary.js";

/** An export as one trace (its context bound to `options`: the root publish passes it on): "export job" → "export transfer" → every walk shard and transfer batch. */
export const exportJobSpan = (
  options: { jobId?: string | undefined; root: string; container: string },
  run: () => Promise<ExportSummary>,
): Promise<ExportSummary> =>
  withJobSpan(
    {
      kind: "export",
      phase: "transfer",
      jobId: options.jobId,
      root: Buffer.from(options.root),
      attributes: { "hsmfleet.container": options.container },
      key: options,
    },
    run,
    (s) => ({
      "hsmfleet.job_id": s.jobId,
      "hsmfleet.outcome": s.state,
      "hsmfleet.files": s.filesExported,
      "hsmfleet.bytes": s.bytes,
      "hsmfleet.errors": s.errors,
      "hsmfleet.resumed": s.resumed,
    }),
  );

/** A scan as one trace: "scan job" → "scan walk" → every walk shard. */
export const scanJobSpan = (
  options: { jobId?: string | undefined; root: string },
  run: () => Promise<ScanSummary>,
): Promise<ScanSummary> =>
  withJobSpan(
    {
      kind: "scan",
      phase: "walk",
      jobId: options.jobId,
      root: Buffer.from(options.root),
      key: options,
    },
    run,
    (s) => ({
      "hsmfleet.job_id": s.jobId,
      "hsmfleet.outcome": s.state,
      "hsmfleet.files": s.files,
      "hsmfleet.directories": s.directories,
      "hsmfleet.bytes": s.bytes,
      "hsmfleet.errors": s.errors,
    }),
  );

/** An HSM job as one trace: "hsm job" → "hsm actions" → every action list ("hsm archive", …). */
export const hsmJobSpan = (
  options: { jobId?: string | undefined; root: string; request: string },
  run: () => Promise<HsmJobSummary>,
): Promise<HsmJobSummary> =>
  withJobSpan(
    {
      kind: "hsm",
      phase: "actions",
      jobId: options.jobId,
      root: Buffer.from(options.root),
      attributes: { "hsmfleet.hsm.request": options.request },
      key: options,
    },
    run,
    (s) => ({
      "hsmfleet.job_id": s.jobId,
      "hsmfleet.outcome": s.state,
      "hsmfleet.files": s.items,
      "hsmfleet.hsm.lists": s.lists,
      "hsmfleet.hsm.done": s.done,
      "hsmfleet.hsm.skipped": s.skipped,
      "hsmfleet.hsm.failed": s.failed,
      "hsmfleet.hsm.cancelled": s.cancelled,
      "hsmfleet.bytes": s.bytes,
      "hsmfleet.errors": s.failed,
    }),
  );
