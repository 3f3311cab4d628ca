import { createHash } from "node:crypto";
import { mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import test from "ava";
import { BlobServiceClient } from "@azure/storage-blob";
import { blockListFor, parseStorageTarget } from "@hsmfleet/blob";
import { formatModtime } from "@hsmfleet/core";
import { runExportJob } from "@hsmfleet/coordinator";
import { decodeWorkerHeartbeat, subjects } from "@hsmfleet/protocol";
import { contentOf, tempDir } from "@hsmfleet/testkit";
import { spawnCli, startBus, startStorage, startWorkers } from "./helpers.js";

const MiB = 1024 * 1024;
const md5 = (b: Buffer) => createHash("md5").update(b).digest("hex");

test("a file larger than --chunk-size is staged in chunks by two workers and committed once; the blob is byte-identical", async (t) => {
  const dir = await tempDir();
  t.teardown(() => dir.cleanup());
  const root = join(dir.path, "tree");
  await mkdir(root);
  const data = contentOf(5, Buffer.from("chunked"), 40 * MiB + 1234);
  await writeFile(join(root, "big.bin"), data);
  await writeFile(join(root, "small.bin"), "small");
  const azurite = await startStorage(t);
  const storage = parseStorageTarget(azurite.connectionString)!;
  const { server, nc } = await startBus(t);
  const workers = await startWorkers(t, server.url, 2, undefined, { storage });
  const summary = await runExportJob({
    nc,
    root,
    container: "chunked",
    storage,
    blockSizeBytes: 2 * MiB,
    chunkSizeBytes: 8 * MiB,
  });
  t.deepEqual(summary.errorSamples, []);
  // Counted once although 6 chunk items reported (the tracker names one of them).
  t.like(summary, { state: "succeeded", errors: 0, filesExported: 2, bytes: data.length + 5 });
  t.true(
    workers.every((w) => w.stats.itemsDone > 0),
    "both workers took items",
  );
  const blob = BlobServiceClient.fromConnectionString(azurite.connectionString)
    .getContainerClient("chunked")
    .getBlockBlobClient("big.bin");
  t.is(md5(await blob.downloadToBuffer()), md5(data), "byte-identical");
  const list = await blob.getBlockList("committed");
  t.deepEqual(
    list.committedBlocks?.map((b) => b.name),
    blockListFor(data.length, 2 * MiB),
    "the committed blocks are the file's blocks in order",
  );
  const props = await blob.getProperties();
  t.is(props.contentLength, data.length);
  t.is(props.metadata?.permissions, "0644");
  t.truthy(props.metadata?.modtime);
  t.not(props.metadata?.modtime, formatModtime(0));
});

test("a worker killed mid-file: the chunks it held are redelivered and the blob is byte-identical", async (t) => {
  const dir = await tempDir();
  t.teardown(() => dir.cleanup());
  const root = join(dir.path, "tree");
  await mkdir(root);
  const data = contentOf(6, Buffer.from("killed"), 40 * MiB);
  await writeFile(join(root, "big.bin"), data);
  const azurite = await startStorage(t);
  const storage = parseStorageTarget(azurite.connectionString)!;
  const { server, nc } = await startBus(t);
  const victim = spawnCli(["--nats", server.url, "worker", "--vm-name", "victim"], {
    env: { AZURE_STORAGE_CONNECTION_STRING: azurite.connectionString },
  });
  t.teardown(() => {
    victim.kill("SIGKILL");
  });
  let victimBytes = 0;
  const hb = nc.subscribe(subjects.heartbeatAll, {
    callback: (_err, msg) => {
      const beat = decodeWorkerHeartbeat(msg.data);
      if (beat.vmName === "victim") victimBytes = beat.bytesMoved;
    },
  });
  t.teardown(() => hb.unsubscribe());
  let watching = true;
  let killedAt = 0;
  const watcher = (async () => {
    while (watching && killedAt === 0) {
      nc.publish(subjects.heartbeatPing);
      if (victimBytes >= 4 * MiB) {
        killedAt = victimBytes;
        victim.kill("SIGKILL");
        await startWorkers(t, server.url, 2, undefined, { storage });
      }
      await new Promise((r) => setTimeout(r, 25));
    }
  })();
  const summary = await runExportJob({
    nc,
    root,
    container: "killed",
    storage,
    blockSizeBytes: 2 * MiB,
    chunkSizeBytes: 8 * MiB,
    // A job bandwidth cap keeps the upload slow enough (≥ 5 s) to be caught mid-file: unthrottled,
    // the victim once staged all 40 MiB between two heartbeats.
    limits: { maxBandwidthBytesPerSec: 8 * MiB },
  });
  watching = false;
  await watcher;
  t.true(killedAt > 0 && killedAt < data.length, `killed mid-file (${killedAt} bytes staged)`);
  t.deepEqual(summary.errorSamples, []);
  t.like(summary, { state: "succeeded", errors: 0, filesExported: 1, bytes: data.length });
  const blob = BlobServiceClient.fromConnectionString(azurite.connectionString)
    .getContainerClient("killed")
    .getBlockBlobClient("big.bin");
  t.is(md5(await blob.downloadToBuffer()), md5(data), "byte-identical");
});

test("a chunked file that changes before its commit fails with a clear error and no blob is committed", async (t) => {
  const dir = await tempDir();
  t.teardown(() => dir.cleanup());
  const root = join(dir.path, "tree");
  await mkdir(root);
  const path = join(root, "moving.bin");
  await writeFile(path, contentOf(7, Buffer.from("moving"), 12 * MiB));
  const azurite = await startStorage(t);
  const storage = parseStorageTarget(azurite.connectionString)!;
  const { server, nc } = await startBus(t);
  // The walk sees the file; then it grows before any worker stages it.
  let grown = false;
  await startWorkers(
    t,
    server.url,
    1,
    {
      afterWalkShard: async () => {
        if (grown) return;
        grown = true;
        await writeFile(path, contentOf(8, Buffer.from("moving"), 13 * MiB));
      },
    },
    { storage },
  );
  const summary = await runExportJob({
    nc,
    root,
    container: "moving",
    storage,
    maxErrors: -1,
    blockSizeBytes: 2 * MiB,
    chunkSizeBytes: 4 * MiB,
  });
  t.is(summary.filesExported, 0);
  t.true(summary.errors > 0);
  t.regex(summary.errorSamples[0]?.message ?? "", /moving\.bin changed since it was listed/);
  const exists = await BlobServiceClient.fromConnectionString(azurite.connectionString)
    .getContainerClient("moving")
    .getBlockBlobClient("moving.bin")
    .exists();
  t.false(exists, "nothing was committed");
});
