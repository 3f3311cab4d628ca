/**
 * A walk shard's worker dies after the shard's result (which declares its children) is published
 * and before all of those children are. The redelivery must publish exactly the children the
 * result declared, even though its own walk would now cut the batches differently: the files the
 * first attempt's published batches uploaded are skipped by the incremental compare.
 * Deterministic: the death is a hook throwing at that point, after the first batches' uploads
 * were seen on the storage (no timing luck).
 */
import { mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { BlobServiceClient } from "@azure/storage-blob";
import test from "ava";
import { parseStorageTarget } from "@hsmfleet/blob";
import { runExportJob, runVerifyJob } from "@hsmfleet/coordinator";
import { tempDir } from "@hsmfleet/testkit";
import type { WorkerHooks } from "@hsmfleet/worker";
import { startBus, startStorage, startWorkers, waitFor } from "./helpers.js";

const FILES = 8;
/** Children of the root's result published before the worker "dies". */
const PUBLISHED_BEFORE_DEATH = 3;

const blobNames = async (connectionString: string, container: string): Promise<Set<string>> => {
  const c = BlobServiceClient.fromConnectionString(connectionString).getContainerClient(container);
  const names = new Set<string>();
  if (!(await c.exists())) return names;
  for await (const b of c.listBlobsFlat()) names.add(b.name);
  return names;
};

const withTimeout = async <T>(p: Promise<T>, ms: number, what: string): Promise<T> => {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} did not finish in ${ms / 1000} s`)), ms);
  });
  try {
    return await Promise.race([p, timeout]);
  } finally {
    clearTimeout(timer);
  }
};

/**
 * Worker hooks that count the root shard's walks and make the worker "die" once: a throw before
 * the root's held child number PUBLISHED_BEFORE_DEATH, once the uploads of the children published
 * before it are seen in `container` (so the redelivery's compare skips those files).
 */
const dyingAtRoot = (connectionString: string, container: string, declaration: string) => {
  const state = { died: false, rootWalks: 0 };
  const hooks: WorkerHooks = {
    beforeWalkShard: (shard) => {
      if (shard.depth === 0) state.rootWalks++;
    },
    beforeHeldChild: async (shard, index) => {
      if (state.died || shard.depth !== 0 || index !== PUBLISHED_BEFORE_DEATH) return;
      await waitFor(
        `the uploads of the first ${PUBLISHED_BEFORE_DEATH} batches`,
        async () => (await blobNames(connectionString, container)).size >= PUBLISHED_BEFORE_DEATH,
        60_000,
      );
      state.died = true;
      throw new Error(`test: the worker dies between ${declaration} and its children`);
    },
  };
  return { state, hooks };
};

test("a walk shard killed between its result and its children: the redelivery publishes exactly the declared children, every file is exported", async (t) => {
  const dir = await tempDir();
  t.teardown(() => dir.cleanup());
  const root = join(dir.path, "tree");
  await mkdir(root);
  for (let i = 0; i < FILES; i++)
    await writeFile(join(root, `f${i}`), Buffer.alloc(1000 + i, 0x61 + i));
  const azurite = await startStorage(t);
  const storage = parseStorageTarget(azurite.connectionString)!;
  const { server, nc } = await startBus(t);
  const container = "killwindow";
  const { state, hooks } = dyingAtRoot(azurite.connectionString, container, "the result");
  await startWorkers(t, server.url, 1, hooks, { storage, retryDelayMs: 10 });
  const summary = await withTimeout(
    runExportJob({ nc, root, container, storage, batchMaxEntries: 1 }),
    90_000,
    "the export (outstanding children that nobody publishes)",
  );
  t.true(state.died, "the hook ran");
  const names = await blobNames(azurite.connectionString, container);
  t.deepEqual(
    [...names].sort(),
    Array.from({ length: FILES }, (_, i) => `f${i}`),
  );
  t.like(summary, { state: "succeeded", errors: 0, filesExported: FILES });
  // The redelivery found the first attempt's result and published its children: no second walk.
  t.is(state.rootWalks, 1);
  const verify = await runVerifyJob({ nc, root, container, storage, content: true });
  t.like(verify, { identical: true, differences: 0 });
});

test("a walk shard killed between a spawn notice and its children: the redelivery publishes the notice's children and walks the rest under ids of its own", async (t) => {
  // 300 files in batches of 1: the root's window fills at 256 children (a spawn notice).
  const files = 300;
  const dir = await tempDir();
  t.teardown(() => dir.cleanup());
  const root = join(dir.path, "tree");
  await mkdir(root);
  for (let i = 0; i < files; i++)
    await writeFile(join(root, `f${String(i).padStart(3, "0")}`), Buffer.alloc(100 + i, i % 256));
  const azurite = await startStorage(t);
  const storage = parseStorageTarget(azurite.connectionString)!;
  const { server, nc } = await startBus(t);
  const container = "killnotice";
  const { state, hooks } = dyingAtRoot(azurite.connectionString, container, "a spawn notice");
  await startWorkers(t, server.url, 1, hooks, { storage, retryDelayMs: 10 });
  const summary = await withTimeout(
    runExportJob({ nc, root, container, storage, batchMaxEntries: 1 }),
    120_000,
    "the export (outstanding children that nobody publishes)",
  );
  t.true(state.died, "the hook ran");
  t.is((await blobNames(azurite.connectionString, container)).size, files);
  // Each file exported once: the redelivery left out what the notice's batches hold.
  t.like(summary, { state: "succeeded", errors: 0, filesExported: files });
  t.is(state.rootWalks, 2);
  const verify = await runVerifyJob({ nc, root, container, storage, content: true });
  t.like(verify, { identical: true, differences: 0 });
});
