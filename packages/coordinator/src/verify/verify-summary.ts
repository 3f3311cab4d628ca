import { describeJobState } from "@hsmfleet/protocol";
import { formatNumber } from "@hsmfleet/core";

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
  /**
   * Released HSM files (data only in the archive) whose content was not compared although
   * `content` asked for it: their attributes were. 0 without `content`.
   */
  contentNotChecked: number;
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

export const formatVerifySummary = (s: VerifySummary, maxShown = 50): string => {
  const n = (v: number) => formatNumber(v);
  const lines: string[] = [];
  for (const d of s.samples.slice(0, maxShown)) lines.push(`${d.code}: ${d.message}`);
  if (s.differences + s.errors > Math.min(maxShown, s.samples.length)) {
    lines.push(
      `… ${n(s.differences + s.errors - Math.min(maxShown, s.samples.length))} more${s.errorLog ? ` in ${s.errorLog}` : " (use --differences FILE for all)"}`,
    );
  }
  lines.push(
    `verify ${s.jobId} of ${s.root} against ${s.container}${s.prefix ? `/${s.prefix}` : ""}${s.content ? " (with content)" : ""}: ${s.identical ? "identical" : s.state === "succeeded" ? "DIFFERENT" : describeJobState(s.state, s.errors)}${s.reason ? ` (${s.reason})` : ""} in ${s.elapsedSeconds.toFixed(1)} s`,
    `  entries compared      ${n(s.entries)} (${n(s.files)} ${s.files === 1 ? "file" : "files"}, ${n(s.bytes)} ${s.bytes === 1 ? "byte" : "bytes"})`,
    `  identical             ${n(s.identicalEntries)}`,
    ...(s.content
      ? [`  content checked       ${n(s.contentChecked)} files, ${n(s.contentBytes)} bytes`]
      : []),
    ...(s.contentNotChecked > 0
      ? [
          `  content not checked   ${n(s.contentNotChecked)} released files (data only in the archive; attributes compared)`,
        ]
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
