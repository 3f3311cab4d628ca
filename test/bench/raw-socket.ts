/**
 * The strongest raw ceiling for the read side: ranged GETs over plain keep-alive TCP sockets whose
 * reads land STRAIGHT in the range buffer (net.Socket `onread` with a buffer function: during the
 * body the kernel copies into `buf.subarray(received)`), no HTTP parser objects, no per-chunk
 * Buffers, no garbage — what a Go client such as rclone gets from its runtime. Loopback http
 * only (the benchmark sink); Content-Length bodies only; no auth (the sink ignores it), no
 * retries. Each range is then written at its offset (positional writes of 128 KiB).
 */
import { connect } from "node:net";
import type { Socket } from "node:net";
import { open } from "node:fs/promises";
import { constants } from "node:fs";

import { allocLargeBuffer } from "@hsmfleet/fs";

const HEAD_MAX = 64 * 1024;
/** Bytes per positional write of a range. */
const WRITE_PIECE = 128 * 1024;

interface Pending {
  into: Buffer;
  /** Bytes of the body received so far. */
  got: number;
  headDone: boolean;
  headLen: number;
  status: number;
  length: number;
  resolve: () => void;
  reject: (err: Error) => void;
}

/** One keep-alive connection; one request at a time. */
class Conn {
  readonly socket: Socket;
  readonly #head = Buffer.allocUnsafe(HEAD_MAX);
  #p: Pending | undefined;
  #dead = false;

  constructor(host: string, port: number) {
    this.socket = connect({
      host,
      port,
      noDelay: true,
      onread: {
        buffer: () => {
          const p = this.#p;
          if (p?.headDone) return p.into.subarray(p.got);
          return this.#head.subarray(p?.headLen ?? 0);
        },
        callback: (n: number) => {
          this.#onData(n);
          return true;
        },
      },
    });
    this.socket.on("error", (err) => this.#fail(err));
    this.socket.on("close", () => this.#fail(new Error("connection closed")));
  }

  get dead(): boolean {
    return this.#dead;
  }

  #fail(err: Error): void {
    this.#dead = true;
    const p = this.#p;
    this.#p = undefined;
    p?.reject(err);
  }

  #onData(n: number): void {
    const p = this.#p;
    if (p === undefined) return this.#fail(new Error("data without a request"));
    if (p.headDone) {
      p.got += n;
    } else {
      p.headLen += n;
      const end = this.#head.indexOf("\r\n\r\n", 0, "latin1");
      if (end < 0 || end + 4 > p.headLen) {
        if (p.headLen >= HEAD_MAX) this.#fail(new Error("response head too long"));
        return;
      }
      const head = this.#head.toString("latin1", 0, end);
      p.status = Number(head.slice(9, 12));
      const m = /\r\ncontent-length:\s*(\d+)/i.exec(head);
      if (!m) return this.#fail(new Error(`no Content-Length: ${head.slice(0, 200)}`));
      p.length = Number(m[1]);
      if (p.status !== 200 && p.status !== 206) return this.#fail(new Error(`HTTP ${p.status}`));
      if (p.length !== p.into.length)
        return this.#fail(new Error(`Content-Length ${p.length}, expected ${p.into.length}`));
      p.headDone = true;
      const extra = p.headLen - (end + 4);
      this.#head.copy(p.into, 0, end + 4, p.headLen);
      p.got = extra;
    }
    if (p.headDone && p.got >= p.length) {
      this.#p = undefined;
      if (p.got > p.length) return this.#fail(new Error("more body than Content-Length"));
      p.resolve();
    }
  }

  get(path: string, host: string, start: number, into: Buffer): Promise<void> {
    return new Promise((resolve, reject) => {
      if (this.#dead) return reject(new Error("connection closed"));
      this.#p = {
        into,
        got: 0,
        headDone: false,
        headLen: 0,
        status: 0,
        length: 0,
        resolve,
        reject,
      };
      this.socket.write(
        `GET ${path} HTTP/1.1\r\nHost: ${host}\r\nx-ms-version: 2026-04-06\r\n` +
          `x-ms-range: bytes=${start}-${start + into.length - 1}\r\n\r\n`,
        "latin1",
      );
    });
  }
}

/** Ranged GETs into buffers over a pool of keep-alive sockets (loopback http). */
export class SocketRangeClient {
  readonly #free: Conn[] = [];
  readonly #all = new Set<Conn>();
  readonly #host: string;
  readonly #port: number;
  readonly #base: string;

  constructor(blobEndpoint: string) {
    const u = new URL(blobEndpoint);
    if (u.protocol !== "http:") throw new Error("SocketRangeClient speaks plain http only");
    this.#host = u.hostname;
    this.#port = Number(u.port);
    this.#base = u.pathname.replace(/\/+$/, "");
  }

  async getRange(container: string, name: string, start: number, into: Buffer): Promise<void> {
    let c = this.#free.pop();
    while (c?.dead) c = this.#free.pop();
    if (c === undefined) {
      c = new Conn(this.#host, this.#port);
      this.#all.add(c);
    }
    const path = `${this.#base}/${container}/${name.split("/").map(encodeURIComponent).join("/")}`;
    await c.get(path, `${this.#host}:${this.#port}`, start, into);
    this.#free.push(c);
  }

  close(): void {
    for (const c of this.#all) c.socket.destroy();
    this.#all.clear();
    this.#free.length = 0;
  }
}

/**
 * The files of a listing (sizes known) into NEW files: `fileConcurrency` files at once, each in
 * ranges of `rangeSize` with `rangeConcurrency` in flight, each range written at its offset.
 * Returns the bytes received.
 */
export const socketRestoreNew = async (
  client: SocketRangeClient,
  o: {
    container: string;
    files: Array<{ name: string; size: number; path: string }>;
    rangeSize: number;
    fileConcurrency: number;
    rangeConcurrency: number;
  },
): Promise<number> => {
  let bytes = 0;
  let next = 0;
  const lane = async (): Promise<void> => {
    // Range buffers of this lane, reused from file to file (a small file uses the start of one).
    const bufs: Buffer[] = [];
    for (;;) {
      const f = o.files[next++];
      if (f === undefined) return;
      const fh = await open(
        f.path,
        constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW,
        0o644,
      );
      try {
        let at = 0;
        const rangeLane = async (k: number): Promise<void> => {
          for (;;) {
            const pos = at;
            if (pos >= f.size) return;
            at += o.rangeSize;
            const n = Math.min(o.rangeSize, f.size - pos);
            let buf = bufs[k];
            // On huge pages, as the product's range buffers are (a ceiling at least as strong).
            if (buf === undefined || buf.length < n) bufs[k] = buf = allocLargeBuffer(n);
            const into = buf.subarray(0, n);
            await client.getRange(o.container, f.name, pos, into);
            // In 128 KiB writes, as the native download path writes (large writes cost the kernel
            // several times more per byte: docs/benchmarks.md, issue 17).
            let done = 0;
            while (done < n) {
              const piece = Math.min(WRITE_PIECE, n - done);
              done += (await fh.write(into, done, piece, pos + done)).bytesWritten;
            }
            bytes += n;
          }
        };
        const lanes = Math.min(o.rangeConcurrency, Math.ceil(f.size / o.rangeSize));
        await Promise.all(Array.from({ length: lanes }, (_, k) => rangeLane(k)));
      } finally {
        await fh.close();
      }
    }
  };
  await Promise.all(Array.from({ length: o.fileConcurrency }, lane));
  return bytes;
};
