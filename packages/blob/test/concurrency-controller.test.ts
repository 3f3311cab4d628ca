import test from "ava";
import { ConcurrencyController, RequestSlots } from "../src/index.js";
import type { SlotSample } from "../src/index.js";

const MiB = 1024 * 1024;

/** A 2-second sample at `mibps` with 8 MiB requests of `latencyMs` each. */
const sample = (mibps: number, over: Partial<SlotSample> = {}): SlotSample => {
  const bytes = mibps * 2 * MiB;
  const requests = Math.max(1, Math.round(bytes / (8 * MiB)));
  return {
    elapsedMs: 2000,
    requests,
    bytes,
    latencyMsSum: requests * 500,
    throttled: 0,
    saturated: true,
    ...over,
  };
};

/** Feeds a sample, then the settling sample a change is followed by, like the driver does. */
const step = (c: ConcurrencyController, s: SlotSample): number => {
  const before = c.limit;
  const after = c.observe(s);
  if (after !== before) c.observe(s); // skipped: it mixes the old and the new level
  return c.limit;
};

test("grows while throughput rises with concurrency, and stays at the cap", (t) => {
  const c = new ConcurrencyController({ initial: 4, max: 64 });
  t.is(c.limit, 4);
  // Throughput proportional to concurrency: every raise pays.
  for (let i = 0; i < 10 && c.limit < 64; i++) step(c, sample(c.limit * 10));
  t.is(c.limit, 64);
  t.is(c.reason, "at-max");
  step(c, sample(640));
  t.is(c.limit, 64);
});

test("a raise that buys nothing is undone, and probing stops (azcopy's search)", (t) => {
  const c = new ConcurrencyController({ initial: 8, max: 256 });
  // The link is full at 16 requests: 100 MiB/s, no more.
  const speed = (n: number) => Math.min(n, 16) * 6.25;
  const seen = new Set<number>();
  for (let i = 0; i < 20; i++) seen.add(step(c, sample(speed(c.limit))));
  t.true(c.limit >= 16 && c.limit < 32, `settled at ${c.limit}`);
  t.is(c.reason, "stable");
  t.false(seen.has(256));
});

test("429 / 503 answers halve the concurrency, down to the minimum", (t) => {
  const c = new ConcurrencyController({ initial: 32, max: 64, min: 4 });
  t.is(c.observe(sample(100, { throttled: 3 })), 16);
  t.is(c.reason, "throttled");
  t.is(c.observe(sample(100, { throttled: 1 })), 8);
  t.is(c.observe(sample(100, { throttled: 1 })), 4);
  t.is(c.observe(sample(100, { throttled: 1 })), 4);
});

test("after throttling it holds, then probes again gently", (t) => {
  const c = new ConcurrencyController({ initial: 32, max: 64, reprobeAfterSamples: 5 });
  c.observe(sample(100, { throttled: 1 }));
  t.is(c.limit, 16);
  for (let i = 0; i < 5; i++) step(c, sample(100));
  t.is(c.limit, 16, "holds for the quiet stretch");
  step(c, sample(100));
  t.true(c.limit > 16 && c.limit <= 20, `probes ×1.2: ${c.limit}`);
});

test("latency that doubles at the same level and request size backs off by a quarter", (t) => {
  const c = new ConcurrencyController({ initial: 64, max: 64 });
  c.observe(sample(100)); // reference: 500 ms per request
  c.observe(sample(100, { latencyMsSum: 25 * 800 }));
  t.is(c.limit, 64, "1.6× is within the factor");
  t.is(c.observe(sample(100, { latencyMsSum: 25 * 1200 })), 48);
  t.is(c.reason, "latency");
});

test("idle samples and unsaturated slots do not move the level", (t) => {
  const c = new ConcurrencyController({ initial: 16, max: 64 });
  t.is(c.observe(sample(0, { requests: 0, bytes: 0 })), 16);
  t.is(c.observe(sample(50, { saturated: false })), 16);
  t.is(c.observe(sample(50, { saturated: false })), 16);
});

test("request slots: a lower limit holds new requests back until enough have finished", async (t) => {
  const slots = new RequestSlots(2);
  const a = await slots.acquire();
  const b = await slots.acquire();
  let third = false;
  const pending = slots.acquire().then((release) => {
    third = true;
    return release;
  });
  t.is(slots.waiting, 1);
  slots.setLimit(1);
  a({ bytes: 10, ok: true });
  await new Promise((r) => setImmediate(r));
  t.false(third, "2 → 1: one release is not enough");
  b({ bytes: 0, ok: false });
  const c = await pending;
  t.true(third);
  c({ bytes: 5, ok: true });
  const s = slots.sample();
  t.is(s.requests, 3);
  t.is(s.bytes, 15);
  t.true(s.saturated);
  t.false(slots.sample().saturated, "a new sample starts clean");
});
