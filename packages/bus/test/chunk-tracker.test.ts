import test from "ava";
import { startNatsServer } from "@hsmfleet/testkit";
import {
  ChunkTracker,
  ChunkTrackerUnavailableError,
  connectBus,
  ensureTopology,
} from "../src/index.js";

test("chunk tracker: concurrent completions lose no chunk; the file completes once and is counted by one item", async (t) => {
  const server = await startNatsServer();
  t.teardown(() => server.stop());
  const ncs = await Promise.all([1, 2, 3].map(() => connectBus({ servers: server.url })));
  t.teardown(() => Promise.all(ncs.map((nc) => nc.close())));
  const trackers = await Promise.all(
    ncs.map(async (nc) => new ChunkTracker((await ensureTopology(nc)).chunks)),
  );
  const key = ChunkTracker.key("job-1", Buffer.from([0x61, 0xff, 0x2f, 0x62]));
  t.regex(key, /^job-1\.[0-9a-f]{40}$/);
  const count = 30;
  const results = await Promise.all(
    Array.from({ length: count }, (_, i) => trackers[i % 3]!.complete(key, i, count, `chunk-${i}`)),
  );
  t.is(results.filter((r) => r.counts).length, 1, "exactly one item counts the file");
  t.true(
    results.some((r) => r.allDone),
    "the last completion sees the file complete",
  );
  // A redelivered chunk finds the file complete again; only the counting item counts again.
  const counting = results.findIndex((r) => r.counts);
  const again = await trackers[0]!.complete(key, counting, count, `chunk-${counting}`);
  t.deepEqual(again, { allDone: true, counts: true, allVerified: false });
  const other = (counting + 1) % count;
  t.deepEqual(await trackers[1]!.complete(key, other, count, `chunk-${other}`), {
    allDone: true,
    counts: false,
    allVerified: false,
  });
  await t.throwsAsync(trackers[0]!.complete(key, 3, count + 1, "x"), { instanceOf: RangeError });
  await t.throwsAsync(trackers[0]!.complete(key, count, count, "x"), { instanceOf: RangeError });
  await trackers[0]!.forget(key);
  t.deepEqual(await trackers[0]!.complete(key, 0, 2, "y"), {
    allDone: false,
    counts: false,
    allVerified: false,
  });
});

test("chunk tracker: a completion during a nats-server restart is retried until the KV answers; past the deadline it fails retryable (issue 14.9)", async (t) => {
  const server = await startNatsServer();
  t.teardown(() => server.stop());
  const nc = await connectBus({ servers: server.url });
  t.teardown(() => nc.close());
  const { chunks } = await ensureTopology(nc);
  const tracker = new ChunkTracker(chunks);
  const key = ChunkTracker.key("job-r", "big.bin");
  t.deepEqual(await tracker.complete(key, 0, 2, "c0"), {
    allDone: false,
    counts: false,
    allVerified: false,
  });
  server.kill("SIGKILL");
  await new Promise((r) => setTimeout(r, 200));
  const during = tracker.complete(key, 1, 2, "c1");
  await new Promise((r) => setTimeout(r, 4000));
  await server.restart();
  t.deepEqual(
    await during,
    { allDone: true, counts: true, allVerified: false },
    "recorded once the server is back",
  );
  server.kill("SIGKILL");
  await new Promise((r) => setTimeout(r, 200));
  const short = new ChunkTracker(chunks, { deadlineMs: 1500 });
  const err = await t.throwsAsync(short.complete(key, 1, 2, "c1"), {
    instanceOf: ChunkTrackerUnavailableError,
  });
  t.true(err?.retryable, "the chunk item is handed back, not failed");
  t.regex(err?.message ?? "", /record chunk 1 of 2 in the chunk tracker/);
});

test("chunk tracker: the file is all verified only when every chunk's last completion was verified", async (t) => {
  const server = await startNatsServer();
  t.teardown(() => server.stop());
  const nc = await connectBus({ servers: server.url });
  t.teardown(() => nc.close());
  const tracker = new ChunkTracker((await ensureTopology(nc)).chunks);
  const key = ChunkTracker.key("job-v", "big");
  t.deepEqual(await tracker.complete(key, 0, 3, "c0", true), {
    allDone: false,
    counts: false,
    allVerified: false,
  });
  t.deepEqual(await tracker.complete(key, 2, 3, "c2", false), {
    allDone: false,
    counts: false,
    allVerified: false,
  });
  t.deepEqual(
    await tracker.complete(key, 1, 3, "c1", true),
    { allDone: true, counts: true, allVerified: false },
    "chunk 2 was not verified",
  );
  // Chunk 2 redelivered and verified this time: the file is verified.
  t.deepEqual(await tracker.complete(key, 2, 3, "c2", true), {
    allDone: true,
    counts: false,
    allVerified: true,
  });
  // A later unverified redelivery of chunk 0 takes it back.
  t.deepEqual(await tracker.complete(key, 0, 3, "c0"), {
    allDone: true,
    counts: false,
    allVerified: false,
  });
  await tracker.forget(key);
});
