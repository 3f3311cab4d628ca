import { setTimeout as sleep } from "node:timers/promises";
import test from "ava";
import { RangeBufferPool } from "../src/index.js";

test("a released buffer is handed out again for the same length, not for another", (t) => {
  const pool = new RangeBufferPool({ maxBytes: 1024, slabBytes: 0 });
  const a = pool.take(256);
  t.is(a.length, 256);
  pool.release(a);
  t.is(pool.freeBytes, 256);
  const other = pool.take(128);
  t.not(other.buffer, a.buffer);
  t.is(pool.take(256), a);
  t.is(pool.reused, 1);
  t.is(pool.freeBytes, 0);
});

test("the pool keeps at most maxBytes", (t) => {
  const pool = new RangeBufferPool({ maxBytes: 512, slabBytes: 0 });
  const bufs = [pool.take(256), pool.take(256), pool.take(256)];
  for (const b of bufs) pool.release(b);
  t.is(pool.freeBytes, 512);
});

test("buffers are cut from slabs: distinct, of the length asked for, slices kept within maxBytes", (t) => {
  const pool = new RangeBufferPool({ maxBytes: 1024, slabBytes: 2048 });
  const first = pool.take(256);
  // One slab of 1024 + 256 bytes at most: the slice handed out and 1024 bytes kept.
  t.is(first.length, 256);
  t.is(first.buffer.byteLength, 5 * 256);
  t.is(pool.freeBytes, 1024);
  const more = [1, 2, 3, 4].map(() => pool.take(256));
  t.is(pool.freeBytes, 0);
  t.is(pool.reused, 4);
  const all = [first, ...more];
  for (const b of all) t.is(b.buffer, first.buffer);
  t.deepEqual(new Set(all.map((b) => b.byteOffset)).size, 5, "no two buffers overlap");
  for (const [i, b] of all.entries()) b.fill(i);
  for (const [i, b] of all.entries()) t.true(b.every((x) => x === i));
  // The next one is a new slab; a length the slab cannot hold twice is a single allocation.
  t.not(pool.take(256).buffer, first.buffer);
  t.is(pool.take(1500).buffer.byteLength, 1500);
});

test("free buffers are dropped after the idle time", async (t) => {
  const pool = new RangeBufferPool({ maxBytes: 1024, idleMs: 20, slabBytes: 0 });
  pool.release(pool.take(256));
  t.is(pool.freeBytes, 256);
  await sleep(200);
  t.is(pool.freeBytes, 0);
  t.not(pool.take(256), undefined);
  t.is(pool.reused, 0);
});

test("bad sizes are refused", (t) => {
  t.throws(() => new RangeBufferPool({ maxBytes: -1 }), { instanceOf: RangeError });
  t.throws(() => new RangeBufferPool({ idleMs: 0 }), { instanceOf: RangeError });
  t.throws(() => new RangeBufferPool({ slabBytes: 1.5 }), { instanceOf: RangeError });
});
