import type {
  ExportProgress,
  ImportProgress,
  RestoreProgress,
  ScanProgress,
} from "@hsmfleet/coordinator";

const n = (v: number) => Math.round(v).toLocaleString("en-US");

/**
 * One progress line on stderr: rewritten in place on a terminal; on a pipe or a log file, a plain
 * line at most every `plainEveryMs` so logs stay readable.
 */
export class ProgressLine {
  readonly #tty: boolean;
  readonly #plainEveryMs: number;
  #lastPlain = 0;
  #shown = false;

  constructor(stream: NodeJS.WriteStream = process.stderr, plainEveryMs = 10_000) {
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
    const gib = (b: number) => (b / 2 ** 30).toFixed(2);
    const eta = p.etaSeconds === undefined ? "--:--" : formatDuration(p.etaSeconds);
    const waiting = p.workers === 0 && p.filesFound === 0 ? " — waiting for workers" : "";
    this.#write(
      `export ${p.jobId}: ${n(p.filesDone)}/${n(p.filesQueued)} files, ${gib(p.bytesDone)}/${gib(p.bytesQueued)} GiB, ` +
        `${(p.bytesPerSecond / 2 ** 20).toFixed(1)} MiB/s, ETA ${eta}, ${n(p.skipped)} unchanged, ${p.workers} workers, ${n(p.errors)} errors${waiting}`,
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
