import { constants } from "node:fs";
import { open } from "node:fs/promises";
import type { FileHandle } from "node:fs/promises";
import { FsOperationError, errorCode } from "@hsmfleet/core";

/**
 * An append-only NDJSON file written by the coordinator (scan --list, error logs). It knows how many
 * bytes are on disk so a checkpoint can record them, and a resumed job truncates to that point
 * before appending: the file never holds a line twice.
 */
export class LocalLog {
  readonly path: string;
  #fh: FileHandle;
  #bytes: number;
  #buffer: string[] = [];
  #buffered = 0;

  private constructor(path: string, fh: FileHandle, bytes: number) {
    this.path = path;
    this.#fh = fh;
    this.#bytes = bytes;
  }

  /**
   * Opens for appending; with `resumeAtBytes` the file is cut back to that length first. A
   * symlink at `path` is never followed (O_NOFOLLOW: ELOOP). With `exclusive` (files the
   * coordinator names itself in a shared directory such as /tmp) a new job's file must not exist
   * yet: O_CREAT|O_EXCL|O_NOFOLLOW, mode 0600, so nothing planted under that name is written.
   */
  static async open(path: string, resumeAtBytes?: number, exclusive = false): Promise<LocalLog> {
    try {
      const flags =
        resumeAtBytes !== undefined
          ? constants.O_RDWR | constants.O_NOFOLLOW
          : constants.O_WRONLY |
            constants.O_CREAT |
            constants.O_NOFOLLOW |
            (exclusive ? constants.O_EXCL : constants.O_TRUNC);
      const fh = await open(path, flags, exclusive ? 0o600 : 0o644);
      if (resumeAtBytes !== undefined) await fh.truncate(resumeAtBytes);
      return new LocalLog(path, fh, resumeAtBytes ?? 0);
    } catch (err) {
      throw new FsOperationError("open", path, errorCode(err), "cannot write the output file", err);
    }
  }

  /** Bytes on disk after the last flush(). */
  get bytes(): number {
    return this.#bytes;
  }

  async append(line: string): Promise<void> {
    this.#buffer.push(line, "\n");
    this.#buffered += line.length + 1;
    if (this.#buffered >= 1 << 20) await this.flush();
  }

  async flush(): Promise<void> {
    if (this.#buffer.length === 0) return;
    const data = Buffer.from(this.#buffer.join(""));
    this.#buffer = [];
    this.#buffered = 0;
    await this.#fh.write(data, 0, data.length, this.#bytes);
    this.#bytes += data.length;
  }

  async close(): Promise<void> {
    await this.flush();
    await this.#fh.close();
  }
}
