/**
 * A minimal Blob REST client for benchmarks: node:http with one keep-alive agent, Shared Key
 * signing, no SDK, no retries, no checksums. It sends the requests hsmfleet's export sends for the
 * same files (Put Block + Put Block List for large files, Put Blob for small ones, a listing per
 * directory, directory stubs) with the same metadata headers, at hsmfleet's worker concurrency,
 * and it reads every byte it sends from the file, as any copy must (large files: one descriptor
 * per file, each block pread into a reused buffer; small files: open, read, close with plain
 * node:fs callbacks). What it reaches is the ceiling an export can hope for against the same
 * endpoint: the essential work of a copy — read the file, send it with the headers the blob
 * needs — and nothing else (no stat, no change detection, no checksums, no walk, no NATS).
 *
 * The read side (rawRestore) sends what hsmfleet's restore sends per file — Get Blob Properties,
 * then ranged Get Blob of `rangeSize` — at the restore's concurrency, receives each range into a
 * reused buffer and writes it at its offset into the (pre-created) file, or, with `into:
 * "discard"`, only counts it. Writing into the files is the fair ceiling for a restore (a restore
 * writes files); the discard figure shows what the network path alone reaches.
 */
import { createHmac } from "node:crypto";
import { close as fsClose, constants, open as fsOpen, read as fsRead } from "node:fs";
import { open } from "node:fs/promises";
import { join } from "node:path";
import { Agent, request } from "node:http";
import type { OutgoingHttpHeaders } from "node:http";
import { blockIdFor } from "@hsmfleet/blob";

const API_VERSION = "2026-04-06";

export interface RawClientOptions {
  /** http://HOST:PORT/<account> (path style: emulator or sink). */
  blobEndpoint: string;
  accountName: string;
  /** Base64 Shared Key. */
  accountKey: string;
  /** Sockets of the keep-alive agent. Default 64, as hsmfleet's blob client. */
  maxSockets?: number;
}

export interface RawResponse {
  status: number;
  body: string;
}

/** Answer of a request whose body went into a caller's buffer. */
export interface RawBinaryResponse {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  /** Body bytes received (copied into the buffer up to its length). */
  length: number;
  /** Error text of a non-2xx answer (first 64 KiB). */
  errorBody: string;
}

/** Blob paths: every segment percent-encoded, '/' kept. */
const encodePath = (name: string): string => name.split("/").map(encodeURIComponent).join("/");

export class RawBlobClient {
  readonly #endpoint: URL;
  readonly #account: string;
  readonly #key: Buffer;
  readonly #agent: Agent;
  requests = 0;

  constructor(options: RawClientOptions) {
    this.#endpoint = new URL(options.blobEndpoint.replace(/\/+$/, ""));
    if (this.#endpoint.protocol !== "http:") throw new Error("RawBlobClient speaks http only");
    this.#account = options.accountName;
    this.#key = Buffer.from(options.accountKey, "base64");
    this.#agent = new Agent({ keepAlive: true, maxSockets: options.maxSockets ?? 64 });
  }

  close(): void {
    this.#agent.destroy();
  }

  /** Shared Key (service version 2009-09-19 and later) Authorization header value. */
  #sign(
    method: string,
    path: string,
    query: Array<[string, string]>,
    headers: OutgoingHttpHeaders,
  ): string {
    const h = (name: string): string => {
      const v = headers[name];
      return v === undefined ? "" : String(v);
    };
    const length = h("content-length");
    const msHeaders = Object.keys(headers)
      .filter((k) => k.startsWith("x-ms-"))
      .sort()
      .map((k) => `${k}:${String(headers[k]).trim()}`);
    const params = [...query]
      .map(([k, v]) => [k.toLowerCase(), v] as const)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
      .map(([k, v]) => `\n${k}:${v}`)
      .join("");
    const toSign = [
      method,
      h("content-encoding"),
      h("content-language"),
      length === "0" ? "" : length,
      h("content-md5"),
      h("content-type"),
      "", // Date: x-ms-date is used
      h("if-modified-since"),
      h("if-match"),
      h("if-none-match"),
      h("if-unmodified-since"),
      h("range"),
      ...msHeaders,
      `/${this.#account}${path}${params}`,
    ].join("\n");
    const sig = createHmac("sha256", this.#key).update(toSign, "utf8").digest("base64");
    return `SharedKey ${this.#account}:${sig}`;
  }

  /** One request; resolves with status and body text (bodies of 2xx answers are drained). */
  send(
    method: string,
    resource: string,
    query: Array<[string, string]>,
    extraHeaders: OutgoingHttpHeaders,
    body?: Buffer | string,
  ): Promise<RawResponse> {
    const path = `${this.#endpoint.pathname}/${resource}`;
    const qs = query.map(([k, v]) => `${encodeURIComponent(k)}=${encodeURIComponent(v)}`).join("&");
    const headers: OutgoingHttpHeaders = {
      "x-ms-version": API_VERSION,
      "x-ms-date": new Date().toUTCString(),
      "content-length": String(body === undefined ? 0 : Buffer.byteLength(body)),
      ...extraHeaders,
    };
    headers["authorization"] = this.#sign(method, path, query, headers);
    return this.#once(method, qs === "" ? path : `${path}?${qs}`, headers, body, true);
  }

  /**
   * One bodiless request (GET/HEAD) whose 2xx response body is copied into `into` (bytes beyond
   * its length are counted, not kept).
   */
  sendInto(
    method: string,
    resource: string,
    query: Array<[string, string]>,
    extraHeaders: OutgoingHttpHeaders,
    into: Buffer | undefined,
  ): Promise<RawBinaryResponse> {
    const path = `${this.#endpoint.pathname}/${resource}`;
    const qs = query.map(([k, v]) => `${encodeURIComponent(k)}=${encodeURIComponent(v)}`).join("&");
    const headers: OutgoingHttpHeaders = {
      "x-ms-version": API_VERSION,
      "x-ms-date": new Date().toUTCString(),
      ...extraHeaders,
    };
    headers["authorization"] = this.#sign(method, path, query, headers);
    return this.#onceInto(method, qs === "" ? path : `${path}?${qs}`, headers, into, true);
  }

  #onceInto(
    method: string,
    path: string,
    headers: OutgoingHttpHeaders,
    into: Buffer | undefined,
    mayRetry: boolean,
  ): Promise<RawBinaryResponse> {
    this.requests++;
    return new Promise((resolve, reject) => {
      const req = request(
        {
          host: this.#endpoint.hostname,
          port: this.#endpoint.port,
          method,
          path,
          headers,
          agent: this.#agent,
        },
        (res) => {
          const status = res.statusCode ?? 0;
          const ok = status >= 200 && status < 300;
          let length = 0;
          let errorBody = "";
          res.on("data", (c: Buffer) => {
            if (!ok) {
              if (errorBody.length < 64 * 1024) errorBody += c.toString("utf8");
              return;
            }
            if (into !== undefined && length < into.length) c.copy(into, length);
            length += c.length;
          });
          res.once("end", () => resolve({ status, headers: res.headers, length, errorBody }));
          res.once("error", reject);
        },
      );
      req.once("error", (err: NodeJS.ErrnoException) => {
        if (mayRetry && req.reusedSocket && (err.code === "ECONNRESET" || err.code === "EPIPE"))
          resolve(this.#onceInto(method, path, headers, into, false));
        else reject(err);
      });
      req.end();
    });
  }

  /** Get Blob Properties: the blob's size and ETag. */
  async headBlob(container: string, name: string): Promise<{ size: number; etag: string }> {
    const r = await this.sendInto("HEAD", `${container}/${encodePath(name)}`, [], {}, undefined);
    if (r.status !== 200) throw new Error(`head blob ${name}: HTTP ${r.status}`);
    return { size: Number(r.headers["content-length"]), etag: String(r.headers["etag"]) };
  }

  /** Ranged Get Blob of [start, start+length) into `buf` (x-ms-range, If-Match when given). */
  async getRange(
    container: string,
    name: string,
    start: number,
    length: number,
    buf: Buffer | undefined,
    etag?: string,
  ): Promise<void> {
    const r = await this.sendInto(
      "GET",
      `${container}/${encodePath(name)}`,
      [],
      {
        "x-ms-range": `bytes=${start}-${start + length - 1}`,
        ...(etag !== undefined ? { "if-match": etag } : {}),
      },
      buf,
    );
    if (r.status !== 206 && r.status !== 200)
      throw new Error(
        `get blob ${name} ${start}+${length}: HTTP ${r.status} ${r.errorBody.slice(0, 300)}`,
      );
    if (r.length !== length)
      throw new Error(`get blob ${name} ${start}+${length}: received ${r.length} bytes`);
  }

  /**
   * One attempt. A keep-alive socket the server closed just as it was reused (Node servers drop
   * idle connections after 5 s) fails with ECONNRESET/EPIPE before any answer: that one request
   * is sent again, once, on a fresh socket. Anything else is the caller's.
   */
  #once(
    method: string,
    path: string,
    headers: OutgoingHttpHeaders,
    body: Buffer | string | undefined,
    mayRetry: boolean,
  ): Promise<RawResponse> {
    this.requests++;
    return new Promise((resolve, reject) => {
      const req = request(
        {
          host: this.#endpoint.hostname,
          port: this.#endpoint.port,
          method,
          path,
          headers,
          agent: this.#agent,
        },
        (res) => {
          let text = "";
          res.setEncoding("utf8");
          res.on("data", (c: string) => {
            if (text.length < 64 * 1024) text += c;
          });
          res.once("end", () => resolve({ status: res.statusCode ?? 0, body: text }));
          res.once("error", reject);
        },
      );
      req.once("error", (err: NodeJS.ErrnoException) => {
        if (mayRetry && req.reusedSocket && (err.code === "ECONNRESET" || err.code === "EPIPE"))
          resolve(this.#once(method, path, headers, body, false));
        else reject(err);
      });
      req.end(body);
    });
  }

  async #expect(what: string, ok: number[], p: Promise<RawResponse>): Promise<RawResponse> {
    const r = await p;
    if (!ok.includes(r.status))
      throw new Error(`${what}: HTTP ${r.status} ${r.body.slice(0, 500)}`);
    return r;
  }

  async createContainer(container: string): Promise<void> {
    await this.#expect(
      `create container ${container}`,
      [201, 409],
      this.send("PUT", container, [["restype", "container"]], {}),
    );
  }

  async deleteContainer(container: string): Promise<void> {
    await this.#expect(
      `delete container ${container}`,
      [202, 404],
      this.send("DELETE", container, [["restype", "container"]], {}),
    );
  }

  /** One hierarchical listing page with metadata, as the export walk does per directory. */
  async listLevel(container: string, prefix: string): Promise<string> {
    const query: Array<[string, string]> = [
      ["restype", "container"],
      ["comp", "list"],
      ["delimiter", "/"],
      ["include", "metadata"],
    ];
    if (prefix !== "") query.push(["prefix", prefix]);
    return (
      await this.#expect(
        `list ${container}/${prefix}`,
        [200],
        this.send("GET", container, query, {}),
      )
    ).body;
  }

  async putBlob(
    container: string,
    name: string,
    body: Buffer,
    metadata: Record<string, string>,
  ): Promise<void> {
    await this.#expect(
      `put blob ${name}`,
      [201],
      this.send(
        "PUT",
        `${container}/${encodePath(name)}`,
        [],
        {
          "x-ms-blob-type": "BlockBlob",
          "content-type": "application/octet-stream",
          ...metaHeaders(metadata),
        },
        body,
      ),
    );
  }

  async putBlock(container: string, name: string, blockId: string, body: Buffer): Promise<void> {
    await this.#expect(
      `put block ${name}`,
      [201],
      this.send(
        "PUT",
        `${container}/${encodePath(name)}`,
        [
          ["comp", "block"],
          ["blockid", blockId],
        ],
        { "content-type": "application/octet-stream" },
        body,
      ),
    );
  }

  async putBlockList(
    container: string,
    name: string,
    blockIds: string[],
    metadata: Record<string, string>,
  ): Promise<void> {
    const xml = `<?xml version="1.0" encoding="utf-8"?><BlockList>${blockIds.map((id) => `<Latest>${id}</Latest>`).join("")}</BlockList>`;
    await this.#expect(
      `put block list ${name}`,
      [201],
      this.send(
        "PUT",
        `${container}/${encodePath(name)}`,
        [["comp", "blocklist"]],
        { "content-type": "application/xml", ...metaHeaders(metadata) },
        xml,
      ),
    );
  }
}

const metaHeaders = (metadata: Record<string, string>): OutgoingHttpHeaders =>
  Object.fromEntries(Object.entries(metadata).map(([k, v]) => [`x-ms-meta-${k}`, v]));

/** AMLFS-style metadata, the size hsmfleet sends with every file. */
export const sampleMetadata = (): Record<string, string> => ({
  owner: "1000",
  group: "1000",
  permissions: "0644",
  modtime: "2024-01-02 03:04:05 +0000",
});

/** Runs `fn` over `items` with at most `limit` at once (the same lanes as hsmfleet's worker). */
export const forEachLimit = async <T>(
  items: readonly T[],
  limit: number,
  fn: (item: T) => Promise<void>,
): Promise<void> => {
  let next = 0;
  const lanes = Array.from({ length: Math.min(limit, items.length) }, async () => {
    while (next < items.length) await fn(items[next++]!);
  });
  await Promise.all(lanes);
};

// Plain node:fs callbacks (cheaper per call than FileHandle's promise wrappers).
const openRead = (path: string): Promise<number> =>
  new Promise((resolve, reject) =>
    fsOpen(path, constants.O_RDONLY, (err, fd) => (err ? reject(err) : resolve(fd))),
  );
const closeFd = (fd: number): Promise<void> =>
  new Promise((resolve, reject) => fsClose(fd, (err) => (err ? reject(err) : resolve())));

/** Reads exactly `length` bytes at `position` into `buf` (a short read is an error). */
const readFully = async (
  fd: number,
  buf: Buffer,
  length: number,
  position: number,
  what: string,
): Promise<void> => {
  let done = 0;
  while (done < length) {
    const n = await new Promise<number>((resolve, reject) =>
      fsRead(fd, buf, done, length - done, position + done, (err, r) =>
        err ? reject(err) : resolve(r),
      ),
    );
    if (n === 0) throw new Error(`${what}: short read at ${position + done}`);
    done += n;
  }
};

export interface RawLargeOptions {
  container: string;
  /** Directory the files are read from (root/name). */
  root: string;
  /** Blob names (= paths under root) and sizes. */
  files: Array<{ name: string; size: number }>;
  blockSize: number;
  /**
   * Files are read in ranges of this many bytes (whole blocks), each range by one sequential
   * reader; hsmfleet's worker: files over its chunk size (256 MiB) go up as chunk items of that
   * size. Default: whole files.
   */
  rangeBytes?: number;
  /** Ranges at once (hsmfleet: 4 transfer batches or chunk items per worker). */
  rangeConcurrency: number;
  /** Blocks in flight per range (hsmfleet: blockConcurrency 8). */
  blockConcurrency: number;
}

/**
 * Large files, the way any streaming uploader does it (azcopy, hsmfleet): each range of a file
 * is read sequentially, block by block, into reused buffers, by one reader that sends each block
 * with Put Block as soon as it is read and goes on reading while up to `blockConcurrency` blocks
 * are in flight; `rangeConcurrency` ranges at once. When a file's last block is staged, Put Block
 * List with metadata. Returns the data bytes sent.
 */
export const rawUploadLarge = async (
  client: RawBlobClient,
  o: RawLargeOptions,
): Promise<number> => {
  interface OpenFile {
    name: string;
    ids: string[];
    ranges: number;
    fd: Promise<number> | undefined;
  }
  const perRange =
    o.rangeBytes === undefined
      ? Number.MAX_SAFE_INTEGER
      : Math.max(1, Math.floor(o.rangeBytes / o.blockSize)) * o.blockSize;
  const ranges: Array<{ file: OpenFile; offset: number; end: number }> = [];
  for (const f of o.files) {
    const file: OpenFile = { name: f.name, ids: [], ranges: 0, fd: undefined };
    for (let offset = 0; offset < f.size; offset += o.blockSize) file.ids.push(blockIdFor(offset));
    for (let offset = 0; offset < f.size; offset += perRange) {
      file.ranges++;
      ranges.push({ file, offset, end: Math.min(f.size, offset + perRange) });
    }
  }
  const pool: Buffer[] = [];
  let bytes = 0;
  await forEachLimit(ranges, o.rangeConcurrency, async (range) => {
    const file = range.file;
    const fd = await (file.fd ??= openRead(join(o.root, file.name)));
    const inFlight = new Set<Promise<void>>();
    let failed: Error | undefined;
    for (let at = range.offset; at < range.end && failed === undefined; at += o.blockSize) {
      while (inFlight.size >= o.blockConcurrency) await Promise.race(inFlight);
      const n = Math.min(o.blockSize, range.end - at);
      const buf = pool.pop() ?? Buffer.allocUnsafeSlow(o.blockSize);
      try {
        await readFully(fd, buf, n, at, file.name);
      } catch (err) {
        pool.push(buf);
        throw err;
      }
      const sent: Promise<void> = client
        .putBlock(o.container, file.name, blockIdFor(at), buf.subarray(0, n))
        .then(
          () => {
            bytes += n;
          },
          (err: unknown) => {
            failed ??= err instanceof Error ? err : new Error(String(err));
          },
        )
        .finally(() => {
          pool.push(buf);
          inFlight.delete(sent);
        });
      inFlight.add(sent);
    }
    await Promise.all(inFlight);
    if (failed !== undefined) throw failed;
    if (--file.ranges === 0) {
      await closeFd(fd);
      await client.putBlockList(o.container, file.name, file.ids, sampleMetadata());
    }
  });
  return bytes;
};

export interface RawSmallOptions {
  container: string;
  /** Directory the files are read from (root/name). */
  root: string;
  /** Directory blob names (listed once each, then uploaded as zero-length stubs). */
  directories: string[];
  files: Array<{ name: string; size: number }>;
  /** Requests in flight (hsmfleet: transferConcurrency 4 × fileConcurrency 8 = 32). */
  concurrency: number;
}

/**
 * Small files: one listing per directory level (root included), a zero-length stub per
 * directory, then per file open, read (its known size), close, and one Put Blob of the bytes
 * read. Returns the data bytes sent.
 */
export const rawUploadSmall = async (
  client: RawBlobClient,
  o: RawSmallOptions,
): Promise<number> => {
  const meta = sampleMetadata();
  const dirMeta = { ...meta, permissions: "0755", hdi_isfolder: "true" };
  const empty = Buffer.alloc(0);
  let bytes = 0;
  await forEachLimit(["", ...o.directories.map((d) => `${d}/`)], o.concurrency, async (prefix) => {
    await client.listLevel(o.container, prefix);
  });
  type Op = { name: string; size: number; dir: boolean };
  const ops: Op[] = [
    ...o.directories.map((name) => ({ name, size: 0, dir: true })),
    ...o.files.map((f) => ({ ...f, dir: false })),
  ];
  await forEachLimit(ops, o.concurrency, async (op) => {
    let body = empty;
    if (!op.dir && op.size > 0) {
      body = Buffer.allocUnsafe(op.size);
      const fd = await openRead(join(o.root, op.name));
      try {
        await readFully(fd, body, op.size, 0, op.name);
      } finally {
        await closeFd(fd);
      }
    }
    await client.putBlob(o.container, op.name, body, op.dir ? dirMeta : meta);
    bytes += op.size;
  });
  return bytes;
};

export interface RawRestoreOptions {
  container: string;
  /** Blob names, sizes and the local files (already created, of any size) to write into. */
  files: Array<{ name: string; size: number; path: string }>;
  /** Bytes per ranged GET (hsmfleet: 8 MiB). */
  rangeSize: number;
  /** Files at once (hsmfleet: transferConcurrency 4 × fileConcurrency 8 = 32 per worker). */
  fileConcurrency: number;
  /** Ranges in flight per file (hsmfleet: blockConcurrency 8). */
  rangeConcurrency: number;
  /** Ranges in flight in all (hsmfleet: its 512 MiB memory budget / 8 MiB = 64). */
  maxRangesInFlight: number;
  /**
   * "file": write each range at its offset into the (existing) file (the fair ceiling of a
   * restore); "new-file": create the file first (O_CREAT | O_EXCL, the ceiling of an import
   * --mode full, whose peer also creates its files); "discard": count only.
   */
  into: "file" | "new-file" | "discard";
  /**
   * The sizes are known (from a listing, as an import or rclone has them): no Get Blob
   * Properties per file, the ranges go out without If-Match. Default false.
   */
  knownSizes?: boolean;
}

/** A counting semaphore. */
class Slots {
  #free: number;
  readonly #waiters: Array<() => void> = [];
  constructor(n: number) {
    this.#free = n;
  }
  async acquire(): Promise<void> {
    if (this.#free > 0) {
      this.#free--;
      return;
    }
    await new Promise<void>((resolve) => this.#waiters.push(resolve));
  }
  release(): void {
    const next = this.#waiters.shift();
    if (next) next();
    else this.#free++;
  }
}

/**
 * The restore's requests without hsmfleet: per file a Get Blob Properties (size, ETag), then
 * ranged GETs with If-Match, each received into a pooled buffer and (into "file") written at its
 * offset through one open file descriptor per file (O_WRONLY, no truncation). No SDK, no MD5, no
 * xattrs, no NATS. Returns the data bytes received.
 */
export const rawRestore = async (client: RawBlobClient, o: RawRestoreOptions): Promise<number> => {
  const slots = new Slots(o.maxRangesInFlight);
  const pool: Buffer[] = [];
  let bytes = 0;
  await forEachLimit(o.files, o.fileConcurrency, async (file) => {
    const { size, etag } = o.knownSizes
      ? { size: file.size, etag: undefined }
      : await client.headBlob(o.container, file.name);
    if (size !== file.size) throw new Error(`${file.name}: size ${size}, expected ${file.size}`);
    const fh =
      o.into === "file"
        ? await open(file.path, constants.O_WRONLY | constants.O_NOFOLLOW)
        : o.into === "new-file"
          ? await open(
              file.path,
              constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW,
              0o644,
            )
          : undefined;
    try {
      const ranges: number[] = [];
      for (let at = 0; at < size; at += o.rangeSize) ranges.push(at);
      await forEachLimit(ranges, o.rangeConcurrency, async (at) => {
        const n = Math.min(o.rangeSize, size - at);
        await slots.acquire();
        // Full ranges reuse pooled buffers; a short one gets its own (as hsmfleet does).
        const full = n === o.rangeSize;
        const buf = (full ? pool.pop() : undefined) ?? Buffer.allocUnsafeSlow(n);
        try {
          await client.getRange(o.container, file.name, at, n, buf, etag);
          if (fh) {
            let done = 0;
            while (done < n) done += (await fh.write(buf, done, n - done, at + done)).bytesWritten;
          }
          bytes += n;
        } finally {
          if (full) pool.push(buf);
          slots.release();
        }
      });
    } finally {
      await fh?.close();
    }
  });
  return bytes;
};
