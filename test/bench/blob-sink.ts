/**
 * BENCHMARK SINK — NOT STORAGE. A loopback HTTP server that answers just enough of the Azure Blob
 * REST API for hsmfleet's export, import and restore paths (and the @azure/storage-blob SDK) to run
 * against it, at (almost) no cost of its own. It exists to measure how fast a client can move data
 * when the service costs nothing.
 *
 * Write side: request bodies are read and counted, never stored. What was written is REMEMBERED
 * without its data — size (Put Blob's body, or the committed blocks' sizes), the MD5 as sent
 * (x-ms-blob-content-md5, else Content-MD5) and the x-ms-meta-* metadata — so it is listed and
 * answers HEAD as the service would: a peer such as rclone HEADs each blob after its upload, and an
 * incremental run lists what the previous run wrote. A GET of such a blob serves synthetic content. The one check is the transactional CRC64: a Put Block or Put Blob with
 * x-ms-content-crc64 has its body's CRC64 computed (native, @hsmfleet/fs, ~10 GB/s: a cost of the
 * sink's own) and gets 400 Crc64Mismatch, as from the service, when they differ — proof, end to
 * end, that the header hsmfleet sends is right. `checkCrc64Every` N checks one such request in N
 * (default 1, all): a wrong CRC64 fails every block, so a sample proves it as well at 1/N of the
 * sink's CPU. Content-MD5 and auth are not checked.
 *
 * Read side: blobs are REGISTERED out of band (POST /__sink/blobs, below) with a name, a size and
 * optional metadata; the sink keeps only that list. Their content is SYNTHETIC and deterministic:
 * byte i of blob `name` is PATTERN[(seedOf(name) + i) % PATTERN_LENGTH], where PATTERN is a fixed
 * pseudo-random buffer and seedOf an FNV-1a hash of the name (sinkContent() below computes the same
 * bytes, so a client's copy can be checked). Serving a GET copies nothing: the response is slices of
 * one doubled pattern buffer. Registered blobs are listed, can be read whole or by range, and answer
 * HEAD with their properties; with `md5: true` at registration the sink computes each blob's MD5
 * once and returns it as Content-MD5 (the client then verifies it).
 *
 * What it answers (path style: /<account>/<container>[/<blob>]):
 *   PUT  ?restype=container                 Create Container: 201, or 409 ContainerAlreadyExists
 *                                           the second time a name is created
 *   GET/HEAD ?restype=container             Get Container Properties: 200 for a created or
 *                                           registered container, else 404 ContainerNotFound
 *   GET  ?restype=container&comp=list…      List Blobs of the registered blobs (empty for others):
 *                                           prefix, delimiter (BlobPrefix entries), marker,
 *                                           maxresults (default 5000) with NextMarker,
 *                                           include=metadata
 *   PUT  (x-ms-blob-type: BlockBlob)        Put Blob: 201 with ETag, Last-Modified, Content-MD5 echo
 *                                           (400 Crc64Mismatch: x-ms-content-crc64 is wrong)
 *   PUT  ?comp=block&blockid=…              Put Block: 201 (Content-MD5 / x-ms-content-crc64 echo;
 *                                           400 Crc64Mismatch as for Put Blob)
 *   PUT  ?comp=blocklist                    Put Block List: 201 with ETag, Last-Modified
 *   HEAD on a registered blob               Get Blob Properties: Content-Length, ETag,
 *                                           Last-Modified, x-ms-blob-type, Accept-Ranges, metadata
 *                                           (x-ms-meta-*), Content-MD5 when registered with md5
 *   GET  on a registered blob               Get Blob: 200 with the whole content, or with `Range`
 *                                           / `x-ms-range` (x-ms-range wins) `bytes=a-b` or
 *                                           `bytes=a-`: 206 with Content-Range (416 InvalidRange
 *                                           past the end); If-Match other than the ETag: 412;
 *                                           x-ms-range-get-content-crc64: true on a range of at
 *                                           most 4 MiB: its CRC64 in x-ms-content-crc64 (as Azure;
 *                                           400 OutOfRangeInput over 4 MiB; computed once per
 *                                           range — at registration for every 4 MiB range of a
 *                                           blob registered with md5 — so that the service's
 *                                           checksum does not take the client's CPU here)
 *   HEAD / GET on any other blob            404 BlobNotFound (x-ms-error-code)
 *   DELETE ?restype=container               Delete Container: 202 (404 if unknown)
 *   anything else                           400 UnsupportedBySink (counted, logged once per shape)
 * Shared Key signatures, SAS and bearer tokens are ignored.
 *
 * Out of band (not Blob API):
 *   GET  /__sink/stats                      JSON counters (BlobSinkStats)
 *   POST /__sink/reset                      zero the counters (registered blobs stay)
 *   POST /__sink/blobs                      body {"container", "blobs": [{"name", "size",
 *                                           "metadata"?}], "md5"?: boolean}: REPLACES the
 *                                           container's registered blobs (and makes the container
 *                                           exist); answers {"container", "blobs", "bytes"}
 *
 * Use startBlobSink() in-process, or spawnBlobSink() to run it in a child process of its own (what
 * the benchmarks do, so the sink does not share an event loop with the client it measures).
 */
import { fork } from "node:child_process";
import type { ChildProcess } from "node:child_process";
import { createHash, randomUUID } from "node:crypto";
import { createServer, request } from "node:http";
import type { IncomingMessage, ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { crc64, crc64Bytes } from "@hsmfleet/fs/crc64";
import { fileURLToPath, pathToFileURL } from "node:url";

/** The emulator's well-known development account (the sink accepts any name). */
export const SINK_ACCOUNT_NAME = "devstoreaccount1";
/** Azurite's published development key: the SDK needs some key to sign with; the sink ignores it. */
export const SINK_ACCOUNT_KEY =
  "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

export type SinkRequestKind =
  | "createContainer"
  | "deleteContainer"
  | "listBlobs"
  | "putBlob"
  | "putBlock"
  | "putBlockList"
  | "getContainerProperties"
  | "getBlobProperties"
  | "getBlob"
  | "registerBlobs"
  | "unsupported";

export interface BlobSinkStats {
  requests: number;
  /** Request body bytes read (and discarded), all requests. */
  bodyBytes: number;
  /** Body bytes of Put Blob and Put Block requests only: the data itself. */
  dataBytes: number;
  /** Response body bytes of Get Blob (synthetic content sent). */
  sentBytes: number;
  /** Get Blob requests with a Range / x-ms-range header (answered 206). */
  rangedGets: number;
  /** Ranged Get Blob answers given their CRC64 (x-ms-range-get-content-crc64: true). */
  rangeCrc64Answers: number;
  /** dataBytes by the client's source address (the fleet benchmark checks each worker's --bind). */
  dataBytesBySource: Record<string, number>;
  byKind: Record<SinkRequestKind, number>;
  /** Requests that carried a Content-MD5 header (transactional MD5). */
  withContentMD5: number;
  /** Put Blob / Put Block List requests that set the blob's stored MD5 (x-ms-blob-content-md5). */
  withBlobContentMD5: number;
  /** Put Blob / Put Block requests with x-ms-content-crc64. */
  withContentCrc64: number;
  /** Of those, how many were checked against their body (checkCrc64Every). */
  crc64Checked: number;
  /** Of those, how many had a CRC64 other than the body's (answered 400 Crc64Mismatch). */
  crc64Mismatches: number;
  /** "METHOD path?query" of requests the sink does not understand (first 20). */
  unsupportedSamples: string[];
}

export interface BlobSinkOptions {
  /** Default 127.0.0.1. */
  host?: string;
  /** Default 0 (a free port). */
  port?: number;
  /** Print method, URL and headers of the first N requests to stderr (default 0). */
  logRequests?: number;
  /** Check the x-ms-content-crc64 of one request in N that carry one (default 1: every one). */
  checkCrc64Every?: number;
}

export interface BlobSinkEndpoint {
  port: number;
  /** http://127.0.0.1:PORT/devstoreaccount1 */
  blobEndpoint: string;
  /** A Shared Key connection string for the sink (the key is the public Azurite one). */
  connectionString: string;
}

export interface BlobSink extends BlobSinkEndpoint {
  stats(): BlobSinkStats;
  reset(): void;
  register(registration: SinkRegistration): SinkRegistered;
  close(): Promise<void>;
}

/** A blob the sink serves: synthetic content of `size` bytes (sinkContent). */
export interface SinkBlobSpec {
  name: string;
  size: number;
  /** x-ms-meta-* / <Metadata> (keys must be valid XML element names). */
  metadata?: Record<string, string>;
}

export interface SinkRegistration {
  container: string;
  blobs: SinkBlobSpec[];
  /** Compute each blob's MD5 once and return it as Content-MD5 (default false). */
  md5?: boolean;
}

export interface SinkRegistered {
  container: string;
  blobs: number;
  bytes: number;
}

// ---------------------------------------------------------------------------------------------
// Synthetic content

/** Length of the content pattern: a prime a little below 1 MiB, so content never lines up with blocks. */
export const SINK_PATTERN_LENGTH = 1_048_573;

/** The largest range Azure computes a CRC64 for (x-ms-range-get-content-crc64). */
const RANGE_CRC64_MAX_BYTES = 4 * 1024 * 1024;

/** The pattern twice, so that any run of up to SINK_PATTERN_LENGTH bytes is one contiguous slice. */
const PATTERN2: Buffer = (() => {
  const n = SINK_PATTERN_LENGTH;
  const b = Buffer.allocUnsafe(2 * n);
  let x = 0x9e3779b9;
  for (let i = 0; i < n; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    b[i] = x & 0xff;
  }
  b.copy(b, n, 0, n);
  return b;
})();

/** FNV-1a (32 bit) of the name's UTF-8 bytes, modulo the pattern length: where a blob's content starts. */
export const sinkSeedOf = (name: string): number => {
  let h = 0x811c9dc5;
  for (const byte of Buffer.from(name, "utf8")) {
    h ^= byte;
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h % SINK_PATTERN_LENGTH;
};

/** The slices of the pattern that make bytes [offset, offset+length) of a blob with `seed` (no copies). */
function* contentSlices(seed: number, offset: number, length: number): Generator<Buffer> {
  let p = (seed + offset) % SINK_PATTERN_LENGTH;
  let left = length;
  while (left > 0) {
    const n = Math.min(SINK_PATTERN_LENGTH, left);
    yield PATTERN2.subarray(p, p + n);
    left -= n;
    p = (p + n) % SINK_PATTERN_LENGTH;
  }
}

/** Bytes [offset, offset+length) of the registered blob `name`, as the sink serves them. */
export const sinkContent = (name: string, offset: number, length: number): Buffer =>
  Buffer.concat([...contentSlices(sinkSeedOf(name), offset, length)], length);

/** MD5 of the whole content of a `size`-byte blob `name` (what the sink returns as Content-MD5). */
export const sinkContentMd5 = (name: string, size: number): Buffer => {
  const h = createHash("md5");
  for (const slice of contentSlices(sinkSeedOf(name), 0, size)) h.update(slice);
  return h.digest();
};

interface RegisteredBlob {
  name: string;
  size: number;
  seed: number;
  /** Quoted, as in headers. */
  etag: string;
  lastModified: string;
  /** Base64, when registered with md5. */
  md5: string | undefined;
  /**
   * x-ms-content-crc64 answers by "start-length", filled at registration (md5: every 4 MiB range
   * from byte 0) and on first use: the content never changes, and the service's checksum is not
   * the client's CPU (on this shared machine the sink's is).
   */
  rangeCrc64: Map<string, string>;
  /** Headers of HEAD and GET (without length, range and MD5). */
  headers: Record<string, string>;
  /** The <Blob> element of a listing. */
  xml: string;
}

interface Registry {
  /** By name (JavaScript string order; the benchmarks use ASCII names); stale while `dirty`. */
  sorted: RegisteredBlob[];
  byName: Map<string, RegisteredBlob>;
  /** Uploads added blobs since `sorted` was made (sortedOf re-sorts on the next listing). */
  dirty: boolean;
}

/** Index of the first blob whose name is ≥ key. */
const lowerBound = (sorted: readonly RegisteredBlob[], key: string): number => {
  let lo = 0;
  let hi = sorted.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (sorted[mid]!.name < key) lo = mid + 1;
    else hi = mid;
  }
  return lo;
};

/** One blob's served properties: headers of HEAD/GET and its <Blob> listing element. */
const makeBlob = (
  spec: SinkBlobSpec,
  md5: string | undefined,
  lastModified: string,
): RegisteredBlob => {
  if (typeof spec.name !== "string" || spec.name === "")
    throw new Error(`bad blob name ${JSON.stringify(spec.name)}`);
  if (!Number.isSafeInteger(spec.size) || spec.size < 0)
    throw new Error(`blob ${spec.name}: bad size ${spec.size}`);
  const seed = sinkSeedOf(spec.name);
  const etag = newEtag();
  const metadata = spec.metadata ?? {};
  const headers: Record<string, string> = {
    etag,
    "last-modified": lastModified,
    "x-ms-creation-time": lastModified,
    "x-ms-blob-type": "BlockBlob",
    "accept-ranges": "bytes",
    "content-type": "application/octet-stream",
    "x-ms-lease-status": "unlocked",
    "x-ms-lease-state": "available",
    "x-ms-server-encrypted": "true",
  };
  for (const [k, v] of Object.entries(metadata)) headers[`x-ms-meta-${k}`] = v;
  const xml =
    `<Blob><Name>${xmlEscape(spec.name)}</Name><Properties>` +
    `<Creation-Time>${lastModified}</Creation-Time><Last-Modified>${lastModified}</Last-Modified>` +
    `<Etag>${etag.slice(1, -1)}</Etag><Content-Length>${spec.size}</Content-Length>` +
    `<Content-Type>application/octet-stream</Content-Type>` +
    (md5 !== undefined ? `<Content-MD5>${md5}</Content-MD5>` : "") +
    `<BlobType>BlockBlob</BlobType><AccessTier>Hot</AccessTier><AccessTierInferred>true</AccessTierInferred>` +
    `<LeaseStatus>unlocked</LeaseStatus><LeaseState>available</LeaseState>` +
    `<ServerEncrypted>true</ServerEncrypted></Properties><Metadata>` +
    Object.entries(metadata)
      .map(([k, v]) => `<${k}>${xmlEscape(v)}</${k}>`)
      .join("") +
    `</Metadata></Blob>`;
  // (An empty <Metadata></Metadata> is what the service sends as <Metadata />: the SDK reads both as no metadata.)
  return {
    name: spec.name,
    size: spec.size,
    seed,
    etag,
    lastModified,
    md5,
    rangeCrc64: new Map(),
    headers,
    xml,
  };
};

const byNameOrder = (a: RegisteredBlob, b: RegisteredBlob): number =>
  a.name < b.name ? -1 : a.name > b.name ? 1 : 0;

/** The CRC64 of bytes [start, start+length) of `b`, base64 as in x-ms-content-crc64; memoized. */
const rangeCrc64Of = (b: RegisteredBlob, start: number, length: number): string => {
  const key = `${start}-${length}`;
  let v = b.rangeCrc64.get(key);
  if (v === undefined) {
    let crc = 0n;
    for (const slice of contentSlices(b.seed, start, length)) crc = crc64(slice, crc);
    v = crc64Bytes(crc).toString("base64");
    if (b.rangeCrc64.size < 65_536) b.rangeCrc64.set(key, v);
  }
  return v;
};

const buildRegistry = (r: SinkRegistration): Registry => {
  const lastModified = new Date().toUTCString();
  const byName = new Map<string, RegisteredBlob>();
  for (const spec of r.blobs) {
    const md5 = r.md5 ? sinkContentMd5(spec.name, spec.size).toString("base64") : undefined;
    const blob = makeBlob(spec, md5, lastModified);
    if (r.md5 && spec.size > RANGE_CRC64_MAX_BYTES)
      for (let start = 0; start < spec.size; start += RANGE_CRC64_MAX_BYTES)
        rangeCrc64Of(blob, start, Math.min(RANGE_CRC64_MAX_BYTES, spec.size - start));
    byName.set(spec.name, blob);
  }
  return { sorted: [...byName.values()].sort(byNameOrder), byName, dirty: false };
};

/** The sorted view of a registry that uploads changed since it was last listed. */
const sortedOf = (r: Registry): RegisteredBlob[] => {
  if (r.dirty) {
    r.sorted = [...r.byName.values()].sort(byNameOrder);
    r.dirty = false;
  }
  return r.sorted;
};

/** x-ms-meta-* request headers → metadata (names as sent, lower-cased by node). */
const metadataOf = (headers: IncomingMessage["headers"]): Record<string, string> => {
  const m: Record<string, string> = {};
  for (const [k, v] of Object.entries(headers))
    if (k.startsWith("x-ms-meta-") && typeof v === "string") m[k.slice(10)] = v;
  return m;
};

/** Block ids of a Put Block List body, in order. */
const blockIdsOf = (xml: string): string[] =>
  [
    ...xml.matchAll(
      /<(?:Latest|Committed|Uncommitted)>([^<]*)<\/(?:Latest|Committed|Uncommitted)>/g,
    ),
  ].map((m) => m[1]!);

const emptyStats = (): BlobSinkStats => ({
  requests: 0,
  bodyBytes: 0,
  dataBytes: 0,
  sentBytes: 0,
  rangedGets: 0,
  rangeCrc64Answers: 0,
  dataBytesBySource: {},
  byKind: {
    createContainer: 0,
    deleteContainer: 0,
    listBlobs: 0,
    putBlob: 0,
    putBlock: 0,
    putBlockList: 0,
    getContainerProperties: 0,
    getBlobProperties: 0,
    getBlob: 0,
    registerBlobs: 0,
    unsupported: 0,
  },
  withContentMD5: 0,
  withBlobContentMD5: 0,
  withContentCrc64: 0,
  crc64Checked: 0,
  crc64Mismatches: 0,
  unsupportedSamples: [],
});

const endpointFor = (host: string, port: number): BlobSinkEndpoint => {
  const blobEndpoint = `http://${host}:${port}/${SINK_ACCOUNT_NAME}`;
  return {
    port,
    blobEndpoint,
    connectionString:
      `DefaultEndpointsProtocol=http;AccountName=${SINK_ACCOUNT_NAME};` +
      `AccountKey=${SINK_ACCOUNT_KEY};BlobEndpoint=${blobEndpoint};`,
  };
};

const xmlEscape = (s: string): string => s.replace(/[<>&'"]/g, (c) => `&#${c.charCodeAt(0)};`);

/** Headers every Blob API response carries. */
const baseHeaders = (req: IncomingMessage): Record<string, string> => {
  const h: Record<string, string> = {
    "x-ms-request-id": randomUUID(),
    "x-ms-version": String(req.headers["x-ms-version"] ?? "2026-04-06"),
    date: new Date().toUTCString(),
    server: "hsmfleet-bench-sink (discards data)",
  };
  const clientId = req.headers["x-ms-client-request-id"];
  if (typeof clientId === "string") h["x-ms-client-request-id"] = clientId;
  return h;
};

let etagCounter = 0;
const newEtag = (): string =>
  `"0x8DC${(++etagCounter).toString(16).toUpperCase().padStart(11, "0")}"`;

const sendError = (
  req: IncomingMessage,
  res: ServerResponse,
  status: number,
  code: string,
  message: string,
): void => {
  const headers: Record<string, string> = { ...baseHeaders(req), "x-ms-error-code": code };
  if (req.method === "HEAD") {
    res.writeHead(status, { ...headers, "content-length": "0" });
    res.end();
    return;
  }
  const body =
    `<?xml version="1.0" encoding="utf-8"?><Error><Code>${code}</Code>` +
    `<Message>${xmlEscape(message)}\nRequestId:${headers["x-ms-request-id"]}\nTime:${new Date().toISOString()}</Message></Error>`;
  res.writeHead(status, {
    ...headers,
    "content-type": "application/xml",
    "content-length": String(Buffer.byteLength(body)),
  });
  res.end(body);
};

const sendEmpty = (
  req: IncomingMessage,
  res: ServerResponse,
  status: number,
  extra: Record<string, string> = {},
): void => {
  res.writeHead(status, { ...baseHeaders(req), ...extra, "content-length": "0" });
  res.end();
};

/** Default maxresults of List Blobs, as the service's. */
const LIST_PAGE_DEFAULT = 5000;

/**
 * One List Blobs page over the registered blobs (none for an unregistered container): blobs whose
 * name starts with `prefix`, from `marker` on; with a delimiter, names with the delimiter after
 * the prefix collapse into one <BlobPrefix> each. Each blob and each prefix is one result.
 */
const listXml = (
  endpoint: string,
  container: string,
  q: URLSearchParams,
  registry: Registry | undefined,
): string => {
  const parts = [
    `<?xml version="1.0" encoding="utf-8"?>`,
    `<EnumerationResults ServiceEndpoint="${xmlEscape(endpoint)}/" ContainerName="${xmlEscape(container)}">`,
  ];
  for (const [param, element] of [
    ["prefix", "Prefix"],
    ["marker", "Marker"],
    ["maxresults", "MaxResults"],
    ["delimiter", "Delimiter"],
  ] as const) {
    const v = q.get(param);
    if (v !== null) parts.push(`<${element}>${xmlEscape(v)}</${element}>`);
  }
  const sorted = registry ? sortedOf(registry) : [];
  const prefix = q.get("prefix") ?? "";
  const delimiter = q.get("delimiter") ?? "";
  const marker = q.get("marker") ?? "";
  const max = Math.max(
    1,
    Math.min(LIST_PAGE_DEFAULT, Number(q.get("maxresults")) || LIST_PAGE_DEFAULT),
  );
  const withMetadata = (q.get("include") ?? "").split(",").includes("metadata");
  let i = lowerBound(sorted, marker > prefix ? marker : prefix);
  let results = 0;
  parts.push("<Blobs>");
  while (i < sorted.length && results < max) {
    const b = sorted[i]!;
    if (!b.name.startsWith(prefix)) break;
    const d = delimiter === "" ? -1 : b.name.indexOf(delimiter, prefix.length);
    if (d >= 0) {
      const p = b.name.slice(0, d + delimiter.length);
      parts.push(`<BlobPrefix><Name>${xmlEscape(p)}</Name></BlobPrefix>`);
      // Every name that starts with p (contiguous in sorted order) is behind this one prefix.
      i = lowerBound(sorted, `${p}\uffff`);
    } else {
      parts.push(withMetadata ? b.xml : b.xml.replace(/<Metadata>.*<\/Metadata>/, ""));
      i++;
    }
    results++;
  }
  parts.push("</Blobs>");
  const next = i < sorted.length && sorted[i]!.name.startsWith(prefix) ? sorted[i]!.name : "";
  parts.push(next === "" ? "<NextMarker />" : `<NextMarker>${xmlEscape(next)}</NextMarker>`);
  parts.push("</EnumerationResults>");
  return parts.join("");
};

/** [start, end] (inclusive) of a `bytes=a-b` / `bytes=a-` header, or "invalid", or undefined without one. */
const parseRange = (
  header: string | undefined,
  size: number,
): { start: number; end: number } | "invalid" | undefined => {
  if (header === undefined) return undefined;
  const m = /^bytes=(\d+)-(\d*)$/.exec(header.trim());
  if (!m) return "invalid";
  const start = Number(m[1]);
  const end = m[2] === "" ? size - 1 : Math.min(Number(m[2]), size - 1);
  if (start >= size || end < start) return "invalid";
  return { start, end };
};

/** Starts a sink in this process. */
export const startBlobSink = async (options: BlobSinkOptions = {}): Promise<BlobSink> => {
  const host = options.host ?? "127.0.0.1";
  let toLog = options.logRequests ?? 0;
  const checkCrc64Every = Math.max(1, Math.floor(options.checkCrc64Every ?? 1));
  let crcRequests = 0;
  let stats = emptyStats();
  const containers = new Set<string>();
  const registries = new Map<string, Registry>();
  /** Sizes of staged blocks by container, blob and block id (what Put Block List commits). */
  const staged = new Map<string, Map<string, number>>();
  /**
   * Remembers a written blob (size, MD5 as sent, metadata; never the data) so that it is listed
   * and answers HEAD like the service: a peer such as rclone checks each upload with a HEAD, and
   * an incremental run lists what the previous one wrote. A GET of it serves synthetic content.
   */
  const remember = (
    container: string,
    name: string,
    size: number,
    headers: IncomingMessage["headers"],
  ): void => {
    let r = registries.get(container);
    if (r === undefined) {
      r = { sorted: [], byName: new Map(), dirty: false };
      registries.set(container, r);
    }
    const md5 = headers["x-ms-blob-content-md5"] ?? headers["content-md5"];
    r.byName.set(
      name,
      makeBlob(
        { name, size, metadata: metadataOf(headers) },
        typeof md5 === "string" ? md5 : undefined,
        new Date().toUTCString(),
      ),
    );
    r.dirty = true;
  };
  const unsupportedShapes = new Set<string>();

  const register = (r: SinkRegistration): SinkRegistered => {
    if (typeof r.container !== "string" || r.container === "" || !Array.isArray(r.blobs))
      throw new Error("a registration needs a container and a list of blobs");
    const registry = buildRegistry(r);
    registries.set(r.container, registry);
    containers.add(r.container);
    return {
      container: r.container,
      blobs: registry.sorted.length,
      bytes: registry.sorted.reduce((sum, b) => sum + b.size, 0),
    };
  };

  const sendJson = (res: ServerResponse, status: number, value: unknown): void => {
    const json = JSON.stringify(value);
    res.writeHead(status, {
      "content-type": "application/json",
      "content-length": String(Buffer.byteLength(json)),
    });
    res.end(json);
  };

  /** Get Blob / Get Blob Properties of a registered blob. */
  const serveBlob = (req: IncomingMessage, res: ServerResponse, b: RegisteredBlob): void => {
    const ifMatch = req.headers["if-match"];
    if (typeof ifMatch === "string" && ifMatch !== "*" && ifMatch !== b.etag) {
      sendError(
        req,
        res,
        412,
        "ConditionNotMet",
        "The condition specified using HTTP conditional header(s) is not met.",
      );
      return;
    }
    const headers: Record<string, string> = { ...baseHeaders(req), ...b.headers };
    if (req.method === "HEAD") {
      if (b.md5 !== undefined) headers["content-md5"] = b.md5;
      res.writeHead(200, { ...headers, "content-length": String(b.size) });
      res.end();
      return;
    }
    const rangeHeader = req.headers["x-ms-range"] ?? req.headers["range"];
    const range = parseRange(typeof rangeHeader === "string" ? rangeHeader : undefined, b.size);
    if (range === "invalid") {
      sendError(
        req,
        res,
        416,
        "InvalidRange",
        "The range specified is invalid for the current size of the resource.",
      );
      return;
    }
    let start = 0;
    let length = b.size;
    if (range === undefined) {
      if (b.md5 !== undefined) headers["content-md5"] = b.md5;
      res.writeHead(200, { ...headers, "content-length": String(length) });
    } else {
      stats.rangedGets++;
      start = range.start;
      length = range.end - range.start + 1;
      if (b.md5 !== undefined) headers["x-ms-blob-content-md5"] = b.md5;
      if (req.headers["x-ms-range-get-content-crc64"] === "true") {
        // As Azure: the range's CRC64 (of what is sent), for ranges of at most 4 MiB.
        if (length > RANGE_CRC64_MAX_BYTES) {
          sendError(req, res, 400, "OutOfRangeInput", "One of the request inputs is out of range.");
          return;
        }
        headers["x-ms-content-crc64"] = rangeCrc64Of(b, start, length);
        stats.rangeCrc64Answers++;
      }
      res.writeHead(206, {
        ...headers,
        "content-length": String(length),
        "content-range": `bytes ${range.start}-${range.end}/${b.size}`,
      });
    }
    stats.sentBytes += length;
    for (const slice of contentSlices(b.seed, start, length)) res.write(slice);
    res.end();
  };

  const countSource = (req: IncomingMessage, body: number): void => {
    const from = req.socket.remoteAddress ?? "?";
    stats.dataBytesBySource[from] = (stats.dataBytesBySource[from] ?? 0) + body;
  };

  const handle = (
    req: IncomingMessage,
    res: ServerResponse,
    body: number,
    text: string | undefined,
    bodyCrc64: string | undefined,
  ): void => {
    const url = new URL(req.url ?? "/", "http://sink");
    const q = url.searchParams;
    const segments = url.pathname.split("/").filter((s) => s !== "");
    const method = req.method ?? "GET";
    const headers = req.headers;

    if (segments[0] === "__sink") {
      if (segments[1] === "stats" && method === "GET") {
        sendJson(res, 200, stats);
        return;
      }
      if (segments[1] === "blobs" && method === "POST") {
        stats.byKind.registerBlobs++;
        try {
          sendJson(res, 200, register(JSON.parse(text ?? "") as SinkRegistration));
        } catch (err) {
          sendJson(res, 400, { error: err instanceof Error ? err.message : String(err) });
        }
        return;
      }
      if (segments[1] === "reset" && method === "POST") {
        stats = emptyStats();
        res.writeHead(204);
        res.end();
        return;
      }
    }

    stats.requests++;
    stats.bodyBytes += body;
    if (headers["content-md5"] !== undefined) stats.withContentMD5++;
    const container = segments[1];
    let blob: string;
    try {
      blob = segments.slice(2).map(decodeURIComponent).join("/");
    } catch {
      blob = segments.slice(2).join("/");
    }
    const restype = q.get("restype");
    const comp = q.get("comp");
    const kind: SinkRequestKind =
      container === undefined
        ? "unsupported"
        : restype === "container" && blob === ""
          ? method === "PUT" && comp === null
            ? "createContainer"
            : method === "DELETE" && comp === null
              ? "deleteContainer"
              : method === "GET" && comp === "list"
                ? "listBlobs"
                : (method === "GET" || method === "HEAD") && comp === null
                  ? "getContainerProperties"
                  : "unsupported"
          : blob === ""
            ? "unsupported"
            : method === "PUT" && comp === "block" && q.get("blockid") !== null
              ? "putBlock"
              : method === "PUT" && comp === "blocklist"
                ? "putBlockList"
                : method === "PUT" && comp === null && headers["x-ms-blob-type"] === "BlockBlob"
                  ? "putBlob"
                  : method === "HEAD" && comp === null
                    ? "getBlobProperties"
                    : method === "GET" && comp === null
                      ? "getBlob"
                      : "unsupported";
    stats.byKind[kind]++;

    const md5Echo: Record<string, string> = {};
    const md5 = headers["content-md5"];
    if (typeof md5 === "string") md5Echo["content-md5"] = md5;
    const sentCrc64 = headers["x-ms-content-crc64"];
    if (typeof sentCrc64 === "string") md5Echo["x-ms-content-crc64"] = sentCrc64;
    /** False (after answering 400) when the request's x-ms-content-crc64 is not its body's. */
    const crc64Holds = (): boolean => {
      if (typeof sentCrc64 !== "string") return true;
      stats.withContentCrc64++;
      if (bodyCrc64 === undefined) return true; // not in the sample
      stats.crc64Checked++;
      if (sentCrc64 === bodyCrc64) return true;
      stats.crc64Mismatches++;
      sendError(
        req,
        res,
        400,
        "Crc64Mismatch",
        `The CRC64 value specified in the request (${sentCrc64}) did not match the CRC64 of the body (${bodyCrc64}).`,
      );
      return false;
    };
    const written = (): Record<string, string> => ({
      etag: newEtag(),
      "last-modified": new Date().toUTCString(),
      "x-ms-request-server-encrypted": "true",
    });

    switch (kind) {
      case "createContainer": {
        if (containers.has(container!)) {
          sendError(
            req,
            res,
            409,
            "ContainerAlreadyExists",
            "The specified container already exists.",
          );
          return;
        }
        containers.add(container!);
        sendEmpty(req, res, 201, { etag: newEtag(), "last-modified": new Date().toUTCString() });
        return;
      }
      case "getContainerProperties":
        if (!containers.has(container!)) {
          sendError(req, res, 404, "ContainerNotFound", "The specified container does not exist.");
          return;
        }
        sendEmpty(req, res, 200, {
          etag: `"0x8DC0000000000001"`,
          "last-modified": new Date(0).toUTCString(),
          "x-ms-lease-status": "unlocked",
          "x-ms-lease-state": "available",
          "x-ms-has-immutability-policy": "false",
          "x-ms-has-legal-hold": "false",
        });
        return;
      case "deleteContainer":
        registries.delete(container!);
        if (!containers.delete(container!)) {
          sendError(req, res, 404, "ContainerNotFound", "The specified container does not exist.");
          return;
        }
        sendEmpty(req, res, 202);
        return;
      case "listBlobs": {
        const account = segments[0] ?? SINK_ACCOUNT_NAME;
        const xml = listXml(
          `http://${headers.host ?? host}/${account}`,
          container!,
          q,
          registries.get(container!),
        );
        res.writeHead(200, {
          ...baseHeaders(req),
          "content-type": "application/xml",
          "content-length": String(Buffer.byteLength(xml)),
        });
        res.end(xml);
        return;
      }
      case "putBlob": {
        stats.dataBytes += body;
        countSource(req, body);
        if (!crc64Holds()) return;
        if (headers["x-ms-blob-content-md5"] !== undefined) stats.withBlobContentMD5++;
        remember(container!, blob, body, headers);
        sendEmpty(req, res, 201, { ...written(), ...md5Echo });
        return;
      }
      case "putBlock": {
        stats.dataBytes += body;
        countSource(req, body);
        if (!crc64Holds()) return;
        const key = `${container}/${blob}`;
        const blocks = staged.get(key) ?? staged.set(key, new Map()).get(key)!;
        blocks.set(q.get("blockid")!, body);
        sendEmpty(req, res, 201, { ...md5Echo, "x-ms-request-server-encrypted": "true" });
        return;
      }
      case "putBlockList": {
        if (headers["x-ms-blob-content-md5"] !== undefined) stats.withBlobContentMD5++;
        const key = `${container}/${blob}`;
        const blocks = staged.get(key);
        let size = 0;
        for (const id of blockIdsOf(text ?? "")) {
          const n = blocks?.get(id);
          if (n === undefined) {
            sendError(req, res, 400, "InvalidBlockList", `The block ${id} was not staged.`);
            return;
          }
          size += n;
        }
        staged.delete(key);
        remember(container!, blob, size, headers);
        sendEmpty(req, res, 201, written());
        return;
      }
      case "getBlobProperties":
      case "getBlob": {
        const b = registries.get(container!)?.byName.get(blob);
        if (b === undefined) {
          sendError(req, res, 404, "BlobNotFound", "The specified blob does not exist.");
          return;
        }
        serveBlob(req, res, b);
        return;
      }
      case "unsupported": {
        const shape = `${method} ${url.pathname}?${[...q.keys()].sort().join("&")}`;
        if (stats.unsupportedSamples.length < 20)
          stats.unsupportedSamples.push(`${method} ${req.url}`);
        if (!unsupportedShapes.has(shape)) {
          unsupportedShapes.add(shape);
          process.stderr.write(`[blob-sink] unsupported request: ${method} ${req.url}\n`);
        }
        sendError(
          req,
          res,
          400,
          "UnsupportedBySink",
          `The benchmark sink does not implement ${method} ${url.pathname}`,
        );
        return;
      }
    }
  };

  const server = createServer({ keepAliveTimeout: 60_000 }, (req, res) => {
    if (toLog > 0) {
      toLog--;
      process.stderr.write(
        `[blob-sink] ${req.method} ${req.url}\n${Object.entries(req.headers)
          .map(([k, v]) => `    ${k}: ${k === "authorization" ? "(ignored)" : String(v)}`)
          .join("\n")}\n`,
      );
    }
    // Only out-of-band requests keep their body; Blob API bodies are counted and dropped.
    // (and Put Block List bodies: the block ids, a few KiB).
    const keep =
      (req.url?.startsWith("/__sink/") ?? false) ||
      (req.method === "PUT" && (req.url?.includes("comp=blocklist") ?? false));
    const chunks: Buffer[] = [];
    let body = 0;
    // The CRC64 of a body that claims one, chunk by chunk as it arrives (seeds chain).
    const checkCrc =
      req.method === "PUT" &&
      req.headers["x-ms-content-crc64"] !== undefined &&
      ++crcRequests % checkCrc64Every === 0;
    let crc = 0n;
    req.on("data", (chunk: Buffer) => {
      body += chunk.length;
      if (keep) chunks.push(chunk);
      if (checkCrc) crc = crc64(chunk, crc);
    });
    req.once("end", () =>
      handle(
        req,
        res,
        body,
        keep ? Buffer.concat(chunks).toString("utf8") : undefined,
        checkCrc ? crc64Bytes(crc).toString("base64") : undefined,
      ),
    );
    req.once("error", () => res.destroy());
  });
  // Large blocks over a slow link must not hit the default 300 s request timeout; loopback is fast.
  server.requestTimeout = 0;
  server.headersTimeout = 60_000;
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(options.port ?? 0, host, () => resolve());
  });
  const port = (server.address() as AddressInfo).port;
  return {
    ...endpointFor(host, port),
    stats: () => structuredClone(stats),
    reset: () => {
      stats = emptyStats();
    },
    register,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
};

// ---------------------------------------------------------------------------------------------
// In a child process

export interface BlobSinkProcess extends BlobSinkEndpoint {
  pid: number;
  stats(): Promise<BlobSinkStats>;
  reset(): Promise<void>;
  /** POST /__sink/blobs: replaces the container's registered blobs. */
  register(registration: SinkRegistration): Promise<SinkRegistered>;
  /** SIGTERM, SIGKILL after 5 s. Idempotent. */
  stop(): Promise<void>;
}

const sinkCall = (port: number, method: string, path: string, body?: string): Promise<string> =>
  new Promise((resolve, reject) => {
    const headers =
      body === undefined
        ? {}
        : { "content-type": "application/json", "content-length": String(Buffer.byteLength(body)) };
    const req = request({ host: "127.0.0.1", port, method, path, headers, agent: false }, (res) => {
      let text = "";
      res.setEncoding("utf8");
      res.on("data", (c: string) => (text += c));
      res.once("end", () =>
        (res.statusCode ?? 0) < 300
          ? resolve(text)
          : reject(
              new Error(`blob sink ${method} ${path}: ${res.statusCode} ${text.slice(0, 500)}`),
            ),
      );
    });
    req.once("error", reject);
    req.end(body);
  });

/** Runs the sink in a child process (this module as its main), on a free loopback port. */
export const spawnBlobSink = async (
  options: { logRequests?: number; checkCrc64Every?: number; execArgv?: string[] } = {},
): Promise<BlobSinkProcess> => {
  const child: ChildProcess = fork(fileURLToPath(import.meta.url), ["--serve"], {
    stdio: ["ignore", "inherit", "inherit", "ipc"],
    execArgv: options.execArgv ?? [],
    env: {
      ...process.env,
      HSMFLEET_SINK_LOG_REQUESTS: String(options.logRequests ?? 0),
      HSMFLEET_SINK_CRC64_EVERY: String(options.checkCrc64Every ?? 1),
    },
  });
  const stopChild = (): void => {
    if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
  };
  process.once("exit", stopChild);
  const port = await new Promise<number>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error("blob sink did not start in 10 s")), 10_000);
    child.once("message", (m: { port?: number }) => {
      clearTimeout(timer);
      if (typeof m.port === "number") resolve(m.port);
      else reject(new Error(`blob sink sent ${JSON.stringify(m)}`));
    });
    child.once("exit", (code, signal) => {
      clearTimeout(timer);
      reject(new Error(`blob sink exited during startup (${code ?? signal})`));
    });
  });
  let stopping: Promise<void> | undefined;
  return {
    ...endpointFor("127.0.0.1", port),
    pid: child.pid ?? -1,
    stats: async () => JSON.parse(await sinkCall(port, "GET", "/__sink/stats")) as BlobSinkStats,
    reset: async () => {
      await sinkCall(port, "POST", "/__sink/reset");
    },
    register: async (registration) =>
      JSON.parse(
        await sinkCall(port, "POST", "/__sink/blobs", JSON.stringify(registration)),
      ) as SinkRegistered,
    stop: () =>
      (stopping ??= new Promise<void>((resolve) => {
        process.removeListener("exit", stopChild);
        if (child.exitCode !== null || child.signalCode !== null) {
          resolve();
          return;
        }
        const timer = setTimeout(() => child.kill("SIGKILL"), 5000);
        child.once("exit", () => {
          clearTimeout(timer);
          resolve();
        });
        child.kill("SIGTERM");
      })),
  };
};

const isMain =
  process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href;
if (isMain && process.argv.includes("--serve")) {
  const sink = await startBlobSink({
    logRequests: Number(process.env["HSMFLEET_SINK_LOG_REQUESTS"] ?? 0) || 0,
    checkCrc64Every: Number(process.env["HSMFLEET_SINK_CRC64_EVERY"] ?? 1) || 1,
  });
  const shutdown = (): void => {
    void sink.close().then(() => process.exit(0));
  };
  process.once("SIGTERM", shutdown);
  process.once("SIGINT", shutdown);
  process.once("disconnect", shutdown);
  if (process.send) process.send({ port: sink.port });
  else
    process.stdout.write(
      `${JSON.stringify({ port: sink.port, blobEndpoint: sink.blobEndpoint })}\n`,
    );
}
