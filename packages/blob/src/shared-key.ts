/**
 * Blob service Shared Key authorization (service version 2009-09-19 and later), as specified in
 * "Authorize with Shared Key" of the Azure Storage REST reference:
 *
 *   StringToSign = VERB \n Content-Encoding \n Content-Language \n Content-Length \n Content-MD5 \n
 *                  Content-Type \n Date \n If-Modified-Since \n If-Match \n If-None-Match \n
 *                  If-Unmodified-Since \n Range \n CanonicalizedHeaders CanonicalizedResource
 *
 * - Content-Length is empty when it is 0 (version 2015-02-21 and later); Date is empty because
 *   x-ms-date is sent.
 * - CanonicalizedHeaders: every x-ms-* header, name in lower case, sorted by name the way the
 *   service sorts (.NET en-US culture order: hyphens count only when the names are otherwise equal;
 *   the tables below are those of the Azure SDK's SharedKeyComparator, MIT licence), one
 *   "name:value\n" each, the value with leading white space removed.
 * - CanonicalizedResource: "/" account, the request path exactly as sent (percent-encoded), then
 *   per query parameter, in order of the lower-cased name, "\nname:decoded value".
 * The signature is the base64 HMAC-SHA256 of the UTF-8 string under the decoded account key.
 */
import { createHmac, createSecretKey, type KeyObject } from "node:crypto";

const table = (entries: ReadonlyArray<readonly [number, number]>): Uint32Array => {
  const t = new Uint32Array(128);
  for (const [i, v] of entries) t[i] = v;
  return t;
};

const letters = (base: readonly number[]): Array<[number, number]> =>
  base.flatMap((w, i) => [[65 + i, w] as [number, number], [97 + i, w] as [number, number]]);

/** Primary weights: punctuation, digits, letters (case-insensitive); '-' and '\'' have none. */
const LV0 = table([
  [33, 0x71c],
  [35, 0x71f],
  [36, 0x721],
  [37, 0x723],
  [38, 0x725],
  [42, 0x72d],
  [43, 0x803],
  [46, 0x733],
  ...[0xd03, 0xd1a, 0xd1c, 0xd1e, 0xd20, 0xd22, 0xd24, 0xd26, 0xd28, 0xd2a].map(
    (w, i) => [48 + i, w] as [number, number],
  ),
  ...letters([
    0xe02, 0xe09, 0xe0a, 0xe1a, 0xe21, 0xe23, 0xe25, 0xe2c, 0xe32, 0xe35, 0xe36, 0xe48, 0xe51,
    0xe70, 0xe7c, 0xe7e, 0xe89, 0xe8a, 0xe91, 0xe99, 0xe9f, 0xea2, 0xea4, 0xea6, 0xea7, 0xea9,
  ]),
  [94, 0x743],
  [95, 0x744],
  [96, 0x748],
  [124, 0x74c],
  [126, 0x750],
]);
/** Case weights: upper-case letters. */
const LV2 = table(Array.from({ length: 26 }, (_, i) => [65 + i, 0x12] as [number, number]));
/** Weights of the characters ignored at the first level. */
const LV4 = table([
  [39, 0x8012],
  [45, 0x8212],
]);
const TABLES = [LV0, LV2, LV4];

const weight = (t: Uint32Array, s: string, i: number): number =>
  i < s.length ? (t[s.charCodeAt(i)] ?? 0) : 0x1;

/** Whether header name `a` sorts before `b` in the service's order (both lower case, ASCII). */
const isLessThan = (a: string, b: string): boolean => {
  let level = 0;
  let i = 0;
  let j = 0;
  while (level < TABLES.length) {
    if (level === TABLES.length - 1 && i !== j) return i > j;
    const t = TABLES[level]!;
    const w1 = weight(t, a, i);
    const w2 = weight(t, b, j);
    if (w1 === 0x1 && w2 === 0x1) {
      i = 0;
      j = 0;
      level++;
    } else if (w1 === w2) {
      i++;
      j++;
    } else if (w1 === 0) {
      i++;
    } else if (w2 === 0) {
      j++;
    } else {
      return w1 < w2;
    }
  }
  return false;
};

/** Sort comparator of canonicalized header names (lower case). */
export const compareHeaderNames = (a: string, b: string): number =>
  a === b ? 0 : isLessThan(a, b) ? -1 : 1;

/** Headers of one request: lower-case names; a value that is undefined is not sent. */
export type SignedHeaders = Record<string, string | undefined>;

/** The standard headers of the string to sign, in its order. */
const STANDARD = [
  "content-encoding",
  "content-language",
  "content-length",
  "content-md5",
  "content-type",
  "date",
  "if-modified-since",
  "if-match",
  "if-none-match",
  "if-unmodified-since",
  "range",
] as const;

/** x-ms-* header names of a request in canonical order (cached per set of names). */
const orderCache = new Map<string, string[]>();
const ORDER_CACHE_MAX = 256;

const canonicalOrder = (headers: SignedHeaders): string[] => {
  let key = "";
  for (const name in headers) if (name.startsWith("x-ms-")) key += `${name}\n`;
  let order = orderCache.get(key);
  if (order === undefined) {
    order = key === "" ? [] : key.slice(0, -1).split("\n").sort(compareHeaderNames);
    if (orderCache.size >= ORDER_CACHE_MAX) orderCache.clear();
    orderCache.set(key, order);
  }
  return order;
};

/**
 * The Shared Key string to sign of a request. `path` is the URL path as sent (percent-encoded,
 * starting with '/'); `query` the decoded query parameters; `headers` lower-case names.
 */
export const sharedKeyStringToSign = (
  accountName: string,
  method: string,
  path: string,
  query: ReadonlyArray<readonly [string, string]>,
  headers: SignedHeaders,
): string => {
  let s = method.toUpperCase();
  for (const name of STANDARD) {
    const v = headers[name];
    s += `\n${v === undefined || (name === "content-length" && v === "0") ? "" : v}`;
  }
  s += "\n";
  for (const name of canonicalOrder(headers)) {
    const v = headers[name];
    if (v !== undefined) s += `${name}:${v.trimStart()}\n`;
  }
  s += `/${accountName}${path === "" ? "/" : path}`;
  if (query.length > 0) {
    const byName = new Map<string, string[]>();
    for (const [k, v] of query) {
      const name = k.toLowerCase();
      const list = byName.get(name);
      if (list === undefined) byName.set(name, [v]);
      else list.push(v);
    }
    for (const name of [...byName.keys()].sort()) {
      s += `\n${name}:${byName.get(name)!.sort().join(",")}`;
    }
  }
  return s;
};

/** Signs requests for one account: `SharedKey <account>:<signature>`. */
export class SharedKeySigner {
  readonly accountName: string;
  readonly #key: KeyObject;

  /** `accountKey` is the base64 key of the connection string. */
  constructor(accountName: string, accountKey: string) {
    this.accountName = accountName;
    this.#key = createSecretKey(Buffer.from(accountKey, "base64"));
  }

  /** The Authorization header value for a request (see sharedKeyStringToSign). */
  authorization(
    method: string,
    path: string,
    query: ReadonlyArray<readonly [string, string]>,
    headers: SignedHeaders,
  ): string {
    const toSign = sharedKeyStringToSign(this.accountName, method, path, query, headers);
    const sig = createHmac("sha256", this.#key).update(toSign, "utf8").digest("base64");
    return `SharedKey ${this.accountName}:${sig}`;
  }
}
