import test from "ava";

import { formatNumber } from "../src/format-number.js";

test("formatNumber writes what toLocaleString('en-US', { maximumFractionDigits }) writes, for counts, rates and decimal halves", (t) => {
  const values = [
    0,
    -0,
    1,
    -1,
    7,
    999,
    1000,
    -1000,
    1234567,
    987654321012,
    0.5,
    1.5,
    2.5,
    -2.5,
    0.0005,
    1.0005,
    12.3456,
    999.9995,
    9.9995,
    0.9995,
    0.1 + 0.2,
    1e15,
    123456789.123,
    -0.0001,
    3e-7,
    2e21,
    Number.NaN,
    Number.POSITIVE_INFINITY,
    Number.NEGATIVE_INFINITY,
  ];
  // Spread over magnitudes, with a fixed generator so a failure can be run again.
  let seed = 17;
  const next = (): number => (seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
  for (let i = 0; i < 20_000; i++) {
    values.push((next() * 2 - 1) * 10 ** (Math.floor(next() * 16) - 4));
    values.push(Math.floor(next() * 1e12));
    values.push(Math.round(next() * 1e6) / 1000);
  }
  let mismatches = 0;
  for (const digits of [0, 1, 2, 3]) {
    for (const v of values) {
      const want = v.toLocaleString("en-US", { maximumFractionDigits: digits });
      const got = formatNumber(v, digits);
      if (got !== want && mismatches++ < 5)
        t.log(`${v} with ${digits} digits: ${got}, want ${want}`);
    }
  }
  t.is(mismatches, 0);
  t.is(formatNumber(1234567.891), "1,234,567.891");
  t.is(formatNumber(1234.5, 0), "1,235");
});
