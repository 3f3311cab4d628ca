import type { HsmRequestName } from "@hsmfleet/core";
import { formatBytes } from "@hsmfleet/protocol";
import type { HsmProgress } from "@hsmfleet/protocol";
import { formatNumber } from "@hsmfleet/core";

export interface HsmJobProgress {
  jobId: string;
  request: HsmRequestName;
  dispatched: number;
  completed: number;
  failed: number;
  /** Bytes moved by completed items plus those of long actions in flight. */
  bytes: number;
  /** Latest progress of long actions in flight, by FID. */
  inFlight: HsmProgress[];
  elapsedMs: number;
}

export interface HsmJobSummary {
  jobId: string;
  request: HsmRequestName;
  /** succeeded, failed or cancelled once the job ended (a record read while it runs: running). */
  state: string;
  items: number;
  done: number;
  skipped: number;
  failed: number;
  cancelled: number;
  bytes: number;
  lists: number;
  /** The file-system root the paths are under (blob names are relative to it). */
  root: string;
  elapsedSeconds: number;
  /** Items that failed (= failed): the same field as every other job's summary (docs/json.md). */
  errors: number;
  /** The first failures (at most 100). */
  errorSamples: { path: string; error: string }[];
}

export const formatHsmSummary = (s: HsmJobSummary): string => {
  const secs = s.elapsedSeconds;
  const rate = secs > 0 ? Math.round(s.items / secs) : s.items;
  const lines = [
    `hsm ${s.request} ${s.jobId}: ${s.state}`,
    `  items ${formatNumber(s.items)} in ${formatNumber(s.lists)} action lists: ${s.done} done, ${s.skipped} skipped (already in that state), ${s.failed} failed, ${s.cancelled} cancelled`,
    `  ${secs.toFixed(1)} s, ${formatNumber(rate)} items/s${s.bytes > 0 ? `, ${formatBytes(s.bytes)} moved (${formatBytes(secs > 0 ? Math.round(s.bytes / secs) : s.bytes)}/s)` : ""}`,
  ];
  for (const e of s.errorSamples.slice(0, 10)) lines.push(`  error: ${e.error}`);
  if (s.failed > 10) lines.push(`  … ${s.failed - 10} more errors`);
  return lines.join("\n");
};
