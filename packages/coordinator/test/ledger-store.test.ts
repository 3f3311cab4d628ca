import test from "ava";
import type { ExecutionContext } from "ava";
import { connectBus, ensureTopology, jetstreamManager } from "@hsmfleet/bus";
import type { NatsConnection } from "@hsmfleet/bus";
import { JobKind, newItemResult, newJobSpec, newJobStatus } from "@hsmfleet/protocol";
import type { JobStatus } from "@hsmfleet/protocol";
import { startNatsServer } from "@hsmfleet/testkit";
import { LedgerStore } from "../src/ledger-store.js";

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
