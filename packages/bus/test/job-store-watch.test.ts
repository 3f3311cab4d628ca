import test from "ava";
import { JobKind, JobState, newJobSpec, newJobStatus } from "@hsmfleet/protocol";
import type { JobStatus } from "@hsmfleet/protocol";
import { startNatsServer } from "@hsmfleet/testkit";
import { JobStore, connectBus, ensureTopology } from "../src/index.js";

const job = (jobId: string, kind: JobKind, state: JobState): JobStatus =>
  newJobStatus(newJobSpec({ jobId, kind, root: Buffer.from("/mnt/fs") }), { state });

const waitFor = async (what: string, ok: () => boolean, timeoutMs = 30_000): Promise<void> => {
  const deadline = Date.now() + timeoutMs;
  while (!ok()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
};

test("watchAll with `want` passes on only the records it accepts, judged undecoded, then their updates", async (t) => {
  const server = await startNatsServer();
  t.teardown(() => server.stop());
  const nc = await connectBus({ servers: server.url });
  t.teardown(() => nc.close());
  const store = new JobStore((await ensureTopology(nc)).jobs);
  // A history: finished exports, a finished restore, one running restore.
  for (let i = 0; i < 20; i++)
    await store.create(job(`export-${i}`, JobKind.Export, JobState.Succeeded));
  await store.create(job("restore-old", JobKind.Restore, JobState.Succeeded));
  await store.create(job("restore-live", JobKind.Restore, JobState.Running));

  const judged: string[] = [];
  const seen: Array<[string, JobState]> = [];
  const watcher = await store.watchAll(
    (s) => seen.push([s.spec.jobId, s.state]),
    undefined,
    (r) => {
      judged.push(r.jobId);
      return r.kind === JobKind.Restore && r.state === JobState.Running;
    },
  );
  t.teardown(() => watcher.stop());
  await waitFor("the history replayed", () => judged.length === 22);
  t.deepEqual(seen, [["restore-live", JobState.Running]]);
  // An update of a wanted job arrives; an update the filter refuses does not.
  await store.put(job("export-3", JobKind.Export, JobState.Failed));
  await store.put(job("restore-next", JobKind.Restore, JobState.Running));
  await waitFor("the new restore", () => seen.length === 2);
  t.deepEqual(seen[1], ["restore-next", JobState.Running]);
  t.true(judged.includes("export-3"));
});
