// The content of generated files: deterministic, so tests compare bytes without keeping them.
/**
 * Every file is a window into a per-seed pseudo-random pattern whose length is an odd prime, so
 * power-of-two sized blocks of one file never repeat each other. The window start and the first
 * 8 bytes (XOR) come from hashes of (seed, path), so files differ even when sizes match.
 */
const PATTERN_LEN = 1_048_573;
const HEADER_LEN = 8;
const patterns = new Map<number, Buffer>();

const mulberry32 = (seed: number): (() => number) => {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (t ^ (t >>> 14)) >>> 0;
  };
};

const patternFor = (seed: number): Buffer => {
  let pattern = patterns.get(seed);
  if (pattern === undefined) {
    const next = mulberry32(seed ^ 0x9e3779b9);
    const words = Math.ceil(PATTERN_LEN / 4);
    const full = Buffer.allocUnsafe(words * 4);
    for (let i = 0; i < words; i++) full.writeUInt32LE(next(), i * 4);
    pattern = full.subarray(0, PATTERN_LEN);
    if (patterns.size > 16) patterns.clear();
    patterns.set(seed, pattern);
  }
  return pattern;
};

const fmix32 = (h: number): number => {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
};

const pathHash = (salt: number, seed: number, path: Uint8Array): number => {
  let h = (0x811c9dc5 ^ Math.imul(salt, 0x9e3779b1) ^ fmix32(seed >>> 0)) >>> 0;
  for (let i = 0; i < path.length; i++) h = Math.imul(h ^ (path[i] ?? 0), 0x01000193);
  return fmix32(h ^ path.length);
};

interface ContentKey {
  pattern: Buffer;
  offset: number;
  header: Buffer;
}

export const contentKey = (seed: number, relPath: Uint8Array): ContentKey => {
  const header = Buffer.allocUnsafe(HEADER_LEN);
  header.writeUInt32LE(pathHash(2, seed, relPath), 0);
  header.writeUInt32LE(pathHash(3, seed, relPath), 4);
  return {
    pattern: patternFor(seed),
    offset: pathHash(1, seed, relPath) % PATTERN_LEN,
    header,
  };
};

export const fillRange = (key: ContentKey, start: number, end: number): Buffer => {
  const out = Buffer.allocUnsafe(end - start);
  let pos = (key.offset + start) % PATTERN_LEN;
  let written = 0;
  while (written < out.length) {
    const n = Math.min(PATTERN_LEN - pos, out.length - written);
    key.pattern.copy(out, written, pos, pos + n);
    written += n;
    pos = 0;
  }
  for (let i = start; i < Math.min(end, HEADER_LEN); i++) {
    out[i - start] = (out[i - start] ?? 0) ^ (key.header[i] ?? 0);
  }
  return out;
};

export const checkSize = (size: number): void => {
  if (!Number.isSafeInteger(size) || size < 0) throw new RangeError(`invalid size ${size}`);
};

/** Deterministic content of a generated file, so tests can compare bytes without keeping them. */
export function contentOf(seed: number, relPath: Buffer, size: number): Buffer {
  checkSize(size);
  return fillRange(contentKey(seed, relPath), 0, size);
}

/**
 * Bytes [start, end) of contentOf(seed, relPath, size), for comparing big files chunk by chunk.
 * Content does not depend on `size` beyond its length (a shorter file is a prefix of a longer one).
 */
export function contentRange(
  seed: number,
  relPath: Buffer,
  size: number,
  start: number,
  end: number,
): Buffer {
  checkSize(size);
  if (!(Number.isSafeInteger(start) && Number.isSafeInteger(end) && 0 <= start)) {
    throw new RangeError(`invalid range [${start}, ${end})`);
  }
  if (start > end || end > size)
    throw new RangeError(`range [${start}, ${end}) outside 0..${size}`);
  return fillRange(contentKey(seed, relPath), start, end);
}
