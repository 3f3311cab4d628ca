/**
 * A fault-injecting HTTP reverse proxy on a loopback port, put between workers and a blob
 * endpoint (Azurite or a sink). Each request either goes through unchanged or gets one fault:
 * an error status (500, 503, 429 with Retry-After, 403), a connection reset, a stall before it is
 * forwarded, a response cut short after its headers, or a response whose body has one byte
 * flipped. Faults come at configured rates (from a seeded generator, so a run can be replayed) or
 * on chosen request numbers, and are counted.
 *
 * With `rangeCrc64` the proxy also answers what Azurite ignores: a ranged GET with
 * `x-ms-range-get-content-crc64: true` gets the CRC64 of the range as the upstream sent it in
 * `x-ms-content-crc64` (as Azure Blob Storage does; 400 OutOfRangeInput over 4 MiB), computed
 * BEFORE a "flip" fault changes a byte: the client sees the checksum of the true bytes.
 */
import { createServer, request as httpRequest } from "node:http";
import type { IncomingMessage, Server, ServerResponse } from "node:http";
import type { Socket } from "node:net";
import { sleep } from "./children.js";

/** What the proxy can do to one request. */
export type FaultKind =
  "status500" | "status503" | "status429" | "status403" | "reset" | "stall" | "truncate" | "flip";

export const FAULT_KINDS: readonly FaultKind[] = [
  "status500",
  "status503",
  "status429",
  "status403",
  "reset",
  "stall",
  "truncate",
  "flip",
];

export interface FaultProxyOptions {
  /** Upstream origin, e.g. `http://127.0.0.1:10000` (a path part is ignored). */
  target: string;
  /** Listen address; default 127.0.0.1. */
  host?: string;
  /** Seed of the fault generator; default 1. The same seed and request order give the same faults. */
  seed?: number;
  /** Probability (0–1) of each fault per eligible request; the sum must not exceed 1. Default none. */
  rates?: Partial<Record<FaultKind, number>>;
  /** Faults on given eligible-request numbers (1-based), in addition to the rates. */
  onRequest?: ReadonlyArray<{ n: number; fault: FaultKind }>;
  /** Which requests may get a fault; default all. Others are always forwarded (and not numbered). */
  eligible?: (req: IncomingMessage) => boolean;
  /** Seconds sent in Retry-After with 429 and 503. Default 1. */
  retryAfterSeconds?: number;
  /** How long a stalled request waits before it is forwarded. Default 2000 ms. */
  stallMs?: number;
  /**
   * Answer x-ms-range-get-content-crc64 as Azure Blob Storage does: the CRC64 (Azure's, of the
   * bytes the upstream sent) of a ranged GET's body in x-ms-content-crc64, base64 of 8
   * little-endian bytes; a range over 4 MiB is 400 OutOfRangeInput. The function computes the
   * CRC64 (e.g. @hsmfleet/fs crc64; testkit does not depend on it). Default: headers pass through.
   */
  rangeCrc64?: (body: Buffer) => bigint;
  /**
   * Holds a request before anything else is done with it: when it returns a promise, the request
   * (body buffered) is forwarded once the promise settles, or dropped if the client went away
   * meanwhile. A held request gets no fault. A test holds one blob's request to keep a job running
   * until it is done with it. Default: nothing is held.
   */
  hold?: (req: IncomingMessage) => Promise<void> | undefined;
}

export interface FaultCounters {
  /** Every request received. */
  requests: number;
  /** Requests forwarded upstream (including stalled and truncated ones). */
  forwarded: number;
  /** Faults injected, by kind. */
  injected: Record<FaultKind, number>;
  /** Answers given an x-ms-content-crc64 by the proxy (rangeCrc64). */
  crc64Answers: number;
}

export interface FaultProxy {
  /** `http://HOST:PORT`, the origin to use instead of the target's. */
  url: string;
  port: number;
  /** The counters so far (a copy). */
  counters(): FaultCounters;
  /** Sum of injected faults. */
  totalInjected(): number;
  /** Change the rates from now on (e.g. turn faults off for a final check). */
  setRates(rates: Partial<Record<FaultKind, number>>): void;
  /** A URL (blob endpoint) with its origin replaced by the proxy's. */
  rewriteUrl(url: string): string;
  /** A connection string whose BlobEndpoint goes through the proxy. */
  rewriteConnectionString(connectionString: string): string;
  /** Closes the listener and every open connection. Idempotent. */
  stop(): Promise<void>;
}

/** The largest range Azure computes a CRC64 for (x-ms-range-get-content-crc64). */
const RANGE_CRC64_MAX = 4 * 1024 * 1024;

/** mulberry32: small, fast, good enough to spread faults; deterministic per seed. */
const seededRandom = (seed: number): (() => number) => {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
};

const STATUS: Record<string, { status: number; code: string; text: string }> = {
  status500: { status: 500, code: "InternalError", text: "injected internal error" },
  status503: { status: 503, code: "ServerBusy", text: "injected: the server is busy" },
  status429: { status: 429, code: "TooManyRequests", text: "injected: too many requests" },
  status403: {
    status: 403,
    code: "AuthorizationPermissionMismatch",
    text: "injected: this request is not authorized to perform this operation",
  },
};

const checkRates = (rates: Partial<Record<FaultKind, number>>): void => {
  let sum = 0;
  for (const [kind, rate] of Object.entries(rates)) {
    if (!FAULT_KINDS.includes(kind as FaultKind)) throw new Error(`unknown fault kind ${kind}`);
    if (typeof rate !== "number" || !(rate >= 0 && rate <= 1)) {
      throw new Error(`fault rate of ${kind} must be within 0..1`);
    }
    sum += rate;
  }
  if (sum > 1 + 1e-9) throw new Error(`fault rates add up to ${sum} (> 1)`);
};

export async function startFaultProxy(options: FaultProxyOptions): Promise<FaultProxy> {
  const upstream = new URL(options.target);
  const host = options.host ?? "127.0.0.1";
  const random = seededRandom(options.seed ?? 1);
  let rates: Partial<Record<FaultKind, number>> = { ...(options.rates ?? {}) };
  checkRates(rates);
  const planned = new Map<number, FaultKind>();
  for (const { n, fault } of options.onRequest ?? []) planned.set(n, fault);
  const retryAfter = String(options.retryAfterSeconds ?? 1);
  const stallMs = options.stallMs ?? 2000;
  const counters: FaultCounters = {
    requests: 0,
    forwarded: 0,
    crc64Answers: 0,
    injected: Object.fromEntries(FAULT_KINDS.map((k) => [k, 0])) as Record<FaultKind, number>,
  };
  let eligibleSeen = 0;
  const sockets = new Set<Socket>();
  let stopped = false;

  const choose = (req: IncomingMessage): FaultKind | undefined => {
    if (options.eligible && !options.eligible(req)) return undefined;
    eligibleSeen++;
    // One draw per eligible request whatever happens, so the sequence depends on the order only.
    const draw = random();
    const fixed = planned.get(eligibleSeen);
    if (fixed !== undefined) return fixed;
    let acc = 0;
    for (const kind of FAULT_KINDS) {
      acc += rates[kind] ?? 0;
      if (draw < acc) return kind;
    }
    return undefined;
  };

  /** A ranged GET asking for its CRC64, when the proxy answers it: the range's length. */
  const crcRangeOf = (req: IncomingMessage): number | undefined => {
    if (options.rangeCrc64 === undefined || req.method !== "GET") return undefined;
    if (req.headers["x-ms-range-get-content-crc64"] !== "true") return undefined;
    const range = req.headers["x-ms-range"] ?? req.headers["range"];
    const m = typeof range === "string" ? /^bytes=(\d+)-(\d+)$/.exec(range) : null;
    return m === null ? undefined : Number(m[2]) - Number(m[1]) + 1;
  };

  const forward = (
    req: IncomingMessage,
    res: ServerResponse,
    truncate: boolean,
    body?: Buffer,
    flip = false,
  ): void => {
    counters.forwarded++;
    const crcLength = crcRangeOf(req);
    const headers = { ...req.headers, host: upstream.host };
    const up = httpRequest(
      {
        host: upstream.hostname,
        port: upstream.port,
        method: req.method,
        path: req.url,
        headers,
        agent: false,
      },
      (upRes) => {
        const length = Number(upRes.headers["content-length"] ?? "0");
        if (truncate && !(length > 1)) {
          // Nothing to cut short: the upstream did the work, the client sees the connection
          // close without an answer (the "did my PUT happen?" case).
          upRes.resume();
          upRes.on("end", () => req.socket.destroy());
          return;
        }
        const ok = (upRes.statusCode ?? 502) >= 200 && (upRes.statusCode ?? 502) < 300;
        if (!truncate && ok && (flip || crcLength !== undefined)) {
          // The whole body: its CRC64 (of the true bytes), then maybe one byte flipped.
          const parts: Buffer[] = [];
          upRes.on("data", (c: Buffer) => parts.push(c));
          upRes.on("end", () => {
            const data = Buffer.concat(parts);
            const headers: Record<string, string | string[]> = {};
            for (const [k, v] of Object.entries(upRes.headers)) if (v !== undefined) headers[k] = v;
            if (crcLength !== undefined) {
              const crc = Buffer.alloc(8);
              crc.writeBigUInt64LE(options.rangeCrc64!(data));
              headers["x-ms-content-crc64"] = crc.toString("base64");
              counters.crc64Answers++;
            }
            if (flip && data.length > 0) data[data.length >> 1]! ^= 0xff;
            res.writeHead(upRes.statusCode ?? 502, upRes.statusMessage, headers);
            res.end(data);
          });
          return;
        }
        res.writeHead(upRes.statusCode ?? 502, upRes.statusMessage, upRes.rawHeaders);
        if (!truncate) {
          upRes.pipe(res);
          return;
        }
        // Send the headers and half of the body, then cut the connection.
        const keep = Math.floor(length / 2);
        let sent = 0;
        upRes.on("data", (chunk: Buffer) => {
          if (sent < keep) {
            const part = chunk.subarray(0, keep - sent);
            sent += part.length;
            res.write(part);
          }
        });
        upRes.on("end", () => {
          res.flushHeaders();
          setImmediate(() => req.socket.destroy());
        });
      },
    );
    up.on("error", (err) => {
      if (!res.headersSent) {
        res.writeHead(502, { "content-type": "text/plain" });
        res.end(`fault proxy: upstream error: ${err.message}`);
      } else {
        req.socket.destroy();
      }
    });
    if (body !== undefined) up.end(body);
    else req.pipe(up);
  };

  const handle = (req: IncomingMessage, res: ServerResponse): void => {
    const held = options.hold?.(req);
    if (held !== undefined) {
      const chunks: Buffer[] = [];
      req.on("data", (c: Buffer) => chunks.push(c));
      const ended = new Promise<void>((resolve) => req.on("end", resolve));
      counters.requests++;
      void Promise.allSettled([held, ended]).then(() => {
        if (!req.socket.destroyed) forward(req, res, false, Buffer.concat(chunks));
      });
      return;
    }
    counters.requests++;
    const crcLength = crcRangeOf(req);
    if (crcLength !== undefined && crcLength > RANGE_CRC64_MAX) {
      req.resume();
      req.on("end", () => {
        const code = "OutOfRangeInput";
        const body = `<?xml version="1.0" encoding="utf-8"?><Error><Code>${code}</Code><Message>One of the request inputs is out of range.</Message></Error>`;
        res.writeHead(400, {
          "content-type": "application/xml",
          "content-length": Buffer.byteLength(body),
          "x-ms-error-code": code,
        });
        res.end(body);
      });
      return;
    }
    const fault = choose(req);
    if (fault !== undefined) counters.injected[fault]++;
    switch (fault) {
      case undefined:
        forward(req, res, false);
        return;
      case "reset":
        // Read a little of the request (as a server that dies mid-request would), then RST.
        req.once("data", () => undefined);
        setImmediate(() => req.socket.resetAndDestroy());
        return;
      case "stall": {
        // Hold the request body until the stall is over, then forward it.
        const chunks: Buffer[] = [];
        req.on("data", (c: Buffer) => chunks.push(c));
        req.on("end", () => {
          void sleep(stallMs).then(() => {
            if (!req.socket.destroyed) forward(req, res, false, Buffer.concat(chunks));
          });
        });
        return;
      }
      case "truncate":
        forward(req, res, true);
        return;
      case "flip":
        forward(req, res, false, undefined, true);
        return;
      default: {
        const { status, code, text } = STATUS[fault]!;
        req.resume();
        req.on("end", () => {
          const body = `<?xml version="1.0" encoding="utf-8"?><Error><Code>${code}</Code><Message>${text}</Message></Error>`;
          res.writeHead(status, {
            "content-type": "application/xml",
            "content-length": Buffer.byteLength(body),
            "x-ms-error-code": code,
            ...(status === 429 || status === 503 ? { "retry-after": retryAfter } : {}),
          });
          res.end(body);
        });
      }
    }
  };

  const server: Server = createServer(handle);
  server.keepAliveTimeout = 30_000;
  server.on("connection", (socket: Socket) => {
    sockets.add(socket);
    socket.once("close", () => sockets.delete(socket));
  });
  server.on("clientError", (_err, socket) => socket.destroy());
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, host, () => resolve());
  });
  const address = server.address();
  if (address === null || typeof address === "string") throw new Error("fault proxy: no port");
  const port = address.port;
  const url = `http://${host.includes(":") ? `[${host}]` : host}:${port}`;

  const rewriteUrl = (u: string): string => {
    const parsed = new URL(u);
    return `${url}${parsed.pathname === "/" ? "" : parsed.pathname}${parsed.search}`;
  };

  return {
    url,
    port,
    counters: () => ({ ...counters, injected: { ...counters.injected } }),
    totalInjected: () => Object.values(counters.injected).reduce((a, b) => a + b, 0),
    setRates(next) {
      checkRates(next);
      rates = { ...next };
    },
    rewriteUrl,
    rewriteConnectionString: (cs) =>
      cs.replace(/BlobEndpoint=([^;]+)/i, (_m, endpoint: string) => {
        return `BlobEndpoint=${rewriteUrl(endpoint)}`;
      }),
    stop: async () => {
      if (stopped) return;
      stopped = true;
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
