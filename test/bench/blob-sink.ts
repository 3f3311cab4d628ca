/**
 * BENCHMARK SINK — NOT STORAGE. A loopback HTTP server that answers just enough of the Azure Blob
 * REST API for hsmfleet's export path (and the @azure/storage-blob SDK) to run against it, and
 * throws every byte it receives away. It exists to measure how fast a client can push data when
 * the service costs (almost) nothing: request bodies are read and counted, never stored, never
 * checked (no MD5 verification, no auth check), and every blob "does not exist" afterwards.
 *
 * What it answers (path style: /<account>/<container>[/<blob>]):
 *   PUT  ?restype=container                 Create Container: 201, or 409 ContainerAlreadyExists
 *                                           the second time a name is created
 *   GET  ?restype=container&comp=list…      List Blobs: an empty EnumerationResults (Prefix,
 *                                           Delimiter, Marker, MaxResults echoed)
 *   PUT  (x-ms-blob-type: BlockBlob)        Put Blob: 201 with ETag, Last-Modified, Content-MD5 echo
 *   PUT  ?comp=block&blockid=…              Put Block: 201 (Content-MD5 echo)
 *   PUT  ?comp=blocklist                    Put Block List: 201 with ETag, Last-Modified
 *   HEAD / GET on a blob                    404 BlobNotFound (x-ms-error-code)
 *   DELETE ?restype=container               Delete Container: 202 (404 if unknown)
 *   anything else                           400 UnsupportedBySink (counted, logged once per shape)
 * Shared Key signatures, SAS and bearer tokens are ignored.
 *
 * Out of band (not Blob API): GET /__sink/stats (JSON counters), POST /__sink/reset.
 *
 * Use startBlobSink() in-process, or spawnBlobSink() to run it in a child process of its own (what
 * the export benchmark does, so the sink does not share an event loop with the client it measures).
 */
import { fork } from "node:child_process";
import type { ChildProcess } from "node:child_process";
import { randomUUID } from "node:crypto";
import { createServer, request } from "node:http";
import type { IncomingMessage, ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
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
  | "getBlob"
  | "unsupported";

export interface BlobSinkStats {
  requests: number;
  /** Request body bytes read (and discarded), all requests. */
  bodyBytes: number;
  /** Body bytes of Put Blob and Put Block requests only: the data itself. */
  dataBytes: number;
  /** dataBytes by the client's source address (the fleet benchmark checks each worker's --bind). */
  dataBytesBySource: Record<string, number>;
  byKind: Record<SinkRequestKind, number>;
  /** Requests that carried a Content-MD5 header (transactional MD5). */
  withContentMD5: number;
  /** Put Blob / Put Block List requests that set the blob's stored MD5 (x-ms-blob-content-md5). */
  withBlobContentMD5: number;
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
  close(): Promise<void>;
}

const emptyStats = (): BlobSinkStats => ({
  requests: 0,
  bodyBytes: 0,
  dataBytes: 0,
  dataBytesBySource: {},
  byKind: {
    createContainer: 0,
    deleteContainer: 0,
    listBlobs: 0,
    putBlob: 0,
    putBlock: 0,
    putBlockList: 0,
    getBlob: 0,
    unsupported: 0,
  },
  withContentMD5: 0,
  withBlobContentMD5: 0,
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

const listXml = (endpoint: string, container: string, q: URLSearchParams): string => {
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
  parts.push("<Blobs />", "<NextMarker />", "</EnumerationResults>");
  return parts.join("");
};

/** Starts a sink in this process. */
export const startBlobSink = async (options: BlobSinkOptions = {}): Promise<BlobSink> => {
  const host = options.host ?? "127.0.0.1";
  let toLog = options.logRequests ?? 0;
  let stats = emptyStats();
  const containers = new Set<string>();
  const unsupportedShapes = new Set<string>();

  const countSource = (req: IncomingMessage, body: number): void => {
    const from = req.socket.remoteAddress ?? "?";
    stats.dataBytesBySource[from] = (stats.dataBytesBySource[from] ?? 0) + body;
  };

  const handle = (req: IncomingMessage, res: ServerResponse, body: number): void => {
    const url = new URL(req.url ?? "/", "http://sink");
    const q = url.searchParams;
    const segments = url.pathname.split("/").filter((s) => s !== "");
    const method = req.method ?? "GET";
    const headers = req.headers;

    if (segments[0] === "__sink") {
      if (segments[1] === "stats" && method === "GET") {
        const json = JSON.stringify(stats);
        res.writeHead(200, {
          "content-type": "application/json",
          "content-length": String(Buffer.byteLength(json)),
        });
        res.end(json);
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
    const blob = segments.slice(2).join("/");
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
                : "unsupported"
          : blob === ""
            ? "unsupported"
            : method === "PUT" && comp === "block" && q.get("blockid") !== null
              ? "putBlock"
              : method === "PUT" && comp === "blocklist"
                ? "putBlockList"
                : method === "PUT" && comp === null && headers["x-ms-blob-type"] === "BlockBlob"
                  ? "putBlob"
                  : (method === "HEAD" || method === "GET") && comp === null
                    ? "getBlob"
                    : "unsupported";
    stats.byKind[kind]++;

    const md5Echo: Record<string, string> = {};
    const md5 = headers["content-md5"];
    if (typeof md5 === "string") md5Echo["content-md5"] = md5;
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
      case "deleteContainer":
        if (!containers.delete(container!)) {
          sendError(req, res, 404, "ContainerNotFound", "The specified container does not exist.");
          return;
        }
        sendEmpty(req, res, 202);
        return;
      case "listBlobs": {
        const account = segments[0] ?? SINK_ACCOUNT_NAME;
        const xml = listXml(`http://${headers.host ?? host}/${account}`, container!, q);
        res.writeHead(200, {
          ...baseHeaders(req),
          "content-type": "application/xml",
          "content-length": String(Buffer.byteLength(xml)),
        });
        res.end(xml);
        return;
      }
      case "putBlob":
        stats.dataBytes += body;
        countSource(req, body);
        if (headers["x-ms-blob-content-md5"] !== undefined) stats.withBlobContentMD5++;
        sendEmpty(req, res, 201, { ...written(), ...md5Echo });
        return;
      case "putBlock":
        stats.dataBytes += body;
        countSource(req, body);
        sendEmpty(req, res, 201, { ...md5Echo, "x-ms-request-server-encrypted": "true" });
        return;
      case "putBlockList":
        if (headers["x-ms-blob-content-md5"] !== undefined) stats.withBlobContentMD5++;
        sendEmpty(req, res, 201, written());
        return;
      case "getBlob":
        sendError(req, res, 404, "BlobNotFound", "The specified blob does not exist.");
        return;
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
    let body = 0;
    req.on("data", (chunk: Buffer) => {
      body += chunk.length;
    });
    req.once("end", () => handle(req, res, body));
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
  /** SIGTERM, SIGKILL after 5 s. Idempotent. */
  stop(): Promise<void>;
}

const sinkCall = (port: number, method: string, path: string): Promise<string> =>
  new Promise((resolve, reject) => {
    const req = request({ host: "127.0.0.1", port, method, path, agent: false }, (res) => {
      let text = "";
      res.setEncoding("utf8");
      res.on("data", (c: string) => (text += c));
      res.once("end", () =>
        (res.statusCode ?? 0) < 300
          ? resolve(text)
          : reject(new Error(`blob sink ${method} ${path}: ${res.statusCode}`)),
      );
    });
    req.once("error", reject);
    req.end();
  });

/** Runs the sink in a child process (this module as its main), on a free loopback port. */
export const spawnBlobSink = async (
  options: { logRequests?: number; execArgv?: string[] } = {},
): Promise<BlobSinkProcess> => {
  const child: ChildProcess = fork(fileURLToPath(import.meta.url), ["--serve"], {
    stdio: ["ignore", "inherit", "inherit", "ipc"],
    execArgv: options.execArgv ?? [],
    env: { ...process.env, HSMFLEET_SINK_LOG_REQUESTS: String(options.logRequests ?? 0) },
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
