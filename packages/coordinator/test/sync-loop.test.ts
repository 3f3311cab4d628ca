import test from "ava";
import {
  connectBus,
  ensureSyncTopology,
  ensureTopology,
  jetstream,
  sealHeaders,
} from "@hsmfleet/bus";
import {
  JobKind,
  decodeSyncBatch,
  emptySyncCounters,
  encodeSyncResult,
  newJobSpec,
  newJobStatus,
  syncSubjects,
} from "@hsmfleet/protocol";
import type { ChangeType, SyncBatch } from "@hsmfleet/protocol";
import { startNatsServer } from "@hsmfleet/testkit";
import type { ChangeCheckpoint, ChangeSource, SourceChange } from "../src/sync/change-source.js";
import { SyncLoop } from "../src/sync/sync-loop.js";
import { SyncState } from "../src/sync/sync-state.js";

/** A change source the test drives by hand. */
class HandSource implements ChangeSource {
  readonly name = "posix";
  #emit: (changes: SourceChange[]) => void = () => {};
  #next = 0;
  start(_: ChangeCheckpoint | undefined, emit: (c: SourceChange[]) => void): Promise<void> {
    this.#emit = emit;
    return Promise.resolve();
  }
  release(): Promise<void> {
    return Promise.resolve();
  }
  directories(): Buffer[] {
    return [];
  }
  stop(): Promise<void> {
    return Promise.resolve();
  }
  emit(...changes: Array<[ChangeType, string]>): void {
    this.#emit(
      changes.map(([type, rel]) => ({
        record: {
          source: "posix",
          index: String(++this.#next),
          type,
          time: Date.now(),
          flags: 0,
          target: "",
          parent: "",
          name: rel,
        },
        rel: Buffer.from(rel),
        isDir: false,
      })),
    );
  }
}

const waitUntil = async (what: string, ok: () => boolean, timeoutMs = 60_000): Promise<void> => {
  const deadline = Date.now() + timeoutMs;
  while (!ok()) {
    if (Date.now() > deadline)
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
};

test("sync loop: a phase goes out while an earlier one is applied, but never with a path still in flight; the checkpoint stays before the oldest record in flight", async (t) => {
  const server = await startNatsServer();
  t.teardown(() => server.stop());
  const nc = await connectBus({ servers: server.url });
  t.teardown(() => nc.close());
  await ensureTopology(nc);
  const { state: kv } = await ensureSyncTopology(nc);
  const job = newJobStatus(
    newJobSpec({
      jobId: "sync-looptest",
      kind: JobKind.Sync,
      root: Buffer.from("/nowhere"),
      createdAtMs: Date.now(),
      createdBy: "test",
      maxErrors: -1,
      container: "c",
      prefix: "",
    }),
  );
  const jobId = job.spec.jobId;
  // The checkpoints saved, with what was unanswered at that moment.
  const saved: Array<{ index: bigint; phase1Answered: boolean }> = [];
  let phase1Answered = false;
  class WatchedState extends SyncState {
    override async saveCheckpoint(source: string, c: ChangeCheckpoint): Promise<void> {
      saved.push({ index: c.index, phase1Answered });
      await super.saveCheckpoint(source, c);
    }
  }
  // A stand-in worker on the batch subject: keeps each batch, answers when the test says.
  const batches: Array<{ batch: SyncBatch; afterPhase1Answer: boolean }> = [];
  const sub = nc.subscribe(syncSubjects.batch(jobId), {
    callback: (_, msg) => {
      batches.push({ batch: decodeSyncBatch(msg.data), afterPhase1Answer: phase1Answered });
    },
  });
  t.teardown(() => sub.unsubscribe());
  const answer = async (batch: SyncBatch): Promise<void> => {
    const subject = syncSubjects.result(jobId);
    const data = encodeSyncResult({
      jobId,
      batchId: batch.batchId,
      workerId: "stand-in",
      counters: { ...emptySyncCounters(), filesExported: batch.ops.length },
      requeue: [],
      failures: [],
    });
    nc.publish(subject, data, { headers: sealHeaders(job.spec.itemKey, subject, data) });
    await nc.flush();
  };
  const paths = (b: SyncBatch) => b.ops.map((o) => o.path.toString()).sort();
  const source = new HandSource();
  const loop = new SyncLoop({
    nc,
    js: jetstream(nc),
    job,
    name: "looptest",
    root: "/nowhere",
    prefix: "",
    source,
    state: new WatchedState(kv, "looptest"),
    container: undefined,
    settleMs: 0,
    removeDelayMs: 60_000,
    noDelete: false,
    rescanIntervalMs: 3_600_000,
    opsPerItem: 100,
    maxPhaseOps: 5_000,
    maxPhasesInFlight: 4,
    itemTimeoutMs: 300_000,
    statusIntervalMs: 50,
    logger: undefined,
    onStatus: undefined,
  });
  const abort = new AbortController();
  const running = loop.run(abort.signal);
  t.teardown(() => abort.abort());
  await waitUntil("the loop running", () => loop.status().state === "running");

  source.emit(["CREAT", "a"], ["CREAT", "b"]); // records 1, 2
  await waitUntil("phase 1", () => batches.length === 1);
  t.deepEqual(paths(batches[0]!.batch), ["a", "b"]);
  // Phase 1 is not answered: c goes out at once; a (busy) waits for phase 1.
  source.emit(["CLOSE", "a"], ["CREAT", "c"]); // records 3, 4
  await waitUntil("phase 2", () => batches.length === 2);
  t.deepEqual(paths(batches[1]!.batch), ["c"]);
  await answer(batches[1]!.batch);
  await waitUntil("phase 2 folded", () => loop.status().filesExported === 1);
  phase1Answered = true;
  await answer(batches[0]!.batch);
  await waitUntil("phase 3", () => batches.length === 3);
  t.deepEqual(paths(batches[2]!.batch), ["a"]);
  t.true(batches[2]!.afterPhase1Answer, "a went out again only after its first phase ended");
  await answer(batches[2]!.batch);
  await waitUntil("checkpoint at record 4", () => loop.status().checkpoint["posix"] === "4");
  t.true(saved.length > 0);
  for (const s of saved)
    if (!s.phase1Answered && s.index >= 1n)
      t.fail(`checkpoint ${s.index} saved while record 1 was in flight`);
  t.deepEqual(
    saved.map((s) => s.index),
    [...saved.map((s) => s.index)].sort((x, y) => (x < y ? -1 : x > y ? 1 : 0)),
    "in order",
  );
  t.is(batches.length, 3);
  abort.abort();
  const final = await running;
  t.is(final.recordsApplied, 4);
});
