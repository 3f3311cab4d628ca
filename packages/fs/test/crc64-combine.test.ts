import { randomBytes } from "node:crypto";

import test from "ava";

import { crc64 } from "../src/crc64.js";
import { CRC64_X2N, crc64Combine, crc64MultModP, crc64OfParts } from "../src/crc64-combine.js";

test("crc64Combine of two parts equals the one-shot CRC64 of the whole buffer, at every kind of split", (t) => {
  const whole = randomBytes(3 * 1024 * 1024 + 7);
  const splits = [
    0,
    1,
    7,
    8,
    4095,
    4096,
    1024 * 1024,
    2 * 1024 * 1024 + 3,
    whole.length - 1,
    whole.length,
  ];
  const expected = crc64(whole);
  for (const at of splits) {
    const a = whole.subarray(0, at);
    const b = whole.subarray(at);
    t.is(crc64Combine(crc64(a), crc64(b), b.length), expected, `split at ${at}`);
  }
});

test("crc64OfParts of ranges in file order equals the one-shot CRC64 (uneven ranges, a last short one)", (t) => {
  const whole = randomBytes(5 * 1024 * 1024 + 12345);
  const sizes = [1024 * 1024, 1, 4 * 1024 - 1, 2 * 1024 * 1024, 65536];
  const parts: { crc: bigint; length: number }[] = [];
  let at = 0;
  for (let i = 0; at < whole.length; i++) {
    const n = Math.min(sizes[i % sizes.length]!, whole.length - at);
    parts.push({ crc: crc64(whole.subarray(at, at + n)), length: n });
    at += n;
  }
  t.true(parts.length > 5);
  t.is(crc64OfParts(parts), crc64(whole));
  t.is(crc64OfParts([]), 0n, "no bytes: the CRC64 of nothing");
  t.is(crc64(Buffer.alloc(0)), 0n);
});

test("crc64Combine: zero bytes of a second part leave the first CRC64; zeros and long lengths match the one-shot", (t) => {
  const a = randomBytes(1000);
  t.is(crc64Combine(crc64(a), 0n, 0), crc64(a));
  // A long run of zeros (a 64 MiB second part) exercises many squarings of the table.
  const zeros = Buffer.alloc(64 * 1024 * 1024);
  t.is(crc64Combine(crc64(a), crc64(zeros), zeros.length), crc64(Buffer.concat([a, zeros])));
});

test("crc64Combine detects one changed byte in one part", (t) => {
  const whole = randomBytes(1024 * 1024);
  const a = whole.subarray(0, 300_000);
  const b = Buffer.from(whole.subarray(300_000));
  b[12345] = b[12345]! ^ 0x01;
  t.not(crc64Combine(crc64(a), crc64(b), b.length), crc64(whole));
});

test("crc64Combine refuses lengths and values that are not a byte count and a CRC64", (t) => {
  t.throws(() => crc64Combine(0n, 0n, -1), { instanceOf: RangeError });
  t.throws(() => crc64Combine(0n, 0n, 1.5), { instanceOf: RangeError });
  t.throws(() => crc64Combine(-1n, 0n, 1), { instanceOf: RangeError });
  t.throws(() => crc64Combine(0n, 1n << 64n, 1), { instanceOf: RangeError });
});

test("the written-out table of x^(2^k) mod P is the one the squarings compute, for all 64 entries", (t) => {
  // x^1 in the reflected form is the second-highest bit; each next entry is the square of the last.
  let p = 1n << 62n;
  t.is(CRC64_X2N.length, 64);
  for (let k = 0; k < 64; k++) {
    t.is(CRC64_X2N[k], p, `x^(2^${k}) mod P`);
    p = crc64MultModP(p, p);
  }
  t.true(Object.isFrozen(CRC64_X2N));
});
