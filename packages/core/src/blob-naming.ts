/**
 * Blob names in the AMLFS layout, and the reversible escape for paths a blob name cannot carry.
 *
 * Layout: blob name = optional prefix + '/' + path relative to the exported root, '/'-separated,
 * no leading '/'. Azure limits a name to 1,024 characters and 254 path segments.
 *
 * Escape ("PUA byte escape", in the spirit of OPTU-8). A path that is valid UTF-8 without special
 * characters is used as-is, so names match what AMLFS and azcopy write. Otherwise each offending
 * BYTE b is written as the private-use character U+EF00 + b. Offending bytes are:
 *   (a) every byte of an invalid UTF-8 sequence (strict UTF-8: no overlong forms, no surrogates,
 *       nothing above U+10FFFF);
 *   (b) control characters 0x00–0x1F and 0x7F;
 *   (c) backslash 0x5C (Azurite and some tools turn '\' into '/');
 *   (d) a '.' that ends a path segment (Azure drops trailing dots; only the last one is escaped,
 *       so "a.." becomes "a.\uEF2E");
 *   (e) every byte of a character that is itself in U+EF00–U+EFFF, so decoding is unambiguous.
 * Decoding maps every character in U+EF00–U+EFFF back to one byte and every other character to
 * its UTF-8 bytes. The encoding is therefore exactly reversible for every POSIX path.
 * See docs/blob-format.md.
 */
import { HsmfleetError, UsageError } from "./errors.js";
import { displayPath } from "./path-bytes.js";

export const BLOB_NAME_MAX_CHARS = 1024;
export const BLOB_NAME_MAX_SEGMENTS = 254;
/** First character of the escape range; byte b is written as U+EF00 + b. */
export const BLOB_NAME_ESCAPE_BASE = 0xef00;

export type BlobNameErrorReason = "too-long" | "too-many-segments" | "empty" | "unsafe";

/** A path that cannot become a blob name, or a blob name that cannot become a safe path. */
export class BlobNameError extends HsmfleetError {
  readonly reason: BlobNameErrorReason;
  /** Printable form of the offending path (export) or blob name (import). */
  readonly path: string;
  constructor(reason: BlobNameErrorReason, path: string, message: string) {
    super(message);
    this.name = "BlobNameError";
    this.reason = reason;
    this.path = path;
  }
}

const SLASH = 0x2f;
const DOT = 0x2e;
const BACKSLASH = 0x5c;

/**
 * Length of the strictly valid UTF-8 sequence starting at `i` (1–4), or 0 when the byte at `i`
 * does not start one. Sequences never extend past `end`.
 */
const utf8SequenceLength = (bytes: Buffer, i: number, end: number): number => {
  const b0 = bytes[i]!;
  if (b0 < 0x80) return 1;
  const cont = (k: number, lo = 0x80, hi = 0xbf): boolean => {
    if (i + k >= end) return false;
    const b = bytes[i + k]!;
    return b >= lo && b <= hi;
  };
  if (b0 >= 0xc2 && b0 <= 0xdf) return cont(1) ? 2 : 0;
  if (b0 >= 0xe0 && b0 <= 0xef) {
    const lo = b0 === 0xe0 ? 0xa0 : 0x80;
    const hi = b0 === 0xed ? 0x9f : 0xbf;
    return cont(1, lo, hi) && cont(2) ? 3 : 0;
  }
  if (b0 >= 0xf0 && b0 <= 0xf4) {
    const lo = b0 === 0xf0 ? 0x90 : 0x80;
    const hi = b0 === 0xf4 ? 0x8f : 0xbf;
    return cont(1, lo, hi) && cont(2) && cont(3) ? 4 : 0;
  }
  return 0;
};

const escapeByte = (b: number): string => String.fromCharCode(BLOB_NAME_ESCAPE_BASE + b);

/** True for the UTF-8 encoding of U+EF00–U+EFFF: EE BC 80 … EE BF BF. */
const isEscapeRangeChar = (bytes: Buffer, i: number): boolean =>
  bytes[i] === 0xee && bytes[i + 1]! >= 0xbc && bytes[i + 1]! <= 0xbf;

/**
 * (f) U+FFFE and U+FFFF (EF BF BE/BF): valid UTF-8, but noncharacters that break listings (Azurite
 * answers 500 for a container holding one); escaped byte by byte like (e).
 */
const isNonCharacter = (bytes: Buffer, i: number): boolean =>
  bytes[i] === 0xef && bytes[i + 1] === 0xbf && (bytes[i + 2] === 0xbe || bytes[i + 2] === 0xbf);

/** Encodes bytes [start, end) of one path segment. */
const encodeSegment = (bytes: Buffer, start: number, end: number): string => {
  // (d): a trailing '.' is escaped; '.' is ASCII so it is never part of a longer sequence.
  const trailingDot = end > start && bytes[end - 1] === DOT;
  const stop = trailingDot ? end - 1 : end;
  let out = "";
  let run = start;
  let i = start;
  while (i < stop) {
    const b = bytes[i]!;
    const n = utf8SequenceLength(bytes, i, stop);
    let escape = 0; // number of bytes to escape at i
    if (n === 0) escape = 1;
    else if (n === 1) escape = b < 0x20 || b === 0x7f || b === BACKSLASH ? 1 : 0;
    else if (n === 3 && (isEscapeRangeChar(bytes, i) || isNonCharacter(bytes, i))) escape = 3;
    if (escape === 0) {
      i += n;
      continue;
    }
    if (run < i) out += bytes.toString("utf8", run, i);
    for (let k = 0; k < escape; k++) out += escapeByte(bytes[i + k]!);
    i += escape;
    run = i;
  }
  if (run < stop) out += bytes.toString("utf8", run, stop);
  if (trailingDot) out += escapeByte(DOT);
  return out;
};

/** True when no byte of `bytes` needs the escape and no segment ends with '.'. */
const isPlainAscii = (bytes: Buffer): boolean => {
  for (let i = 0; i < bytes.length; i++) {
    const b = bytes[i]!;
    if (b < 0x20 || b >= 0x7f || b === BACKSLASH) return false;
    if (b === DOT && (i + 1 === bytes.length || bytes[i + 1] === SLASH)) return false;
  }
  return true;
};

const SEGMENT_HINT = "paths must be relative, without empty, '.' or '..' segments";

/**
 * Normalizes a blob-name prefix: "" and undefined mean none; leading and trailing '/' are removed
 * ("/a/b/" → "a/b"). Throws UsageError for a prefix with empty, '.' or '..' segments, a segment
 * ending in '.', backslashes or control characters (Azure or the escape would not keep it).
 */
export const normalizePrefix = (prefix: string | undefined): string => {
  if (prefix === undefined || prefix === "") return "";
  // Every entry of a job names the same prefix: the last one checked is remembered.
  if (prefix === lastPrefix.given) return lastPrefix.normalized;
  const normalized = checkPrefix(prefix);
  lastPrefix = { given: prefix, normalized };
  return normalized;
};

let lastPrefix = { given: "", normalized: "" };

const checkPrefix = (prefix: string): string => {
  const trimmed = prefix.replace(/^\/+/, "").replace(/\/+$/, "");
  if (trimmed === "") return "";
  for (const segment of trimmed.split("/")) {
    if (segment === "" || segment === "." || segment === "..") {
      throw new UsageError(`blob prefix "${prefix}" is not valid: ${SEGMENT_HINT}`);
    }
    if (segment.endsWith(".")) {
      throw new UsageError(
        `blob prefix "${prefix}" is not valid: segment "${segment}" ends with '.', which Azure drops`,
      );
    }
    // eslint-disable-next-line no-control-regex
    if (/[\x00-\x1f\x7f\\]/.test(segment) || /[\uef00-\uefff]/.test(segment)) {
      throw new UsageError(
        `blob prefix "${displayPath(Buffer.from(prefix))}" is not valid: no control characters, backslashes or U+EF00–U+EFFF`,
      );
    }
  }
  return trimmed;
};

const countSegments = (name: string): number => {
  let n = 1;
  for (let i = 0; i < name.length; i++) if (name.charCodeAt(i) === SLASH) n++;
  return n;
};

/**
 * Blob name of a root-relative path. `relPath`: raw path bytes, '/'-separated, no leading '/'.
 * Throws BlobNameError: "empty" for the root itself, "unsafe" for empty, '.' or '..' segments,
 * "too-long" above BLOB_NAME_MAX_CHARS (UTF-16 code units of the whole name, prefix included) and
 * "too-many-segments" above BLOB_NAME_MAX_SEGMENTS.
 */
export const blobNameForPath = (relPath: Buffer, prefix?: string): string => {
  const pre = normalizePrefix(prefix);
  if (relPath.length === 0) {
    throw new BlobNameError("empty", "", "the root of an export has no blob name of its own");
  }
  let encoded: string;
  if (isPlainAscii(relPath)) {
    encoded = relPath.toString("latin1");
    // '.' and '..' segments end with '.', so they never take this path.
    if (relPath[0] === SLASH || relPath[relPath.length - 1] === SLASH || encoded.includes("//"))
      throw unsafePath(relPath);
  } else {
    const parts: string[] = [];
    let start = 0;
    for (let i = 0; i <= relPath.length; i++) {
      if (i < relPath.length && relPath[i] !== SLASH) continue;
      const len = i - start;
      if (
        len === 0 ||
        (len === 1 && relPath[start] === DOT) ||
        (len === 2 && relPath[start] === DOT && relPath[start + 1] === DOT)
      ) {
        throw unsafePath(relPath);
      }
      parts.push(encodeSegment(relPath, start, i));
      start = i + 1;
    }
    encoded = parts.join("/");
  }
  const name = pre === "" ? encoded : `${pre}/${encoded}`;
  if (name.length > BLOB_NAME_MAX_CHARS) {
    const shown = displayPath(relPath);
    throw new BlobNameError(
      "too-long",
      shown,
      `${shown}: blob name would be ${name.length} characters; Azure allows at most ${BLOB_NAME_MAX_CHARS}`,
    );
  }
  const segments = countSegments(name);
  if (segments > BLOB_NAME_MAX_SEGMENTS) {
    const shown = displayPath(relPath);
    throw new BlobNameError(
      "too-many-segments",
      shown,
      `${shown}: blob name would have ${segments} path segments; Azure allows at most ${BLOB_NAME_MAX_SEGMENTS}`,
    );
  }
  return name;
};

const unsafePath = (relPath: Buffer): BlobNameError => {
  const shown = displayPath(relPath);
  return new BlobNameError("unsafe", shown, `${shown}: not a blob path (${SEGMENT_HINT})`);
};

const unsafeName = (name: string, why: string): BlobNameError => {
  const shown = displayPath(Buffer.from(name, "utf8"));
  return new BlobNameError("unsafe", shown, `blob "${shown}" cannot be imported: ${why}`);
};

/** Decodes one segment of a blob name; undefined when it holds a lone surrogate. */
const decodeSegment = (segment: string): Buffer | undefined => {
  const chunks: Buffer[] = [];
  let run = 0;
  const escaped: number[] = [];
  const flushEscaped = (): void => {
    if (escaped.length > 0) chunks.push(Buffer.from(escaped.splice(0)));
  };
  for (let i = 0; i < segment.length; i++) {
    const c = segment.charCodeAt(i);
    if (c >= 0xd800 && c <= 0xdfff) {
      const high = c <= 0xdbff;
      const next = segment.charCodeAt(i + 1);
      if (!high || !(next >= 0xdc00 && next <= 0xdfff)) return undefined;
      i++; // well-formed pair: part of the literal run
      continue;
    }
    if (c >= BLOB_NAME_ESCAPE_BASE && c <= BLOB_NAME_ESCAPE_BASE + 0xff) {
      if (run < i) {
        flushEscaped();
        chunks.push(Buffer.from(segment.slice(run, i), "utf8"));
      }
      escaped.push(c - BLOB_NAME_ESCAPE_BASE);
      run = i + 1;
    }
  }
  if (run < segment.length) {
    flushEscaped();
    chunks.push(Buffer.from(segment.slice(run), "utf8"));
  }
  flushEscaped();
  return Buffer.concat(chunks);
};

/**
 * Inverse of blobNameForPath, for import: blob name (under `prefix`) → safe relative path bytes.
 * A trailing '/' (directory stubs written as "dir/") is stripped first. Throws BlobNameError:
 * "empty" for the prefix itself, "unsafe" for a name outside the prefix, a leading '/', empty
 * segments ("a//b"), '.' or '..' segments (literal or after un-escaping), a literal '\' (a
 * separator attempt), NUL or '/' bytes after un-escaping, or a lone UTF-16 surrogate.
 */
export const pathForBlobName = (name: string, prefix?: string): Buffer => {
  const pre = normalizePrefix(prefix);
  let rel = name;
  if (pre !== "") {
    if (name === pre || name === `${pre}/`) {
      throw new BlobNameError("empty", pre, `blob "${name}" is the prefix itself, not a path`);
    }
    if (!name.startsWith(`${pre}/`)) throw unsafeName(name, `it is not under prefix "${pre}/"`);
    rel = name.slice(pre.length + 1);
  }
  if (rel.endsWith("/")) rel = rel.slice(0, -1);
  if (rel === "") throw new BlobNameError("empty", "", "an empty blob name is not a path");
  if (rel.startsWith("/")) throw unsafeName(name, "it is an absolute path");
  const out: Buffer[] = [];
  for (const segment of rel.split("/")) {
    if (segment === "") throw unsafeName(name, "it has an empty path segment");
    if (segment === "." || segment === "..") {
      throw unsafeName(name, `it has a '${segment}' segment`);
    }
    if (segment.includes("\\")) throw unsafeName(name, "it contains a backslash");
    const bytes = decodeSegment(segment);
    if (bytes === undefined) throw unsafeName(name, "it is not valid Unicode");
    if (bytes.length === 1 && bytes[0] === DOT) throw unsafeName(name, "a segment decodes to '.'");
    if (bytes.length === 2 && bytes[0] === DOT && bytes[1] === DOT) {
      throw unsafeName(name, "a segment decodes to '..'");
    }
    if (bytes.includes(0)) throw unsafeName(name, "it decodes to a NUL byte");
    if (bytes.includes(SLASH)) throw unsafeName(name, "a segment decodes to a '/'");
    out.push(bytes);
  }
  const joined: Buffer[] = [];
  out.forEach((b, i) => {
    if (i > 0) joined.push(Buffer.from([SLASH]));
    joined.push(b);
  });
  return Buffer.concat(joined);
};
