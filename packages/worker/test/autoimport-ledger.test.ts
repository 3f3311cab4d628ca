// The autoimport service's ledger of applied Service Bus message ids against a real nats-server:
// one KV entry per round, read back by a restarted service, forgotten past the dedupe window.
import test from "ava";
import type { ExecutionContext } from "ava";
import { Kvm } from "@nats-io/kv";
import { connectBus } from "@hsmfleet/bus";
import { startNatsServer } from "@hsmfleet/testkit";
import { AUTOIMPORT_BUCKET, AutoImportLedger } from "../src/autoimport/autoimport-ledger.js";

const setup = async (t: ExecutionContext) => {
  const server = await startNatsServer();
  t.teardown(() => server.stop());
  const nc = await connectBus({ servers: server.url });
  t.teardown(() => nc.close());
  const keys = async (prefix: string): Promise<string[]> => {
    const kv = await new Kvm(nc).open(AUTOIMPORT_BUCKET);
    const out: string[] = [];
    for await (const k of await kv.keys(`${prefix}>`)) out.push(k);
    return out;
  };
  return { nc, keys };
};

test("a round's message ids are one KV entry, and a restarted service finds them applied", async (t) => {
  const { nc, keys } = await setup(t);
  const first = await AutoImportLedger.open(nc, "svc");
  await first.loadApplied();
  const ids = Array.from({ length: 500 }, (_, i) => `msg-${i}`);
  t.deepEqual(await first.appliedAll(["msg-1"]), [false]);
  await first.markAppliedAll(ids.slice(0, 300));
  await first.markAppliedAll(ids.slice(300));
  await first.markAppliedAll([]);
  t.is((await keys("svc.r.")).length, 2, "one entry per round (none for an empty one)");
  t.deepEqual(await keys("svc.m."), [], "no entry per message");
  t.deepEqual(await first.appliedAll(["msg-0", "msg-499", "other"]), [true, true, false]);

  // A restart (kill -9 after the round's write): the ids are read back before the first receive.
  const second = await AutoImportLedger.open(nc, "svc");
  t.deepEqual(await second.appliedAll(["msg-0"]), [false], "not before loadApplied()");
  await second.loadApplied();
  t.deepEqual(
    await second.appliedAll(ids),
    ids.map(() => true),
  );
  t.deepEqual(await second.appliedAll(["msg-500", ""]), [false, false]);
  // Another service's ids are its own.
  const other = await AutoImportLedger.open(nc, "svc2");
  await other.loadApplied();
  t.deepEqual(await other.appliedAll(["msg-0"]), [false]);
});

test("message ids older than the dedupe window are forgotten and their rounds deleted", async (t) => {
  const { nc, keys } = await setup(t);
  const ledger = await AutoImportLedger.open(nc, "win", { dedupeWindowMs: 300 });
  await ledger.loadApplied();
  await ledger.markAppliedAll(["old-1", "old-2"]);
  await new Promise((r) => setTimeout(r, 500));
  // Writing a new round forgets the old one (in memory and in KV).
  await ledger.markAppliedAll(["new-1"]);
  t.deepEqual(await ledger.appliedAll(["old-1", "new-1"]), [false, true]);
  t.is((await keys("win.r.")).length, 1);
  await new Promise((r) => setTimeout(r, 500));
  // On open too: a restarted service past the window finds nothing.
  const restarted = await AutoImportLedger.open(nc, "win", { dedupeWindowMs: 300 });
  await restarted.loadApplied();
  t.deepEqual(await restarted.appliedAll(["new-1"]), [false]);
  t.deepEqual(await keys("win.r."), []);
});
