import { createHash } from "node:crypto";
import { availableParallelism } from "node:os";
import { Worker } from "node:worker_threads";
import { errorMessage } from "@hsmfleet/core";
import { BlobOperationError, type BlobOperationSubject } from "./errors.js";

// MD5 off the event loop. A block upload hashes every byte once with MD5, for the whole-file MD5
// stored at commit; each block's own transactional check is a CRC64 (block-checksum.ts, native,
// ~10 GB/s). OpenSSL's MD5 runs at ~700 MB/s per core and cannot be split, so on the event loop it
// would cap a worker and starve its HTTP traffic. Here helper threads (started as the load needs
// them, up to one per CPU) hash the shared buffers in place: each file's running MD5 lives on one
// thread that receives its blocks in order (one file's whole-file MD5 runs at one core's speed;
// many files use many cores); the single-put MD5s of mid-size files go to the least busy thread.
// Should the threads be unavailable, hashing falls back to this thread.

/** Files at least this big (single Put Blob) are hashed on a thread; smaller ones here. */
export const THREAD_HASH_MIN_BYTES = 256 * 1024;
/** At most one MD5 thread per CPU, and 16 (about 10 GB/s of MD5). */
const HASH_THREADS_MAX = Math.max(1, Math.min(availableParallelism(), 16));
/** Threads that may fail (crash, fail to start) before hashing stays on this thread. */
const HASH_THREAD_FAILURES = 3;

const HASH_THREAD_SOURCE = `"use strict";
const { parentPort } = require("node:worker_threads");
const { createHash } = require("node:crypto");
const files = new Map();
parentPort.on("message", (m) => {
  let reply;
  try {
    if (m.op === "block") {
      const md5 = createHash("md5").update(new Uint8Array(m.buffer, m.offset, m.length)).digest();
      reply = { id: m.id, md5 };
    } else if (m.op === "update") {
      let h = files.get(m.file);
      if (h === undefined) {
        h = createHash("md5");
        files.set(m.file, h);
      }
      h.update(new Uint8Array(m.buffer, m.offset, m.length));
      reply = { id: m.id };
    } else if (m.op === "digest") {
      const h = files.get(m.file) || createHash("md5");
      files.delete(m.file);
      reply = { id: m.id, md5: h.digest() };
    } else if (m.op === "drop") {
      files.delete(m.file);
      reply = { id: m.id };
    } else {
      reply = { id: m.id, error: "unknown operation " + m.op };
    }
  } catch (err) {
    reply = { id: m.id, error: String((err && err.message) || err) };
  }
  parentPort.postMessage(reply);
});
`;

interface HashReply {
  id: number;
  md5?: Uint8Array;
  error?: string;
}

interface Pending {
  resolve: (md5: Buffer | undefined) => void;
  reject: (err: Error) => void;
}

class HashThread {
  readonly worker: Worker;
  readonly pending = new Map<number, Pending>();
  /** Running whole-file hashes held by this thread. */
  files = 0;
  failed: Error | undefined;

  constructor(onFailure: (thread: HashThread) => void) {
    this.worker = new Worker(HASH_THREAD_SOURCE, { eval: true, name: "hsmfleet-md5" });
    this.worker.unref();
    this.worker.on("message", (reply: HashReply) => {
      const p = this.pending.get(reply.id);
      if (p === undefined) return;
      this.pending.delete(reply.id);
      if (this.pending.size === 0) this.worker.unref();
      if (reply.error !== undefined) p.reject(new Error(`MD5 thread: ${reply.error}`));
      else
        p.resolve(
          reply.md5 === undefined
            ? undefined
            : Buffer.from(reply.md5.buffer, reply.md5.byteOffset, reply.md5.byteLength),
        );
    });
    const fail = (err: Error): void => {
      const first = this.failed === undefined;
      this.failed ??= err;
      for (const p of this.pending.values()) p.reject(err);
      this.pending.clear();
      if (first) onFailure(this); // "error" is followed by "exit": one failure
    };
    this.worker.on("error", (err) => fail(new Error(`MD5 thread failed: ${err.message}`)));
    this.worker.on("exit", (code) => fail(new Error(`MD5 thread exited (code ${code})`)));
  }

  call(message: Record<string, unknown>, id: number): Promise<Buffer | undefined> {
    if (this.failed !== undefined) return Promise.reject(this.failed);
    return new Promise((resolve, reject) => {
      if (this.pending.size === 0) this.worker.ref(); // keep the process up while it works for us
      this.pending.set(id, { resolve, reject });
      this.worker.postMessage({ ...message, id });
    });
  }
}

/** The whole-file MD5 of one upload, fed block by block in file order. */
interface FileHasher {
  update(buf: Buffer): Promise<void>;
  digest(): Promise<Buffer>;
  /** Forget the running hash (failed upload). */
  drop(): void;
}

interface Md5Service {
  block(buf: Buffer): Promise<Buffer>;
  file(): FileHasher;
}

export const md5Here = (buf: Buffer): Buffer => createHash("md5").update(buf).digest();

/** Hashing on this thread: the fallback, and what small files use. */
const localMd5: Md5Service = {
  block: (buf) => Promise.resolve(md5Here(buf)),
  file: () => {
    const hash = createHash("md5");
    return {
      update: (buf) => {
        hash.update(buf);
        return Promise.resolve();
      },
      digest: () => Promise.resolve(hash.digest()),
      drop: () => undefined,
    };
  },
};

class Md5Threads implements Md5Service {
  readonly #threads: HashThread[] = [];
  #nextId = 1;
  #nextFile = 1;
  #failures = 0;

  /**
   * The least busy thread (for a whole-file hash: the one holding the fewest files). A new thread
   * is started instead when every thread is busy and the limit allows; threads are not stopped.
   */
  #pick(byFiles: boolean): HashThread | undefined {
    let best: HashThread | undefined;
    for (const t of this.#threads) {
      if (
        best === undefined ||
        (byFiles && t.files < best.files) ||
        ((!byFiles || t.files === best.files) && t.pending.size < best.pending.size)
      )
        best = t;
    }
    const busy = best === undefined || best.pending.size > 0 || (byFiles && best.files > 0);
    if (busy && this.#threads.length < HASH_THREADS_MAX && this.#failures < HASH_THREAD_FAILURES) {
      try {
        const thread = new HashThread((failed) => {
          this.#failures++;
          const i = this.#threads.indexOf(failed);
          if (i >= 0) this.#threads.splice(i, 1);
        });
        this.#threads.push(thread);
        return thread;
      } catch {
        this.#failures++; // e.g. resource limits: carry on with what there is, or on this thread
      }
    }
    return best;
  }

  async block(buf: Buffer): Promise<Buffer> {
    const thread = this.#pick(false);
    if (thread === undefined) return md5Here(buf);
    const md5 = await thread.call(
      { op: "block", buffer: buf.buffer, offset: buf.byteOffset, length: buf.length },
      this.#nextId++,
    );
    if (md5 === undefined) throw new Error("MD5 thread sent no digest");
    return md5;
  }

  file(): FileHasher {
    const thread = this.#pick(true);
    if (thread === undefined) return localMd5.file();
    const file = this.#nextFile++;
    thread.files++;
    let open = true;
    const done = (): void => {
      if (open) thread.files--;
      open = false;
    };
    return {
      update: async (buf) => {
        await thread.call(
          { op: "update", file, buffer: buf.buffer, offset: buf.byteOffset, length: buf.length },
          this.#nextId++,
        );
      },
      digest: async () => {
        try {
          const md5 = await thread.call({ op: "digest", file }, this.#nextId++);
          if (md5 === undefined) throw new Error("MD5 thread sent no digest");
          return md5;
        } finally {
          done();
        }
      },
      drop: () => {
        if (!open) return;
        done();
        thread.call({ op: "drop", file }, this.#nextId++).catch(() => undefined);
      },
    };
  }
}

let md5Threads: Md5Threads | undefined;

/** The process-wide MD5 threads (started as the work needs them, on this thread if they cannot). */
export const md5Service = (): Md5Service => (md5Threads ??= new Md5Threads());

/** A hashing failure is a local one: the file is not committed; a later attempt may succeed. */
export const hashFailure = (where: BlobOperationSubject, err: unknown): BlobOperationError =>
  err instanceof BlobOperationError
    ? err
    : new BlobOperationError("read", where, err, {
        detail: `MD5: ${errorMessage(err)}`,
        retryable: true,
      });
