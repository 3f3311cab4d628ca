/**
 * CRC64 of a concatenation from the CRC64s of its parts: crc64Combine(crc64(a), crc64(b), b.length)
 * equals crc64(a ++ b), without the bytes. Pure arithmetic in GF(2)[x] modulo the CRC-64/NVME
 * polynomial (the one of crc64.ts and Azure's x-ms-content-crc64), as zlib's crc32_combine does
 * it: the CRC of `a` is moved past b.length zero bytes by multiplying it by x^(8·len) mod P
 * (square-and-multiply over a table of x^(2^k) mod P), then xored with the CRC of `b`; the
 * initial value and final xor (~0) cancel out in that form.
 *
 * What it is for: parts of one file checksummed apart — ranges written out of order, chunks
 * staged or downloaded by different workers — give the file's CRC64 in a few microseconds per
 * part (about 64 · log2(8·len) bigint shifts), to be recorded or compared with a recorded one.
 */

/** CRC-64/NVME, reflected (the bit for x^0 is the top bit of the 64-bit word). */
const POLY = 0x9a6c9329ac4bc9b5n;
const MASK = (1n << 64n) - 1n;
/** x^0 in the reflected form. */
const ONE = 1n << 63n;

/** a · b mod P (both reflected polynomials of degree < 64). */
const multModP = (a: bigint, b: bigint): bigint => {
  let m = ONE;
  let p = 0n;
  for (;;) {
    if ((a & m) !== 0n) {
      p ^= b;
      if ((a & (m - 1n)) === 0n) break;
    }
    m >>= 1n;
    b = (b & 1n) !== 0n ? (b >> 1n) ^ POLY : b >> 1n;
  }
  return p;
};

/** X2N[k] = x^(2^k) mod P, for every k a byte count below 2^61 needs (8·len < 2^64). */
const X2N: bigint[] = (() => {
  const table: bigint[] = [];
  let p = ONE >> 1n; // x^1
  for (let k = 0; k < 64; k++) {
    table.push(p);
    p = multModP(p, p);
  }
  return table;
})();

/** x^(n · 2^k) mod P. */
const x2nModP = (n: bigint, k: number): bigint => {
  let p = ONE;
  while (n > 0n) {
    if ((n & 1n) !== 0n) p = multModP(X2N[k]!, p);
    n >>= 1n;
    k++;
  }
  return p;
};

/**
 * The CRC64 of `a ++ b` from `crcA` = crc64(a), `crcB` = crc64(b) and `lengthB` = b.length (bytes;
 * a safe integer ≥ 0). `a` may be empty (crcA 0n, the CRC64 of no bytes).
 */
export const crc64Combine = (crcA: bigint, crcB: bigint, lengthB: number): bigint => {
  if (!Number.isSafeInteger(lengthB) || lengthB < 0)
    throw new RangeError(`CRC64 combine: length ${lengthB} is not a byte count`);
  if (crcA < 0n || crcA > MASK || crcB < 0n || crcB > MASK)
    throw new RangeError("CRC64 combine: a CRC64 is a 64-bit unsigned value");
  if (lengthB === 0) return crcA;
  return multModP(x2nModP(BigInt(lengthB), 3), crcA) ^ crcB;
};

/** One part of a whole: its CRC64 and its length in bytes. */
export interface Crc64Part {
  crc: bigint;
  length: number;
}

/** The CRC64 of the parts' bytes one after the other (file order); 0n for none. */
export const crc64OfParts = (parts: Iterable<Crc64Part>): bigint => {
  let crc = 0n;
  for (const part of parts) crc = crc64Combine(crc, part.crc, part.length);
  return crc;
};
