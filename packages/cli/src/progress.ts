import type {
  ExportProgress,
  HsmJobProgress,
  ImportProgress,
  RestoreProgress,
  ScanProgress,
} from "@hsmfleet/coordinator";

import { formatBytes } from "@hsmfleet/protocol";
import { formatNumber } from "@hsmfleet/core";

const n = (v: number) => formatNumber(Math.round(v));
const mibPerSecond = (bytesPerSecond: number) => `${(bytesPerSecond / 2 ** 20).toFixed(1)} MiB/s`;

/** Plain (non-terminal) progress lines at most this often: HSMFLEET_PROGRESS_EVERY_MS, default 10 s. */
export const plainProgressEveryMs = (env: NodeJS.ProcessEnv = process.env): number => {
  const v = Number(env["HSMFLEET_PROGRESS_EVERY_MS"]);
  return Number.isFinite(v) && v >= 100 ? v : 10_000;
};

/**
 * One progress line on stderr: rewritten in place on a terminal; on a pipe or a log file, a plain
 * line at most every `plainEveryMs` so logs stay readable.
 */
export class ProgressLine {
  readonly #tty: boolean;
  readonly #plainEveryMs: number;
  #lastPlain = 0;
  #shown = false;

  constructor(stream: NodeJS.WriteStream = process.stderr, plainEveryMs = plainProgressEveryMs()) {
    this.#tty = stream.isTTY === true;
    this.#plainEveryMs = plainEveryMs;
  }

  scan(p: ScanProgress): void {
    const waiting =
      p.workers === 0 && p.entries === 0
        ? " — waiting for workers (start some with: hsmfleet worker --nats URL)"
        : "";
    const line =
      `scan ${p.jobId}: ${n(p.entries)} entries (${n(p.files)} files, ${n(p.directories)} dirs), ` +
      `${n(p.entriesPerSecond)}/s, ${n(p.outstanding)} dirs queued, ${p.workers} workers, ${n(p.errors)} errors${waiting}`;
    this.#write(line);
  }

  export(p: ExportProgress): void {
    const eta = p.etaSeconds === undefined ? "--:--" : formatDuration(p.etaSeconds);
    const waiting = p.workers === 0 && p.filesFound === 0 ? " — waiting for workers" : "";
    this.#write(
      `export ${p.jobId}: ${n(p.filesDone)}/${n(p.filesQueued)} files, ${formatBytes(p.bytesDone)}/${formatBytes(p.bytesQueued)}, ` +
        `${mibPerSecond(p.bytesPerSecond)}, ETA ${eta}, ${n(p.skipped)} unchanged, ${p.workers} workers, ${n(p.errors)} errors${waiting}`,
    );
  }

  hsm(p: HsmJobProgress): void {
    const seconds = p.elapsedMs / 1000;
    const rate = seconds > 0 ? p.completed / seconds : 0;
    const left = p.dispatched - p.completed;
    const eta = rate > 0 ? formatDuration(left / rate) : "--:--";
    const bytes =
      p.bytes > 0
        ? `, ${formatBytes(p.bytes)}, ${mibPerSecond(seconds > 0 ? p.bytes / seconds : 0)}`
        : "";
    this.#write(
      `hsm ${p.request} ${p.jobId}: ${n(p.completed)}/${n(p.dispatched)} files${bytes}, ${n(rate)} files/s, ETA ${eta}, ${n(p.failed)} failed`,
    );
  }

  import(p: ImportProgress): void {
    const gib = (b: number) => (b / 2 ** 30).toFixed(2);
    const eta = p.etaSeconds === undefined ? "--:--" : formatDuration(p.etaSeconds);
    const data =
      p.filesQueued > 0
        ? `, ${n(p.filesDownloaded)}/${n(p.filesQueued)} files downloaded, ${gib(p.bytesDownloaded)}/${gib(p.bytesQueued)} GiB, ${(p.bytesPerSecond / 2 ** 20).toFixed(1)} MiB/s, ETA ${eta}`
        : "";
    this.#write(
      `import ${p.jobId}: ${n(p.blobsWalked)} blobs walked (${n(p.blobsPerSecond)}/s), ${n(p.imported)} imported${data}, ${n(p.conflicts)} conflicts, ${p.workers} workers, ${n(p.errors)} errors`,
    );
  }

  restore(p: RestoreProgress): void {
    const eta = p.etaSeconds === undefined ? "--:--" : formatDuration(p.etaSeconds);
    this.#write(
      `restore ${p.jobId}: ${n(p.filesRestored)}/${n(p.filesFound)}${p.walking ? "+" : ""} files, ${(p.bytesPerSecond / 2 ** 20).toFixed(1)} MiB/s, ${p.filesPerSecond.toFixed(0)} files/s, ETA ${eta}, ${p.workers} workers, ${n(p.errors)} errors`,
    );
  }

  #write(line: string): void {
    if (this.#tty) {
      process.stderr.write(`\r\x1b[K${line}`);
      this.#shown = true;
    } else if (Date.now() - this.#lastPlain >= this.#plainEveryMs) {
      this.#lastPlain = Date.now();
      process.stderr.write(`${line}\n`);
    }
  }

  /** Ends the in-place line before other output. */
  done(): void {
    if (this.#tty && this.#shown) process.stderr.write("\n");
    this.#shown = false;
  }
}

export const formatDuration = (seconds: number): string => {
  const s = Math.round(seconds);
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const sec = s % 60;
  const mm = String(m).padStart(2, "0");
  const ss = String(sec).padStart(2, "0");
  return h > 0 ? `${h}:${mm}:${ss}` : `${m}:${ss}`;
};
