/**
 * What HTTP/1.1 pipelining could save at most on the small-file GET path: a bare client (no auth,
 * no retries, no file writes) fetches the same 4 KiB blobs from the loopback sink in passes of
 * HSMFLEET_PIPE_FILES (default 10,000) GETs, 64 in flight, either one GET per connection at a time
 * (64 connections, one write per GET: what socket-get.ts does) or `depth` GETs written in one write
 * on each of 64/depth connections, their answers read in order. Prints the client's and the sink's
 * CPU seconds per pass, the sides alternating. Measurement only: nothing here handles a connection
 * closed mid-pipeline.
 *
 * flock /tmp/bench.lock node test/dist/bench/pipeline-ceiling.bench.js
 */
import { connect } from "node:net";
import type { Socket } from "node:net";
import { loadavg } from "node:os";
import { spawnBlobSink } from "./blob-sink.js";
import { cpuSeconds, median } from "./proc.js";

const FILES = Number(process.env["HSMFLEET_PIPE_FILES"] ?? 10_000);
const ROUNDS = Number(process.env["HSMFLEET_PIPE_ROUNDS"] ?? 6);
const DEPTHS = (process.env["HSMFLEET_PIPE_DEPTHS"] ?? "1,4,8").split(",").map(Number);
const IN_FLIGHT = 64;
const SIZE = 4096;
const CONTAINER = "pipe-small";
const HEAD_MAX = 64 * 1024;

interface Want {
  into: Buffer;
  got: number;
  length: number;
  resolve: () => void;
  reject: (err: Error) => void;
}

/** One connection; requests written in batches, answers (Content-Length, 200) read in order. */
class PipeConn {
  readonly socket: Socket;
  readonly #head = Buffer.allocUnsafe(HEAD_MAX);
  #headLen = 0;
  readonly #queue: Want[] = [];
  #inBody = false;

  constructor(host: string, port: number) {
    this.socket = connect({
      host,
      port,
      noDelay: true,
      onread: {
        buffer: () => {
          const w = this.#queue[0];
          if (this.#inBody && w !== undefined) return w.into.subarray(w.got);
          return this.#head.subarray(this.#headLen);
        },
        callback: (n: number) => {
          this.#onData(n);
          return true;
        },
      },
    });
    this.socket.on("error", (err) => this.#fail(err));
  }

  #fail(err: Error): void {
    for (const w of this.#queue.splice(0)) w.reject(err);
  }

  #onData(n: number): void {
    if (this.#inBody) {
      const w = this.#queue[0]!;
      w.got += n;
      if (w.got === w.length) {
        this.#queue.shift();
        this.#inBody = false;
        w.resolve();
      }
      return;
    }
    this.#headLen += n;
    // Heads (and whole small answers) may arrive several in one read.
    for (;;) {
      const w = this.#queue[0];
      if (w === undefined || this.#headLen === 0) return;
      const end = this.#head.indexOf("\r\n\r\n", 0, "latin1");
      if (end < 0 || end + 4 > this.#headLen) return;
      const head = this.#head.toString("latin1", 0, end);
      const m = /\r\ncontent-length:\s*(\d+)/i.exec(head);
      if (head.slice(9, 12) !== "200" || !m || Number(m[1]) !== w.into.length)
        return this.#fail(new Error(`unexpected answer: ${head.slice(0, 120)}`));
      w.length = w.into.length;
      const bodyHere = Math.min(w.length, this.#headLen - (end + 4));
      this.#head.copy(w.into, 0, end + 4, end + 4 + bodyHere);
      w.got = bodyHere;
      const used = end + 4 + bodyHere;
      this.#head.copy(this.#head, 0, used, this.#headLen);
      this.#headLen -= used;
      if (w.got < w.length) {
        this.#inBody = true;
        return;
      }
      this.#queue.shift();
      w.resolve();
    }
  }

  /** Writes every request in one write; resolves when every answer arrived. */
  getAll(paths: string[], host: string, intos: Buffer[]): Promise<void[]> {
    let text = "";
    const done = paths.map(
      (p, i) =>
        new Promise<void>((resolve, reject) => {
          this.#queue.push({ into: intos[i]!, got: 0, length: 0, resolve, reject });
          text += `GET ${p} HTTP/1.1\r\nhost: ${host}\r\nx-ms-version: 2026-04-06\r\n\r\n`;
        }),
    );
    this.socket.write(text, "latin1");
    return Promise.all(done);
  }
}

const main = async (): Promise<void> => {
  const sink = await spawnBlobSink();
  try {
    const names = Array.from({ length: FILES }, (_, i) => `d${Math.floor(i / 200)}/f${i}`);
    await sink.register({
      container: CONTAINER,
      blobs: names.map((name) => ({ name, size: SIZE })),
      md5: true,
    });
    const u = new URL(sink.blobEndpoint);
    const host = `${u.hostname}:${u.port}`;
    const base = `${u.pathname.replace(/\/+$/, "")}/${CONTAINER}/`;
    const pass = async (depth: number): Promise<{ self: number; sink: number; wall: number }> => {
      const conns = Array.from(
        { length: IN_FLIGHT / depth },
        () => new PipeConn(u.hostname, Number(u.port)),
      );
      const c0 = process.cpuUsage();
      const s0 = cpuSeconds(sink.pid) ?? 0;
      const t0 = performance.now();
      let next = 0;
      await Promise.all(
        conns.map(async (c) => {
          const bufs = Array.from({ length: depth }, () => Buffer.allocUnsafe(SIZE));
          for (;;) {
            const batch = names.slice(next, next + depth);
            next += batch.length;
            if (batch.length === 0) return;
            await c.getAll(
              batch.map((n) => base + n),
              host,
              bufs.slice(0, batch.length),
            );
          }
        }),
      );
      const wall = (performance.now() - t0) / 1000;
      const c = process.cpuUsage(c0);
      for (const x of conns) x.socket.destroy();
      return {
        self: (c.user + c.system) / 1e6,
        sink: (cpuSeconds(sink.pid) ?? 0) - s0,
        wall,
      };
    };
    for (const d of DEPTHS) await pass(d); // warm-up
    const rows = new Map<number, Array<{ self: number; sink: number; wall: number }>>();
    for (let r = 0; r < ROUNDS; r++) {
      for (const d of r % 2 === 0 ? DEPTHS : [...DEPTHS].reverse()) {
        const x = await pass(d);
        process.stdout.write(
          `round ${r + 1} depth ${d}: client ${x.self.toFixed(3)} CPU s, sink ${x.sink.toFixed(3)}, wall ${x.wall.toFixed(3)} s, load ${loadavg()[0]!.toFixed(1)}\n`,
        );
        rows.set(d, [...(rows.get(d) ?? []), x]);
      }
    }
    for (const [d, xs] of rows)
      process.stdout.write(
        `median depth ${d}: client ${median(xs.map((x) => x.self)).toFixed(3)} CPU s, sink ${median(xs.map((x) => x.sink)).toFixed(3)}, wall ${median(xs.map((x) => x.wall)).toFixed(3)} s\n`,
      );
  } finally {
    await sink.stop().catch(() => undefined);
  }
};

await main();
