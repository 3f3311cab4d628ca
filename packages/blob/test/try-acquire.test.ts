import test from "ava";
import { MemoryBudget, RequestSlots } from "../src/index.js";

test("MemoryBudget.tryAcquire takes memory only when acquire would grant it at once: never past a waiter, never over the limit", async (t) => {
  const budget = new MemoryBudget(10);
  t.true(budget.tryAcquire(6));
  t.is(budget.inUse, 6);
  t.false(budget.tryAcquire(6), "does not fit");
  const waiting = budget.acquire(6);
  t.is(budget.waiting, 1);
  t.false(budget.tryAcquire(1), "fits, but a waiter is first in line");
  budget.release(6);
  await waiting;
  t.is(budget.inUse, 6);
  t.false(budget.tryAcquire(0));
  t.false(budget.tryAcquire(-1));
  budget.release(6);
  t.is(budget.inUse, 0);
});

test("RequestSlots.tryAcquire takes a free slot without a promise, never past a waiter; its release counts like acquire's", async (t) => {
  const slots = new RequestSlots(1);
  const release = slots.tryAcquire();
  t.truthy(release);
  t.is(slots.tryAcquire(), undefined, "none free");
  const waiting = slots.acquire();
  release!({ bytes: 10, ok: true });
  const second = await waiting;
  t.is(slots.tryAcquire(), undefined, "taken by the waiter");
  second({ bytes: 5, ok: true });
  const ac = new AbortController();
  ac.abort();
  t.is(slots.tryAcquire(ac.signal), undefined, "an aborted signal takes nothing");
  const s = slots.sample();
  t.is(s.requests, 2);
  t.is(s.bytes, 15);
});
