/**
 * Writing downloaded data into an already-open file and hashing it in the same libuv threadpool
 * job (native/writehash.c) — the download direction's counterpart of readSmallFile and
 * preadCrc64. The descriptor is the caller's: it was opened fd-relative to the job root without
 * following a symlink (TargetRoot, HsmEmulation); nothing here takes a path.
 *
 * - Md5Stream: an MD5 fed in file order by pwriteAndHash (each piece hashed right after it is
 *   written, while it is in the CPU cache) or by hashFileRange (a re-read through a native
 *   buffer, when the bytes were written by others, e.g. other workers' chunks). No MD5 on the JS
 *   thread, no second pass over the file when the writer hashes.
 * - writeWholeFile: a small file in one job: write at 0, ftruncate to the data's length, MD5.
 *
 * `sparse` (downloads into new files and released stubs, whose unwritten blocks are holes that
 * read as zeros): 4 KiB blocks, aligned on the file's offsets, that hold only zeros are hashed but
 * not written, so a sparse file stays sparse (SPARSE_BLOCK_BYTES).
 *
 * Failures reject with an Error carrying code, errno and syscall ("write", "read",
 * "ftruncate"), like node:fs errors.
 */
import { loadNative } from "./native.js";
import type { NativeMd5State } from "./native.js";

/** The block a sparse write leaves a hole when it holds only zeros (aligned on file offsets). */
export const SPARSE_BLOCK_BYTES = 4096;

/** How a write treats zeros. */
export interface WriteOptions {
  /** Leave all-zero blocks unwritten (holes). Default false: every byte is written. */
  sparse?: boolean;
}

/** An MD5 computed natively; feed it in order, one job at a time, then digest() once. */
export class Md5Stream {
  readonly #state: NativeMd5State;
  #bytes = 0;
  #busy = false;
  #spent = false;

  constructor() {
    this.#state = loadNative().md5Create();
  }

  /** Bytes hashed so far. */
  get bytes(): number {
    return this.#bytes;
  }

  #begin(what: string): NativeMd5State {
    if (this.#spent) throw new Error(`${what}: the MD5 was already digested`);
    if (this.#busy) throw new Error(`${what}: the MD5 is being fed by another job`);
    this.#busy = true;
    return this.#state;
  }

  /**
   * Writes all of `data` at `position` of `fd` (zero blocks skipped with `sparse`) and hashes it
   * (after the bytes before it).
   */
  async pwriteAndHash(
    fd: number,
    data: Uint8Array,
    position: number,
    options: WriteOptions = {},
  ): Promise<number> {
    const state = this.#begin("pwriteAndHash");
    try {
      const n = await loadNative().pwriteHash(fd, data, position, state, options.sparse ?? false);
      this.#bytes += n;
      return n;
    } finally {
      this.#busy = false;
    }
  }

  /** Reads [position, position+length) of `fd` natively and hashes it; the bytes read (EOF). */
  async hashFileRange(fd: number, position: number, length: number): Promise<number> {
    const state = this.#begin("hashFileRange");
    try {
      const n = await loadNative().preadHash(fd, position, length, state);
      this.#bytes += n;
      return n;
    } finally {
      this.#busy = false;
    }
  }

  /** The 16-byte digest; the stream cannot be fed afterwards. */
  digest(): Buffer {
    const state = this.#begin("digest");
    this.#spent = true;
    this.#busy = false;
    return loadNative().md5Digest(state);
  }
}

/** Writes all of `data` at `position` of `fd` (no hashing), in one threadpool job. */
export const pwriteAll = (
  fd: number,
  data: Uint8Array,
  position: number,
  options: WriteOptions = {},
): Promise<number> => loadNative().pwriteHash(fd, data, position, null, options.sparse ?? false);

/**
 * A whole small file in one threadpool job: `data` written at offset 0 of `fd`, the file cut
 * (or extended) to data.length, and, with `md5`, the MD5 of `data` returned (computed on the
 * pool thread).
 */
export const writeWholeFile = async (
  fd: number,
  data: Uint8Array,
  options: { md5?: boolean } & WriteOptions = {},
): Promise<Buffer | undefined> => {
  const out = options.md5 ? Buffer.alloc(16) : null;
  await loadNative().writeWhole(fd, data, out, options.sparse ?? false);
  return out ?? undefined;
};
