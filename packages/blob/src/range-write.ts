/**
 * Writing a range of a download at its file offset: whole, once its body is in its buffer
 * (`writeAt`), or while its body still arrives (`RangeStreamWrite`).
 *
 * A range written at its file offset while its body still arrives. A ranged GET read by the socket
 * pool (socket-get.ts) lands in the range buffer read by read; once a piece of it
 * (streamPieceBytes, 512 KiB, cut on 4 KiB file offsets) is there, it is written and CRC64'd in
 * one threadpool job
 * (@hsmfleet/fs pwriteCrc64, seeded with the CRC64 of the pieces before, so the pieces chain into
 * the range's CRC64). The piece is copied into the page cache a few milliseconds after the socket
 * copied it into the buffer, while it is likely still in the CPU cache, instead of after the whole
 * range arrived (32 ranges of 4 MiB in flight are more than the L3 cache). Measured (issue 17,
 * docs/benchmarks.md "ranges written as they arrive"): ~15 % less system time for the copy in a C
 * loop; no difference in the one-shot CLI at load 11–66 — kept on for the idle re-run to decide
 * (HSMFLEET_STREAM_PIECE_BYTES=0 turns it off).
 *
 * What is checked does not change: `finish` returns the CRC64 of exactly the bytes written, which
 * the caller compares with the service's. A body that began more than once (a try failed and the
 * retry policy sent the GET again, reading into the buffer from byte 0 while a piece of the first
 * try may still be written) is written again, whole, from the buffer once the GET is done and the
 * pieces in flight have settled: that write's CRC64 is the one returned.
 */
import type { FileHandle } from "node:fs/promises";
import { pwriteAll, pwriteCrc64 } from "@hsmfleet/fs";
import type { Md5Stream } from "@hsmfleet/fs";
import { BlobOperationError, abortCause, fsFailure, type BlobOperationSubject } from "./errors.js";
import { WRITE } from "./download-common.js";
import type { BodyListener } from "./socket-get.js";
import { WriteLane } from "./write-lane.js";

const KiB = 1024;

/** Sparse blocks: pieces end on these file offsets, so the zero-block test sees whole blocks. */
const BLOCK_BYTES = 4 * KiB;

/**
 * Bytes of a range written per job as it arrives: HSMFLEET_STREAM_PIECE_BYTES (read once; 0 turns
 * streaming off: each range written after its whole body arrived, as before), default 512 KiB.
 */
export const streamPieceBytes = (): number => {
  const v = process.env["HSMFLEET_STREAM_PIECE_BYTES"];
  if (v === undefined || v === "") return 512 * KiB;
  const n = Number(v);
  return Number.isSafeInteger(n) && n >= 0 ? n : 512 * KiB;
};

export class RangeStreamWrite implements BodyListener {
  readonly #fd: number;
  readonly #buf: Buffer;
  readonly #n: number;
  readonly #position: number;
  readonly #piece: number;
  #begun = 0;
  #received = 0;
  /** Bytes [0, #written) are written; #crc is their CRC64. */
  #written = 0;
  #crc = 0n;
  #job: Promise<void> | undefined;
  #error: Error | undefined;
  #closed = false;
  readonly #lane: WriteLane;

  /**
   * `buf[0, n)` is the range, written at `position` of descriptor `fd` (sparse), each piece through
   * `lane` (the file's: write-lane.ts).
   */
  constructor(
    fd: number,
    buf: Buffer,
    n: number,
    position: number,
    pieceBytes: number,
    lane: WriteLane = new WriteLane(0),
  ) {
    this.#fd = fd;
    this.#buf = buf;
    this.#n = n;
    this.#position = position;
    this.#piece = pieceBytes;
    this.#lane = lane;
  }

  begin(): void {
    this.#begun++;
    this.#received = 0;
  }

  received(bytes: number): void {
    this.#received = bytes;
    this.#pump();
  }

  #pump(): void {
    if (this.#job !== undefined || this.#closed || this.#begun !== 1 || this.#error !== undefined)
      return;
    const end = this.#position + this.#received;
    const upto = Math.min(this.#received, end - (end % BLOCK_BYTES) - this.#position);
    if (upto - this.#written < this.#piece) return;
    const from = this.#written;
    const seed = this.#crc;
    this.#job = this.#lane
      .run(() =>
        pwriteCrc64(this.#fd, this.#buf.subarray(from, upto), this.#position + from, {
          sparse: true,
          seed,
        }),
      )
      .then(
        (crc) => {
          this.#crc = crc;
          this.#written = upto;
          this.#job = undefined;
          this.#pump();
        },
        (err: unknown) => {
          this.#error = err instanceof Error ? err : new Error(String(err));
          this.#job = undefined;
        },
      );
  }

  /** Resolves once no piece is being written (the buffer may be reused then). */
  async settled(): Promise<void> {
    this.#closed = true;
    while (this.#job !== undefined) await this.#job;
  }

  /**
   * After the GET resolved with the whole body in the buffer: writes what is not written yet and
   * returns the CRC64 of the range as written. Throws the error of a failed write (node:fs style).
   */
  async finish(): Promise<bigint> {
    await this.settled();
    if (this.#error !== undefined) throw this.#error;
    if (this.#begun !== 1) {
      // Not streamed (no body seen: another transport), or begun again by a retry.
      return this.#lane.run(() =>
        pwriteCrc64(this.#fd, this.#buf.subarray(0, this.#n), this.#position, { sparse: true }),
      );
    }
    if (this.#written === this.#n) return this.#crc;
    const from = this.#written;
    const seed = this.#crc;
    return this.#lane.run(() =>
      pwriteCrc64(this.#fd, this.#buf.subarray(from, this.#n), this.#position + from, {
        sparse: true,
        seed,
      }),
    );
  }
}

/**
 * Positional write of `buf[0, n)` at `position`, in one native threadpool job; with `md5`, the
 * same job hashes the bytes after writing them (the caller keeps file order). Sparse: 4 KiB blocks
 * (aligned on the file's offsets) of zeros are not written, so they stay holes of the target — a
 * new file or a released stub, whose holes read as zeros; the file's size is set apart from the
 * writes (the stub's size, or a truncate after the last range). With `crc`, the same job computes
 * the CRC64 of the bytes (pwriteCrc64) and returns it.
 */
export const writeAt = async (
  fh: FileHandle,
  buf: Buffer,
  n: number,
  position: number,
  where: BlobOperationSubject,
  signal: AbortSignal,
  md5: Md5Stream | undefined,
  crc: boolean,
  lane: WriteLane = new WriteLane(0),
): Promise<bigint | undefined> => {
  if (signal.aborted) throw new BlobOperationError(WRITE, where, abortCause(signal));
  const data = n === buf.length ? buf : buf.subarray(0, n);
  try {
    return await lane.run(async () => {
      if (crc) return await pwriteCrc64(fh.fd, data, position, { sparse: true });
      if (md5) await md5.pwriteAndHash(fh.fd, data, position, { sparse: true });
      else await pwriteAll(fh.fd, data, position, { sparse: true });
      return undefined;
    });
  } catch (err) {
    throw fsFailure(WRITE, where, err);
  }
};

/** The rest of a range written as it arrived, and the CRC64 of all of it (writeAt's counterpart). */
export const finishStream = async (
  stream: RangeStreamWrite,
  where: BlobOperationSubject,
  signal: AbortSignal,
): Promise<bigint> => {
  if (signal.aborted) {
    await stream.settled();
    throw new BlobOperationError(WRITE, where, abortCause(signal));
  }
  try {
    return await stream.finish();
  } catch (err) {
    throw fsFailure(WRITE, where, err);
  }
};
