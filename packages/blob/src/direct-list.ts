/**
 * One level of List Blobs (delimiter '/', metadata included) without the Azure SDK: the request
 * built, signed, paced and retried by the DirectBlobTransport (as direct Put Blob and Get Blob),
 * the XML answer read by a small scanner instead of the SDK's XML parser and deserializer — which
 * were, for an import of many small files, the largest piece of the worker's main thread after the
 * file-system calls.
 *
 * What is read of the answer (List Blobs, x-ms-version 2026-04-06): <BlobPrefix><Name>,
 * <Blob><Name> (percent-decoded when Encoded="true"), <Properties> Content-Length,
 * Last-Modified, Etag, Content-MD5, <Metadata> (keys as stored; an empty element is an empty
 * value), and <NextMarker>. Character references (&amp; &lt; &gt; &quot; &apos; &#N; &#xN;) are
 * decoded. Anything else is ignored.
 */
import type { DirectBlobTransport, DirectContainerAddress } from "./direct-put.js";
import { DIRECT_API_VERSION, DirectHttpError } from "./direct-put.js";
import { errorText, headerGetter } from "./direct-http.js";
import type { RetryPipelineResponse } from "./retry-policy.js";

export interface DirectListedBlob {
  name: string;
  size: number;
  metadata: Record<string, string>;
  lastModified: Date;
  contentMD5?: Buffer;
  /** As listed (bare 0x8D…, or quoted). */
  etag?: string;
}

export interface DirectListPage {
  prefixes: string[];
  blobs: DirectListedBlob[];
  /** Empty or undefined: the last page. */
  nextMarker: string | undefined;
}

const NAMED: Record<string, string> = { amp: "&", lt: "<", gt: ">", quot: '"', apos: "'" };

/** XML character references decoded. */
export const xmlText = (s: string): string =>
  s.includes("&")
    ? s.replace(/&(#x[0-9a-fA-F]+|#\d+|amp|lt|gt|quot|apos);/g, (_m, ref: string) => {
        if (ref.startsWith("#x")) return String.fromCodePoint(parseInt(ref.slice(2), 16));
        if (ref.startsWith("#")) return String.fromCodePoint(parseInt(ref.slice(1), 10));
        return NAMED[ref]!;
      })
    : s;

const element = (xml: string, tag: string): string | undefined => {
  const open = xml.indexOf(`<${tag}>`);
  if (open < 0) return undefined;
  const start = open + tag.length + 2;
  const end = xml.indexOf(`</${tag}>`, start);
  return end < 0 ? undefined : xml.slice(start, end);
};

const nameOf = (xml: string): string | undefined => {
  const m = /<Name( Encoded="true")?>([^<]*)<\/Name>/.exec(xml);
  if (m === null) return undefined;
  const text = xmlText(m[2]!);
  return m[1] !== undefined ? decodeURIComponent(text) : text;
};

/** A List Blobs answer (one page). Throws on a body that is not one. */
export const parseListBlobs = (xml: string): DirectListPage => {
  if (!xml.includes("<EnumerationResults"))
    throw new Error("the List Blobs answer is not an EnumerationResults document");
  const prefixes: string[] = [];
  const blobs: DirectListedBlob[] = [];
  const entry = /<(Blob|BlobPrefix)>([\s\S]*?)<\/\1>/g;
  for (let m = entry.exec(xml); m !== null; m = entry.exec(xml)) {
    const body = m[2]!;
    const name = nameOf(body);
    if (name === undefined) throw new Error("a List Blobs entry without a <Name>");
    if (m[1] === "BlobPrefix") {
      prefixes.push(name);
      continue;
    }
    const props = element(body, "Properties") ?? "";
    const length = element(props, "Content-Length");
    const modified = element(props, "Last-Modified");
    const blob: DirectListedBlob = {
      name,
      size: length !== undefined && /^\d+$/.test(length) ? Number(length) : 0,
      metadata: {},
      lastModified: new Date(modified ?? 0),
    };
    const md5 = element(props, "Content-MD5");
    if (md5 !== undefined && md5 !== "") blob.contentMD5 = Buffer.from(xmlText(md5), "base64");
    const etag = element(props, "Etag");
    if (etag !== undefined && etag !== "") blob.etag = xmlText(etag);
    const meta = element(body, "Metadata");
    if (meta !== undefined) {
      const kv = /<([^\s<>/]+)(?:\s*\/>|>([^<]*)<\/\1>)/g;
      for (let k = kv.exec(meta); k !== null; k = kv.exec(meta))
        blob.metadata[k[1]!] = xmlText(k[2] ?? "");
    }
    blobs.push(blob);
  }
  const next = element(xml, "NextMarker");
  return { prefixes, blobs, nextMarker: next === undefined ? undefined : xmlText(next) };
};

interface ListResponse extends RetryPipelineResponse {
  body: string;
}

/**
 * One page of one level under `prefix` ('/' delimiter, metadata included), from `marker`.
 * Throws DirectHttpError for a non-2xx answer once the retry policy gave up.
 */
export const directListPage = async (
  transport: DirectBlobTransport,
  address: DirectContainerAddress,
  prefix: string,
  marker: string | undefined,
  pageSize: number | undefined,
  signal: AbortSignal | undefined,
): Promise<DirectListPage> => {
  const query: Array<[string, string]> = [
    ["restype", "container"],
    ["comp", "list"],
    ["delimiter", "/"],
    ["include", "metadata"],
  ];
  if (prefix !== "") query.push(["prefix", prefix]);
  if (marker !== undefined && marker !== "") query.push(["marker", marker]);
  if (pageSize !== undefined) query.push(["maxresults", String(pageSize)]);
  const r = await transport.request<ListResponse>(
    "GET",
    address,
    "",
    { "x-ms-version": DIRECT_API_VERSION },
    (res, resolve, reject) => {
      const chunks: Buffer[] = [];
      res.on("data", (c: Buffer) => chunks.push(c));
      res.on("end", () => {
        if (!res.complete) {
          const err = new Error("the listing broke off") as NodeJS.ErrnoException;
          err.code = "ECONNRESET";
          reject(err);
          return;
        }
        resolve({
          status: res.statusCode ?? 0,
          headers: headerGetter(res),
          body: Buffer.concat(chunks).toString("utf8"),
        });
      });
      res.on("error", reject);
    },
    signal,
    undefined,
    query,
  );
  if (r.status < 200 || r.status >= 300) {
    throw new DirectHttpError(
      r.status,
      r.headers.get("x-ms-error-code"),
      errorText(r.status, r.body),
    );
  }
  return parseListBlobs(r.body);
};
