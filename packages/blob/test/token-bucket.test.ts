import test from "ava";
import { TokenBucket } from "../src/index.js";
import type { Clock } from "../src/index.js";

/** A clock that moves only when told to; sleepers wake when it passes their time. */
class FakeClock implements Clock {
  #now = 0;
  readonly #sleepers: { at: number; wake: () => void }[] = [];

  now(): number {
    return this.#now;
  }

  sleep(ms: number, signal?: AbortSignal): Promise<void> {
    return new Promise((resolve, reject) => {
      const sleeper = { at: this.#now + ms, wake: resolve };
      this.#sleepers.push(sleeper);
      signal?.addEventListener("abort", () => {
        this.#sleepers.splice(this.#sleepers.indexOf(sleeper), 1);
        reject(new Error("aborted"));
      });
    });
  }

  /** Moves time on and lets the woken callers run. */
  async advance(ms: number): Promise<void> {
    this.#now += ms;
    for (const s of [...this.#sleepers]) {
      if (s.at <= this.#now) {
        this.#sleepers.splice(this.#sleepers.indexOf(s), 1);
        s.wake();
      }
    }
    await new Promise((r) => setImmediate(r));
  }
}

/** Starts take(n) and reports whether it has finished. */
const track = (p: Promise<void>) => {
  const state = { done: false };
  void p.then(() => (state.done = true));
  return state;
};

test("a full bucket gives its burst at once, then one token per 1/rate", async (t) => {
  const clock = new FakeClock();
  const bucket = new TokenBucket(10, { clock }); // burst 10
  for (let i = 0; i < 10; i++) await bucket.take(1);
  const eleventh = track(bucket.take(1));
  const twelfth = track(bucket.take(1));
  await clock.advance(99);
  t.false(eleventh.done);
  await clock.advance(1);
  t.true(eleventh.done, "the 11th token comes 100 ms later");
  t.false(twelfth.done, "callers are served in order");
  await clock.advance(100);
  t.true(twelfth.done);
  t.is(bucket.spent, 12);
});

test("a request larger than the burst waits until it is paid for, and the next one pays after it", async (t) => {
  const clock = new FakeClock();
  const bucket = new TokenBucket(1000, { clock }); // bytes/s, burst 1000
  const big = track(bucket.take(2500)); // 1500 short: 1.5 s
  const small = track(bucket.take(100)); // after the big one: 1.6 s
  await clock.advance(1499);
  t.false(big.done);
  await clock.advance(1);
  t.true(big.done);
  t.false(small.done);
  await clock.advance(100);
  t.true(small.done);
});

test("charge() leaves a debt that the next taker waits out", async (t) => {
  const clock = new FakeClock();
  const bucket = new TokenBucket(100, { clock, burst: 100 });
  bucket.charge(300); // balance −200
  const next = track(bucket.take(1));
  await clock.advance(2000);
  t.false(next.done, "−200 − 1 needs 2.01 s");
  await clock.advance(10);
  t.true(next.done);
  t.is(bucket.spent, 301);
});

test("setRate changes the pace from then on (the fleet grew)", async (t) => {
  const clock = new FakeClock();
  const bucket = new TokenBucket(10, { clock, burst: 1 });
  await bucket.take(1);
  bucket.setRate(5);
  const next = track(bucket.take(1));
  await clock.advance(199);
  t.false(next.done, "at 5/s a token takes 200 ms");
  await clock.advance(1);
  t.true(next.done);
});

test("an aborted wait gives its tokens back", async (t) => {
  const clock = new FakeClock();
  const bucket = new TokenBucket(10, { clock, burst: 1 });
  await bucket.take(1);
  const abort = new AbortController();
  const waiting = bucket.take(5, abort.signal);
  abort.abort();
  await t.throwsAsync(waiting);
  t.is(bucket.spent, 1);
  await clock.advance(100);
  t.is(Math.round(bucket.tokens), 1, "the balance is as if the aborted take never happened");
});

test("a rate must be positive", (t) => {
  t.throws(() => new TokenBucket(0), { instanceOf: RangeError });
  t.throws(() => new TokenBucket(Number.NaN), { instanceOf: RangeError });
});
