import test from "ava";
import Long from "long";

import { fromBigInt, toBigInt } from "../src/long.js";

const U64 = [0n, 1n, 0xffff_ffffn, 0x1_0000_0000n, 2n ** 53n + 1n, 2n ** 63n, 2n ** 64n - 1n];
const I64 = [0n, -1n, -(2n ** 63n), 2n ** 63n - 1n, -0x1_0000_0001n, 0x7fff_ffff_0000_0001n];

test("64-bit fields go to and from Long through their halves, exactly as through decimal text", (t) => {
  for (const v of U64) {
    const l = fromBigInt(v);
    t.true(l.equals(Long.fromString(v.toString(), true)), `u64 ${v}`);
    t.true(l.unsigned);
    t.is(toBigInt(l), v);
    t.is(toBigInt(Long.fromString(v.toString(), true)), v);
  }
  for (const v of I64) {
    const l = fromBigInt(v, false);
    t.true(l.equals(Long.fromString(v.toString(), false)), `i64 ${v}`);
    t.is(toBigInt(l), v);
  }
  // Negative into an unsigned field: two's complement, as before.
  t.true(fromBigInt(-1n).equals(Long.fromString("-1", true)));
  t.is(toBigInt(fromBigInt(-1n)), 2n ** 64n - 1n);
  t.is(toBigInt(7), 7n);
  t.is(toBigInt(null), 0n);
});
