import test from "ava";
import { JobError } from "@hsmfleet/core";
import { JobKind, JobState, newJobSpec, newJobStatus } from "@hsmfleet/protocol";
import type { JobStatus } from "@hsmfleet/protocol";
import { startNatsServer } from "@hsmfleet/testkit";
import { JobStore, connectBus, ensureTopology } from "../src/index.js";

const job = (jobId: string): JobStatus =>
  newJobStatus(newJobSpec({ jobId, kind: JobKind.Scan, root: Buffer.from("/mnt/fs") }), {
    state: JobState.Pending,
  });

// A 3-node cluster with a node just killed leaves the job bucket's stream without a leader for a
// moment: a put there gets no responder ("jetstream is not enabled"). The same answer comes here
// from a bucket whose stream is gone and comes back half a second later (faults-cluster: a verify
// started right after the kill failed that way once its topology look-ups were shared).
test("JobStore.create rides out a job bucket that does not answer for a moment (no answer), and still refuses an id that exists", async (t) => {
  const server = await startNatsServer();
  t.teardown(() => server.stop());
  const nc = await connectBus({ servers: server.url });
  t.teardown(() => nc.close());
  const { jsm, jobs } = await ensureTopology(nc);
  const store = new JobStore(jobs);
  const stream = "KV_hsmfleet-jobs";
  const { config } = await jsm.streams.info(stream);
  await jsm.streams.delete(stream);
  const back = new Promise<void>((resolve, reject) =>
    setTimeout(() => {
      jsm.streams.add(config).then(() => resolve(), reject);
    }, 500),
  );
  await store.create(job("scan-during-election"));
  await back;
  t.is((await store.require("scan-during-election")).spec.jobId, "scan-during-election");
  const again = await t.throwsAsync(store.create(job("scan-during-election")));
  t.true(again instanceof JobError, String(again));
  t.regex(again.message, /already exists/);
});

// `hsmfleet jobs` and the tests list the records while a coordinator rewrites its job's record
// several times a second; a listing of the keys must end (it once waited ~10 minutes in CI).
test("JobStore.list ends with every job while the records are rewritten all the time", async (t) => {
  const server = await startNatsServer();
  t.teardown(() => server.stop());
  const nc = await connectBus({ servers: server.url });
  t.teardown(() => nc.close());
  const store = new JobStore((await ensureTopology(nc)).jobs);
  const ids = ["scan-a", "scan-b", "scan-c"];
  for (const id of ids) await store.create(job(id));
  let writing = true;
  const writer = (async () => {
    let n = 0;
    while (writing) await store.put(job(ids[n++ % ids.length]!));
  })();
  try {
    for (let i = 0; i < 150; i++) {
      const listed = await Promise.race([
        store.list(),
        new Promise<never>((_, reject) =>
          setTimeout(() => reject(new Error(`listing ${i} did not end in 20 s`)), 20_000),
        ),
      ]);
      t.deepEqual(listed.map((s) => s.spec.jobId).sort(), ids, `listing ${i}`);
    }
  } finally {
    writing = false;
    await writer;
  }
});
