import test from "ava";
import type { ExecutionContext } from "ava";
import { connectBus, ensureTopology, jetstreamManager, openLedgerBucket } from "@hsmfleet/bus";
import type { NatsConnection } from "@hsmfleet/bus";
import { JobKind, newItemResult, newJobSpec, newJobStatus } from "@hsmfleet/protocol";
import type { JobStatus } from "@hsmfleet/protocol";
import { startNatsServer } from "@hsmfleet/testkit";
import { LedgerStore } from "../src/ledger-store.js";
import { ledgerDigest, ledgerPageOf } from "../src/result-ledger.js";

const bus = async (t: ExecutionContext): Promise<NatsConnection> => {
  const server = await startNatsServer();
  t.teardown(() => server.stop());
  const nc = await connectBus({ servers: server.url });
  t.teardown(() => nc.close());
  await ensureTopology(nc);
  return nc;
};

const job = (fields: Partial<JobStatus>): JobStatus =>
  newJobStatus(newJobSpec({ jobId: "job-1", kind: JobKind.Scan, root: Buffer.from("/r") }), fields);

const walk = (itemId: string, childIds: string[] = []) =>
  newItemResult({ jobId: "job-1", itemId, kind: "walk", children: childIds.length, childIds });

test("a coordinator killed while it saves resumes from the set its record refers to", async (t) => {
  const nc = await bus(t);
  const [store, ledger] = await LedgerStore.open(
    nc,
    job({ outstanding: ["root"], published: 1, resultsSeq: 0 }),
  );
  const kids = Array.from({ length: 1000 }, (_, i) => `kid-${i}`);
  ledger.accept(walk("root", kids));
  await store.save(ledger, 5);
  store.recordWritten(5); // the record now says resultsSeq 5
  for (const id of kids.slice(0, 400)) ledger.accept(walk(id));
  const second = await store.save(ledger, 9);
  t.true(second.pages <= 256 && second.bytes > 0);
  // Killed before the record at 9 was written: the record still says 5.
  const [, at5] = await LedgerStore.open(nc, job({ published: 1001, completed: 1, resultsSeq: 5 }));
  t.is(at5.size, 1000);
  t.true(at5.has("kid-0") && at5.has("kid-999") && !at5.has("root"));
  // Had the record at 9 been written, the resume takes that set.
  const [, at9] = await LedgerStore.open(
    nc,
    job({ published: 1001, completed: 401, resultsSeq: 9 }),
  );
  t.is(at9.size, 600);
  t.false(at9.has("kid-0"));
  t.true(at9.has("kid-400"));
  // The next save goes to the slot the record does not refer to (5 stays whole until then).
  for (const id of kids.slice(400)) ledger.accept(walk(id));
  await store.save(ledger, 12);
  const [, still5] = await LedgerStore.open(
    nc,
    job({ published: 1001, completed: 1, resultsSeq: 5 }),
  );
  t.is(still5.size, 1000, "a save never overwrites the set the record refers to");
  await store.remove(await jetstreamManager(nc));
  const err = await t.throwsAsync(
    LedgerStore.open(nc, job({ published: 1001, completed: 1, resultsSeq: 5 })),
  );
  t.regex(
    err.message,
    /job job-1 has 1000 outstanding work items but no saved ids at results sequence 5.*hsmfleet-ledger/,
  );
});

test("a record of the previous layout (ids in the record) resumes from them", async (t) => {
  const nc = await bus(t);
  const [, ledger] = await LedgerStore.open(
    nc,
    job({ outstanding: ["a", "b"], published: 3, completed: 1, resultsSeq: 7 }),
  );
  t.is(ledger.size, 2);
  t.true(ledger.has("a") && ledger.has("b"));
  t.deepEqual(ledger.accept(walk("a")), { counted: true });
});

/** The job's keys in the ledger bucket. */
const keysOf = async (nc: NatsConnection, jobId: string): Promise<string[]> => {
  const kv = await openLedgerBucket(nc);
  const keys: string[] = [];
  for await (const k of await kv.keys(`${jobId}.>`)) keys.push(k);
  return keys.sort();
};

test("a frontier of a few thousand ids is saved as one value, not a value per page (issue 22)", async (t) => {
  const nc = await bus(t);
  const [store, ledger] = await LedgerStore.open(
    nc,
    job({ outstanding: ["root"], published: 1, resultsSeq: 0 }),
  );
  // 3,000 ids land on all 256 pages (by their digest's first byte).
  const kids = Array.from({ length: 3000 }, (_, i) => `kid-${i}`);
  ledger.accept(walk("root", kids));
  const first = await store.save(ledger, 5);
  t.is(first.pages, 1, "one KV value for the whole frontier");
  t.true(first.bytes >= 3000 * 16 && first.bytes < 3000 * 16 + 200);
  store.recordWritten(5);
  t.deepEqual(await keysOf(nc, "job-1"), ["job-1.0.0", "job-1.0.head"]);
  for (const id of kids.slice(0, 10)) ledger.accept(walk(id));
  t.is((await store.save(ledger, 6)).pages, 1);
  store.recordWritten(6);
  const [, at6] = await LedgerStore.open(
    nc,
    job({ published: 3001, completed: 11, resultsSeq: 6 }),
  );
  t.is(at6.size, 2990);
  t.true(at6.has("kid-10") && at6.has("kid-2999") && !at6.has("kid-9"));
});

test("a frontier wider than a value takes more groups; a resume reads whichever split its slot has", async (t) => {
  const nc = await bus(t);
  const [store, ledger] = await LedgerStore.open(
    nc,
    job({ outstanding: ["root"], published: 1, resultsSeq: 0 }),
  );
  const kids = Array.from({ length: 20_000 }, (_, i) => `kid-${i}`);
  ledger.accept(walk("root", kids.slice(0, 4000)));
  t.is((await store.save(ledger, 1)).pages, 1);
  store.recordWritten(1);
  // Wider: ~20,000 ids need 8 groups of ~2,500 (4 would hold ~5,000 each, over 4,096).
  for (let k = 0; k < 4; k++)
    t.deepEqual(ledger.accept(walk(`kid-${k}`, kids.slice(4000 * (k + 1), 4000 * (k + 2)))), {
      counted: true,
    });
  const wide = await store.save(ledger, 2);
  t.is(wide.pages, 8);
  store.recordWritten(2);
  const [, at2] = await LedgerStore.open(
    nc,
    job({ published: 20_001, completed: 5, resultsSeq: 2 }),
  );
  t.is(at2.size, 19_996);
  t.true(at2.has("kid-4") && at2.has("kid-19999") && !at2.has("kid-3"));
  // Narrower again: one group, in the slot of sequence 1 (one group then too).
  for (const id of kids.slice(4, 17_000)) ledger.accept(walk(id));
  t.is((await store.save(ledger, 3)).pages, 1);
  store.recordWritten(3);
  const [, at3] = await LedgerStore.open(
    nc,
    job({ published: 20_001, completed: 17_001, resultsSeq: 3 }),
  );
  t.is(at3.size, 3000);
  t.true(at3.has("kid-17000") && !at3.has("kid-16999"));
  // The slot of sequence 2 was written in 8 groups: with one id changed, it is rewritten whole.
  ledger.accept(walk("kid-17000"));
  t.is((await store.save(ledger, 4)).pages, 1);
  store.recordWritten(4);
  const [, at4] = await LedgerStore.open(
    nc,
    job({ published: 20_001, completed: 17_002, resultsSeq: 4 }),
  );
  t.is(at4.size, 2999);
  t.true(at4.has("kid-19999") && !at4.has("kid-17000"));
});

test("a slot written a value a page (before groups) is read on resume", async (t) => {
  const nc = await bus(t);
  const kv = await openLedgerBucket(nc);
  const ids = ["a", "b", "c", "d"];
  const pages = new Map<number, string[]>();
  for (const id of ids) {
    const d = ledgerDigest(id);
    pages.set(ledgerPageOf(d), [...(pages.get(ledgerPageOf(d)) ?? []), d]);
  }
  for (const [n, ds] of pages) await kv.put(`job-1.1.${n}`, Buffer.from(ds.join(""), "latin1"));
  await kv.put(
    "job-1.1.head",
    Buffer.from(JSON.stringify({ resultsSeq: 8, count: 4, pages: [...pages.keys()] })),
  );
  const [store, ledger] = await LedgerStore.open(
    nc,
    job({ published: 5, completed: 1, resultsSeq: 8 }),
  );
  t.is(ledger.size, 4);
  t.true(ids.every((id) => ledger.has(id)));
  // The next save goes to the other slot, in groups; the one after rewrites slot 1 whole.
  ledger.accept(walk("a"));
  t.is((await store.save(ledger, 9)).pages, 1);
  store.recordWritten(9);
  ledger.accept(walk("b"));
  t.is((await store.save(ledger, 10)).pages, 1);
  store.recordWritten(10);
  const [, at10] = await LedgerStore.open(nc, job({ published: 5, completed: 3, resultsSeq: 10 }));
  t.is(at10.size, 2);
  t.true(at10.has("c") && at10.has("d"));
});
