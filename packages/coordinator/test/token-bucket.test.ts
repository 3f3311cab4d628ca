import test from "ava";
import { TokenBucket } from "../src/index.js";

test("token bucket: a period's burst, then count / period", (t) => {
  let now = 0;
  const b = new TokenBucket({ count: 100, bytes: 0, periodMs: 2000 }, () => now);
  const files = Array.from({ length: 300 }, () => 10);
  t.is(b.take(files), 100);
  t.is(b.take(files), 0);
  t.is(b.waitMs(files.slice(0, 10)), 200);
  now += 200;
  t.is(b.take(files), 10);
  now += 10_000;
  t.is(b.take(files), 100, "never more than one period's worth");
});

test("token bucket: bytes per period; a file larger than a period goes alone when full", (t) => {
  let now = 0;
  const b = new TokenBucket({ count: 0, bytes: 1000, periodMs: 1000 }, () => now);
  t.is(b.take([400, 400, 400]), 2);
  t.is(b.available([400]), 0);
  now += 200;
  t.is(b.take([400]), 1);
  now += 1000;
  t.is(b.take([5000, 1]), 1, "the big file goes alone");
  t.is(b.available([1]), 0);
});
