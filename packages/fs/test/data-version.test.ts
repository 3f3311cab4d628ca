import test from "ava";

import { dataVersion, dataVersionIs } from "../src/index.js";

/** The definition (FNV-1a 64 over the little-endian bytes of size and mtime in ns), in BigInt. */
const reference = (size: bigint, mtimeNs: bigint): bigint => {
  let h = 0xcbf29ce484222325n;
  const mix = (v: bigint) => {
    for (let i = 0; i < 8; i++) {
      h ^= (v >> BigInt(i * 8)) & 0xffn;
      h = (h * 0x100000001b3n) & 0xffff_ffff_ffff_ffffn;
    }
  };
  mix(size);
  mix(mtimeNs);
  return h === 0n ? 1n : h;
};

const cases: Array<[number, number, number]> = [
  [0, 0, 0],
  [1, 1, 1],
  [4096, 1_796_523_836, 517_000_000],
  [2 ** 53 - 1, 2 ** 31 - 1, 999_999_999],
  [123_456_789_012, 4_102_444_800, 999_999_999], // after 2038, past 32 bits
  [7, -1, 999_999_999], // before 1970: mtime negative, two's complement bytes
  [7, -1_234_567_890, 5],
  [0, -(2 ** 40), 0],
];

test("dataVersion and dataVersionIs give the BigInt definition's value, negative mtimes too", (t) => {
  let seed = 42;
  const rnd = (n: number) => {
    seed = (seed * 1_103_515_245 + 12_345) % 2 ** 31;
    return Math.floor((seed / 2 ** 31) * n);
  };
  for (let i = 0; i < 2000; i++)
    cases.push([rnd(2 ** 40), rnd(2 ** 34) - 2 ** 33, rnd(1_000_000_000)]);
  for (const [size, sec, nsec] of cases) {
    const ns = BigInt(sec) * 1_000_000_000n + BigInt(nsec);
    const want = reference(BigInt(size), ns);
    t.is(dataVersion(BigInt(size), ns), want, `dataVersion(${size}, ${ns})`);
    t.true(dataVersionIs(size, sec, nsec, want), `dataVersionIs(${size}, ${sec}, ${nsec})`);
    t.false(
      dataVersionIs(size, sec, nsec, want ^ 1n),
      `dataVersionIs(${size}, ${sec}, ${nsec}) ^ 1`,
    );
    t.false(dataVersionIs(size + 1, sec, nsec, want), `size ${size} + 1`);
  }
});
