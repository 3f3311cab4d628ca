import test from "ava";
import { HsmfleetError } from "@hsmfleet/core";
import {
  BLOCK_ID_RAW_LENGTH,
  MAX_BLOCK_SIZE_BYTES,
  MemoryBudget,
  blockIdFor,
  chooseBlockSize,
} from "../src/index.js";

const MiB = 1024 * 1024;
const TiB = 1024 * 1024 * MiB;

test("block ids: fixed length, distinct, decodable offset", (t) => {
  const offsets = [0, 1, 4 * MiB, 8 * MiB * 49_999, Number.MAX_SAFE_INTEGER];
  const ids = offsets.map(blockIdFor);
  t.is(new Set(ids).size, ids.length);
  for (const [i, id] of ids.entries()) {
    t.is(id.length, 64, "48 bytes → 64 base64 characters");
    t.false(id.includes("="));
    const raw = Buffer.from(id, "base64").toString("ascii");
    t.is(raw.length, BLOCK_ID_RAW_LENGTH);
    t.true(raw.startsWith("hsmfleet-blk-"));
    t.is(Number(raw.slice(13, 33)), offsets[i]!);
  }
  t.is(
    Buffer.from(blockIdFor(4 * MiB), "base64").toString(),
    "hsmfleet-blk-00000000000004194304...............",
  );
  t.throws(() => blockIdFor(-1), { instanceOf: RangeError });
  t.throws(() => blockIdFor(1.5), { instanceOf: RangeError });
});

test("block size: 8 MiB default, doubled until 50,000 blocks suffice, 4000 MiB at most", (t) => {
  t.is(chooseBlockSize(0), 8 * MiB);
  t.is(chooseBlockSize(100 * 1024 * MiB), 8 * MiB);
  t.is(chooseBlockSize(50_000 * 8 * MiB), 8 * MiB);
  t.is(chooseBlockSize(50_000 * 8 * MiB + 1), 16 * MiB);
  t.is(chooseBlockSize(TiB), 32 * MiB);
  t.is(chooseBlockSize(TiB, 4 * MiB), 32 * MiB);
  t.is(chooseBlockSize(10 * MiB, 4 * MiB), 4 * MiB);
  t.is(chooseBlockSize(100 * TiB), 4000 * MiB, "2048 MiB is too small, 4096 MiB is above the cap");
  t.is(chooseBlockSize(50_000 * MAX_BLOCK_SIZE_BYTES), MAX_BLOCK_SIZE_BYTES);
  const err = t.throws(() => chooseBlockSize(50_000 * MAX_BLOCK_SIZE_BYTES + 1), {
    instanceOf: HsmfleetError,
  });
  t.regex(err.message, /does not fit in a block blob \(at most 50000 blocks of 4000 MiB/);
  t.throws(() => chooseBlockSize(-1), { instanceOf: RangeError });
  t.throws(() => chooseBlockSize(1, 0), { instanceOf: RangeError });
  t.throws(() => chooseBlockSize(1, MAX_BLOCK_SIZE_BYTES + 1), { instanceOf: RangeError });
});

test("memory budget: waits for room, serves in order, lets one oversized request run alone", async (t) => {
  const budget = new MemoryBudget(100);
  await budget.acquire(60);
  await budget.acquire(40);
  t.is(budget.inUse, 100);
  const order: string[] = [];
  const a = budget.acquire(50).then(() => order.push("a50"));
  const b = budget.acquire(10).then(() => order.push("b10")); // fits later, but queued behind a
  await new Promise((r) => setImmediate(r));
  t.deepEqual(order, []);
  t.is(budget.waiting, 2);
  budget.release(40);
  await new Promise((r) => setImmediate(r));
  t.deepEqual(order, [], "a needs 50, only 40 free; b waits behind a (FIFO)");
  budget.release(60);
  await Promise.all([a, b]);
  t.deepEqual(order, ["a50", "b10"]);
  t.is(budget.inUse, 60);

  const big = budget.acquire(500); // larger than the limit: runs once nothing else is in use
  let bigDone = false;
  void big.then(() => (bigDone = true));
  await new Promise((r) => setImmediate(r));
  t.false(bigDone);
  budget.release(60);
  await big;
  t.is(budget.inUse, 500);
  budget.release(500);
  t.is(budget.inUse, 0);
  t.is(budget.peak, 500);
  await budget.acquire(0);
  t.throws(() => budget.release(1), { instanceOf: RangeError });
});

test("memory budget: an aborted wait leaves the queue and lets the next waiter in", async (t) => {
  const budget = new MemoryBudget(10);
  await budget.acquire(8);
  const ac = new AbortController();
  const blocked = budget.acquire(5, ac.signal);
  const next = budget.acquire(2);
  ac.abort(new Error("stop"));
  await t.throwsAsync(blocked, { message: "stop" });
  await next; // 8 + 2 fits once the 5-byte waiter is gone
  t.is(budget.inUse, 10);
  t.is(budget.waiting, 0);
  const reason = await budget.acquire(1, AbortSignal.abort()).then(
    () => undefined,
    (err: unknown) => err,
  );
  t.is((reason as DOMException).name, "AbortError");
  t.throws(() => new MemoryBudget(0), { instanceOf: RangeError });
});
