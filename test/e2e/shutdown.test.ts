import { writeFile, mkdir } from "node:fs/promises";
import { join } from "node:path";
import test from "ava";
import type { ExecutionContext } from "ava";
import { BlobServiceClient } from "@azure/storage-blob";
import { parseStorageTarget } from "@hsmfleet/blob";
import { runExportJob } from "@hsmfleet/coordinator";
import { decodeWorkerHeartbeat, subjects } from "@hsmfleet/protocol";
import type { NatsConnection } from "@hsmfleet/bus";
import { contentOf, tempDir } from "@hsmfleet/testkit";
import { exitOf, spawnCli, startBus, startStorage, startWorkers, waitFor } from "./helpers.js";

/** Bytes the named worker reported moving, from its heartbeats (a ping makes it answer at once). */
const watchBytes = (t: ExecutionContext, nc: NatsConnection, vmName: string): (() => number) => {
  let bytes = 0;
  const sub = nc.subscribe(subjects.heartbeatAll, {
    callback: (_err, msg) => {
      const beat = decodeWorkerHeartbeat(msg.data);
      if (beat.vmName === vmName) bytes = beat.bytesMoved;
    },
  });
  t.teardown(() => sub.unsubscribe());
  return () => {
    nc.publish(subjects.heartbeatPing);
    return bytes;
  };
};

const setup = async (t: ExecutionContext, name: string, size: number) => {
  const dir = await tempDir();
  t.teardown(() => dir.cleanup());
  const root = join(dir.path, "tree");
  await mkdir(root);
  const data = contentOf(21, Buffer.from(name), size);
  await writeFile(join(root, `${name}.bin`), data);
  const azurite = await startStorage(t);
  const { server, nc } = await startBus(t);
  return { root, data, azurite, server, nc };
};

test("SIGTERM mid-upload: the worker stops pulling, finishes its file within --shutdown-grace and exits 0", async (t) => {
  const { root, data, azurite, server, nc } = await setup(t, "graceful", 96 * 1024 * 1024);
  const worker = spawnCli(
    ["--nats", server.url, "worker", "--vm-name", "graceful", "--shutdown-grace", "120000"],
    {
      env: {
        AZURE_STORAGE_CONNECTION_STRING: azurite.connectionString,
        HSMFLEET_LOG_LEVEL: "info",
      },
    },
  );
  t.teardown(() => {
    worker.kill("SIGKILL");
  });
  let stderr = "";
  worker.stderr?.on("data", (d: Buffer) => (stderr += d.toString()));
  let stdout = "";
  worker.stdout?.on("data", (d: Buffer) => (stdout += d.toString()));
  const storage = parseStorageTarget(azurite.connectionString)!;
  const bytes = watchBytes(t, nc, "graceful");
  const job = runExportJob({
    nc,
    root,
    container: "graceful",
    storage,
    blockSizeBytes: 4 * 1024 * 1024,
  });
  await waitFor("the upload to start", () => bytes() >= 8 * 1024 * 1024, 60_000);
  worker.kill("SIGTERM");
  const exit = await exitOf(worker);
  t.deepEqual(exit, { code: 0, signal: null }, stderr);
  t.regex(stdout + stderr, /SIGTERM: no new items/);
  // The file in flight was finished by this worker: the job completes without any other worker.
  const summary = await job;
  t.like(summary, { state: "succeeded", errors: 0, filesExported: 1, bytes: data.length });
  const blob = BlobServiceClient.fromConnectionString(azurite.connectionString)
    .getContainerClient("graceful")
    .getBlobClient("graceful.bin");
  t.true((await blob.downloadToBuffer()).equals(data));
});

test("a second SIGTERM aborts at once: the item is handed back and another worker completes it", async (t) => {
  const { root, data, azurite, server, nc } = await setup(t, "aborted", 96 * 1024 * 1024);
  const worker = spawnCli(
    ["--nats", server.url, "worker", "--vm-name", "aborted", "--shutdown-grace", "120000"],
    { env: { AZURE_STORAGE_CONNECTION_STRING: azurite.connectionString } },
  );
  t.teardown(() => {
    worker.kill("SIGKILL");
  });
  const storage = parseStorageTarget(azurite.connectionString)!;
  const bytes = watchBytes(t, nc, "aborted");
  const job = runExportJob({
    nc,
    root,
    container: "aborted",
    storage,
    blockSizeBytes: 4 * 1024 * 1024,
  });
  await waitFor("the upload to start", () => bytes() >= 8 * 1024 * 1024, 60_000);
  worker.kill("SIGTERM");
  await new Promise((r) => setTimeout(r, 200));
  worker.kill("SIGTERM");
  const exit = await exitOf(worker);
  t.not(exit.code, 0, "aborted, not a clean stop");
  const blob = BlobServiceClient.fromConnectionString(azurite.connectionString)
    .getContainerClient("aborted")
    .getBlobClient("aborted.bin");
  t.false(await blob.exists(), "nothing committed by the aborted worker");
  await startWorkers(t, server.url, 1, undefined, { storage });
  const summary = await job;
  t.like(summary, { state: "succeeded", errors: 0, filesExported: 1 });
  t.true((await blob.downloadToBuffer()).equals(data));
});

test("SIGTERM with a short --shutdown-grace: the upload in flight is handed back, exit 0, another worker completes it", async (t) => {
  const { root, data, azurite, server, nc } = await setup(t, "handback", 192 * 1024 * 1024);
  const worker = spawnCli(
    ["--nats", server.url, "worker", "--vm-name", "handback", "--shutdown-grace", "300"],
    { env: { AZURE_STORAGE_CONNECTION_STRING: azurite.connectionString } },
  );
  t.teardown(() => {
    worker.kill("SIGKILL");
  });
  const storage = parseStorageTarget(azurite.connectionString)!;
  const blob = BlobServiceClient.fromConnectionString(azurite.connectionString)
    .getContainerClient("handback")
    .getBlockBlobClient("handback.bin");
  const job = runExportJob({
    nc,
    root,
    container: "handback",
    storage,
    blockSizeBytes: 4 * 1024 * 1024,
  });
  // The upload has begun once Azurite holds a staged block of it. Watched on the storage side,
  // not through the worker's heartbeats: a worker answers pings at a bounded rate (hbping is
  // unauthenticated), so a heartbeat can be a fraction of a second behind, long enough for the
  // whole file to go up on a quiet machine.
  await waitFor(
    "the upload to start",
    async () =>
      ((await blob.getBlockList("uncommitted").catch(() => undefined))?.uncommittedBlocks?.length ??
        0) > 0,
    60_000,
  );
  worker.kill("SIGTERM");
  t.deepEqual(await exitOf(worker), { code: 0, signal: null });
  t.false(await blob.exists(), "nothing committed by the stopped worker");
  await startWorkers(t, server.url, 1, undefined, { storage });
  const summary = await job;
  t.like(summary, { state: "succeeded", errors: 0, filesExported: 1 });
  t.true((await blob.downloadToBuffer()).equals(data));
});
