/**
 * GET responses read straight into the caller's buffer: a pool of keep-alive HTTP/1.1
 * connections (node:net, or node:tls for https) whose socket reads land, during the body, in
 * `into.subarray(received)` (net.Socket `onread` with a buffer function). No HTTP parser objects,
 * no per-chunk Buffers, no copy on the main thread: for plain http the kernel copies into the
 * range buffer, for https OpenSSL decrypts into it. direct-get.ts sends ranged and whole-blob
 * GETs through it (DirectBlobTransport.getInto); node:http stays for everything else.
 *
 * What it understands of HTTP/1.1: a status line, headers (names lower-cased; repeated ones
 * joined with ", "), a Content-Length body. A 2xx answer whose Content-Length is not
 * into.length (or that has none: chunked) is not read: `lengthMismatch`, the connection is
 * closed. A non-2xx answer's body (up to 64 KiB, Content-Length) is kept as text for the error;
 * longer or unframed ones close the connection. `Connection: close` closes it after the answer.
 *
 * Failures reject with a Node-style error the retry policy knows (errors.ts isRetryableHttpError):
 * ECONNRESET for a connection closed or reset before the whole body arrived (the message says
 * after how many bytes), ETIMEDOUT for a try that exceeds its timeout, an AbortError when the
 * signal fires (the connection is destroyed). A connection reused from the pool that fails before
 * any byte of an answer arrived (the server closed it while it was idle) is replaced once at once.
 */
import { connect as netConnect, isIP, type Socket } from "node:net";
import { connect as tlsConnect } from "node:tls";
import { watchAbort } from "./abort-watch.js";
import { parseAnswerHead, type AnswerHeaders } from "./answer-head.js";

/** Response head limit (status line and headers). */
const HEAD_MAX = 64 * 1024;
/** An error answer's body kept for the message. */
const ERROR_BODY_MAX = 64 * 1024;
/** Idle connections are closed after this long (below common server keep-alive timeouts). */
const DEFAULT_IDLE_MS = 20_000;

export interface SocketAnswer {
  status: number;
  /** Looked up by lower-cased name (answer-head.ts). */
  headers: AnswerHeaders;
  contentLength: number | undefined;
  /** A 2xx answer whose length was not into.length: nothing was read into `into`. */
  lengthMismatch: boolean;
  /** The body text of a non-2xx answer (first 64 KiB). */
  errorBody: string;
}

/**
 * Told how a 2xx body lands in `into`, so that the caller can use its first bytes (write them)
 * while the rest still arrives: `begin` when a body of into.length bytes starts (once per try: a
 * try that fails and is sent again begins again, writing into `into` from byte 0), `received`
 * after each read with the body bytes in `into` so far. Called on the event loop; must not throw.
 */
export interface BodyListener {
  begin(): void;
  received(bytes: number): void;
}

export interface SocketEndpoint {
  protocol: "http:" | "https:";
  hostname: string;
  port: string;
}

export interface SocketPoolOptions {
  /** Connections per host, busy and idle. Default 64. */
  maxSockets?: number;
  /** Local address to bind. Default: the system's choice. */
  localAddress?: string | undefined;
  /** Idle connections are closed after this many ms. Default 20,000. */
  idleMs?: number;
  /** https: trusted CA certificates (PEM) in place of Node's (tests). Default: Node's. */
  ca?: string | Buffer | undefined;
}

const netError = (message: string, code: string): NodeJS.ErrnoException => {
  const err = new Error(message) as NodeJS.ErrnoException;
  err.code = code;
  return err;
};

const abortError = (signal: AbortSignal): Error => {
  const err = new Error("The operation was aborted", { cause: signal.reason }) as Error & {
    code: string;
  };
  err.name = "AbortError";
  err.code = "ABORT_ERR";
  return err;
};

interface Pending {
  into: Buffer;
  /** Request text (status line, headers, blank line). */
  request: string;
  /** Bytes of the head buffer used. */
  headLen: number;
  /** 0 head, 1 body into `into`, 2 error body into the head buffer. */
  phase: 0 | 1 | 2;
  bodyStart: number;
  got: number;
  length: number;
  answer: SocketAnswer | undefined;
  keepAlive: boolean;
  onBody: BodyListener | undefined;
  resolve: (a: SocketAnswer) => void;
  reject: (err: Error) => void;
}

/** One keep-alive connection, one request at a time. */
class Connection {
  readonly socket: Socket;
  readonly #head = Buffer.allocUnsafe(HEAD_MAX);
  #p: Pending | undefined;
  #dead = false;
  /** Answers completed on this connection. */
  uses = 0;
  idleTimer: NodeJS.Timeout | undefined;
  /** In the pool's idle list (the idle timer closes it when it fires then). */
  idle = false;
  onDead: (() => void) | undefined;

  constructor(
    endpoint: SocketEndpoint,
    localAddress: string | undefined,
    ca: string | Buffer | undefined,
  ) {
    const onread = {
      buffer: (): Uint8Array => {
        const p = this.#p;
        if (p !== undefined && p.phase === 1) return p.into.subarray(p.got);
        return this.#head.subarray(p?.headLen ?? 0);
      },
      callback: (n: number): boolean => {
        this.#onData(n);
        return true;
      },
    };
    const port = Number(endpoint.port || (endpoint.protocol === "https:" ? 443 : 80));
    const common = {
      host: endpoint.hostname,
      port,
      onread,
      ...(localAddress !== undefined ? { localAddress } : {}),
    };
    this.socket =
      endpoint.protocol === "https:"
        ? tlsConnect({
            ...common,
            ...(isIP(endpoint.hostname) === 0 ? { servername: endpoint.hostname } : {}),
            ALPNProtocols: ["http/1.1"],
            ...(ca !== undefined ? { ca } : {}),
          })
        : netConnect(common);
    this.socket.setNoDelay(true);
    this.socket.on("error", (err) => this.fail(err));
    this.socket.on("close", () =>
      this.fail(
        netError(
          `the connection closed after ${this.#p?.got ?? 0} bytes of the answer`,
          "ECONNRESET",
        ),
      ),
    );
    this.socket.on("end", () => this.socket.destroy());
  }

  get dead(): boolean {
    return this.#dead;
  }

  /** Bytes of an answer received since the last request was sent. */
  requestBytes = 0;

  fail(err: Error): void {
    const first = !this.#dead;
    this.#dead = true;
    if (first) {
      clearTimeout(this.idleTimer);
      this.socket.destroy();
      this.onDead?.();
    }
    const p = this.#p;
    this.#p = undefined;
    p?.reject(err);
  }

  #finish(p: Pending): void {
    this.#p = undefined;
    this.uses++;
    if (!p.keepAlive) {
      this.#dead = true;
      this.socket.destroy();
      this.onDead?.();
    }
    p.resolve(p.answer!);
  }

  #onData(n: number): void {
    const p = this.#p;
    if (p === undefined) return this.fail(netError("data without a request", "ECONNRESET"));
    this.requestBytes += n;
    if (p.phase === 1) {
      p.got += n;
      p.onBody?.received(p.got);
      if (p.got === p.length) this.#finish(p);
      return;
    }
    p.headLen += n;
    if (p.phase === 2) {
      if (p.headLen - p.bodyStart >= p.length) {
        p.answer = {
          ...p.answer!,
          errorBody: this.#head.toString("utf8", p.bodyStart, p.bodyStart + p.length),
        };
        if (p.headLen - p.bodyStart > p.length) p.keepAlive = false;
        this.#finish(p);
      }
      return;
    }
    const end = this.#head.indexOf("\r\n\r\n", 0, "latin1");
    if (end < 0 || end + 4 > p.headLen) {
      if (p.headLen >= HEAD_MAX)
        this.fail(netError("the answer's head is longer than 64 KiB", "ECONNRESET"));
      return;
    }
    const parsed = parseAnswerHead(this.#head.toString("latin1", 0, end));
    if (parsed === undefined)
      return this.fail(netError("the answer is not HTTP/1.1", "ECONNRESET"));
    if (parsed.status >= 100 && parsed.status < 200) {
      // An interim answer (100 Continue): dropped, the real one follows.
      this.#head.copy(this.#head, 0, end + 4, p.headLen);
      p.headLen -= end + 4;
      return this.#onData(0);
    }
    const { status, headers } = parsed;
    const lengthHeader = headers.get("content-length");
    const contentLength =
      lengthHeader !== undefined && /^\d+$/.test(lengthHeader) ? Number(lengthHeader) : undefined;
    const connection = headers.get("connection")?.toLowerCase() ?? "";
    p.keepAlive = !connection.includes("close") && !headers.has("transfer-encoding");
    p.answer = { status, headers, contentLength, lengthMismatch: false, errorBody: "" };
    const extra = p.headLen - (end + 4);
    if (status >= 200 && status < 300) {
      if (contentLength !== p.into.length) {
        p.answer.lengthMismatch = true;
        p.keepAlive = false;
        return this.#finish(p);
      }
      if (extra > contentLength)
        return this.fail(netError("more body than Content-Length", "ECONNRESET"));
      this.#head.copy(p.into, 0, end + 4, p.headLen);
      p.phase = 1;
      p.got = extra;
      p.length = contentLength;
      p.onBody?.begin();
      if (extra > 0) p.onBody?.received(extra);
      if (p.got === p.length) this.#finish(p);
      return;
    }
    // Kept only when it fits in the head buffer after the head (ERROR_BODY_MAX at most).
    if (
      contentLength === undefined ||
      contentLength > ERROR_BODY_MAX ||
      end + 4 + contentLength > HEAD_MAX
    ) {
      p.keepAlive = false;
      return this.#finish(p);
    }
    // The error body goes into the head buffer, after the head.
    p.phase = 2;
    p.bodyStart = end + 4;
    p.length = contentLength;
    this.#onData(0);
  }

  send(request: string, into: Buffer, onBody?: BodyListener): Promise<SocketAnswer> {
    return new Promise((resolve, reject) => {
      if (this.#dead) {
        reject(netError("the connection is closed", "ECONNRESET"));
        return;
      }
      this.#p = {
        into,
        request,
        headLen: 0,
        phase: 0,
        bodyStart: 0,
        got: 0,
        length: 0,
        answer: undefined,
        keepAlive: true,
        onBody,
        resolve,
        reject,
      };
      this.requestBytes = 0;
      this.socket.write(request, "latin1");
    });
  }
}

/** Keep-alive connections per endpoint; `get` sends one GET and reads its answer. */
export class SocketPool {
  readonly #maxSockets: number;
  readonly #localAddress: string | undefined;
  readonly #idleMs: number;
  readonly #ca: string | Buffer | undefined;
  readonly #idle = new Map<string, Connection[]>();
  readonly #count = new Map<string, number>();
  readonly #waiters = new Map<string, Array<() => void>>();

  constructor(options: SocketPoolOptions = {}) {
    this.#maxSockets = options.maxSockets ?? 64;
    this.#localAddress = options.localAddress;
    this.#idleMs = options.idleMs ?? DEFAULT_IDLE_MS;
    this.#ca = options.ca;
  }

  /** Per endpoint (by protocol, host name and port): its pool key and its request's host line. */
  readonly #endpoints = new Map<string, Map<string, { key: string; hostLine: string }>>();

  #endpointOf(e: SocketEndpoint): { key: string; hostLine: string } {
    let byPort = this.#endpoints.get(e.hostname);
    if (byPort === undefined) {
      byPort = new Map<string, { key: string; hostLine: string }>();
      this.#endpoints.set(e.hostname, byPort);
    }
    const portKey = `${e.protocol}${e.port}`;
    let known = byPort.get(portKey);
    if (known === undefined) {
      const defaultPort = e.protocol === "https:" ? "443" : "80";
      const host =
        (isIP(e.hostname) === 6 ? `[${e.hostname}]` : e.hostname) +
        (e.port === "" || e.port === defaultPort ? "" : `:${e.port}`);
      known = { key: `${e.protocol}//${e.hostname}:${e.port}`, hostLine: `host: ${host}\r\n` };
      byPort.set(portKey, known);
    }
    return known;
  }

  /** An idle live connection to `key`, or undefined. */
  #takeIdle(key: string): Connection | undefined {
    const idle = this.#idle.get(key);
    let c = idle?.pop();
    while (c?.dead) c = idle?.pop();
    if (c !== undefined) c.idle = false;
    return c;
  }

  async #take(
    e: SocketEndpoint,
    key: string,
    signal: AbortSignal | undefined,
  ): Promise<Connection> {
    for (;;) {
      const c = this.#takeIdle(key);
      if (c !== undefined) return c;
      const n = this.#count.get(key) ?? 0;
      if (n < this.#maxSockets) {
        this.#count.set(key, n + 1);
        const fresh = new Connection(e, this.#localAddress, this.#ca);
        fresh.onDead = () => {
          this.#count.set(key, (this.#count.get(key) ?? 1) - 1);
          this.#waiters.get(key)?.shift()?.();
        };
        return fresh;
      }
      if (signal?.aborted) throw abortError(signal);
      await new Promise<void>((wake, reject) => {
        const list = this.#waiters.get(key) ?? [];
        this.#waiters.set(key, list);
        const onAbort = (): void => {
          const i = list.indexOf(waiter);
          if (i >= 0) list.splice(i, 1);
          reject(abortError(signal!));
        };
        const waiter = (): void => {
          signal?.removeEventListener("abort", onAbort);
          wake();
        };
        list.push(waiter);
        signal?.addEventListener("abort", onAbort, { once: true });
      });
    }
  }

  #give(key: string, c: Connection): void {
    if (c.dead) return;
    const waiter = this.#waiters.get(key)?.shift();
    const list = this.#idle.get(key) ?? [];
    this.#idle.set(key, list);
    list.push(c);
    c.socket.unref();
    // One timer per connection, re-armed (not re-made) each time it goes idle; when it fires
    // while the connection is busy it does nothing (the next #give arms it again).
    c.idle = true;
    if (c.idleTimer === undefined) {
      c.idleTimer = setTimeout(() => {
        if (c.idle) c.fail(netError("idle", "ECONNRESET"));
      }, this.#idleMs);
      c.idleTimer.unref();
    } else c.idleTimer.refresh();
    waiter?.();
  }

  /**
   * GET `target` (path and query) with `headers` (lower-cased names → values) from `endpoint`;
   * a 2xx body of into.length bytes is read into `into`, `onBody` told as it lands.
   */
  async get(
    endpoint: SocketEndpoint,
    target: string,
    headers: Readonly<Record<string, string | undefined>>,
    into: Buffer,
    signal: AbortSignal | undefined,
    timeoutMs: number | undefined,
    onBody?: BodyListener,
  ): Promise<SocketAnswer> {
    const { key, hostLine } = this.#endpointOf(endpoint);
    let request = `GET ${target} HTTP/1.1\r\n${hostLine}`;
    for (const k in headers) {
      const v = headers[k];
      if (v === undefined) continue;
      if (v.includes("\r") || v.includes("\n"))
        throw new TypeError(`header ${k}: a line break in its value`);
      request += `${k}: ${v}\r\n`;
    }
    request += "\r\n";
    for (let attempt = 0; ; attempt++) {
      if (signal?.aborted) throw abortError(signal);
      // An idle connection is taken at once (no promise); otherwise one is made or waited for.
      const c = this.#takeIdle(key) ?? (await this.#take(endpoint, key, signal));
      const reused = c.uses > 0;
      c.socket.ref();
      const onAbort = (): void => c.fail(abortError(signal!));
      const unwatch = signal === undefined ? undefined : watchAbort(signal, onAbort);
      if (timeoutMs !== undefined) {
        c.socket.setTimeout(timeoutMs, () =>
          c.fail(netError(`no answer within ${timeoutMs} ms`, "ETIMEDOUT")),
        );
      }
      try {
        const answer = await c.send(request, into, onBody);
        this.#give(key, c);
        return answer;
      } catch (err) {
        // A pooled connection the server closed while it was idle: once more on a new one.
        if (reused && c.requestBytes === 0 && attempt === 0 && !signal?.aborted) continue;
        throw err;
      } finally {
        unwatch?.();
        if (timeoutMs !== undefined) c.socket.setTimeout(0);
      }
    }
  }

  /** Closes every connection. */
  close(): void {
    for (const list of this.#idle.values())
      for (const c of list) c.fail(netError("pool closed", "ECONNRESET"));
    this.#idle.clear();
  }
}
