/**
 * Issue 6's shaped 2 GiB restore, cheaply: one worker holds more chunk items than its link moves
 * within the consumer's ack wait. The fleet benchmark's failure (64 chunks of 32 MiB, one VM at
 * 64 Mbit/s, ack wait 30 s: `chunk: MAX_DELIVERIES`) is reproduced here without tc by a short ack
 * wait (2 s), small chunks and a job-wide bandwidth cap that makes each chunk take longer than
 * the ack wait. A chunk item the worker holds, queued or in progress, must never expire.
 */
import { createHash } from "node:crypto";
import { mkdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import test from "ava";
import { openContainer, parseStorageTarget, uploadFile } from "@hsmfleet/blob";
import { ensureTopology, jetstreamManager } from "@hsmfleet/bus";
import { EntryType, metadataForEntry } from "@hsmfleet/core";
import { runExportJob, runImportJob } from "@hsmfleet/coordinator";
import { CHUNK_CONSUMER, WORK_STREAM } from "@hsmfleet/protocol";
import { contentOf, tempDir } from "@hsmfleet/testkit";
import { TEST_TOPOLOGY, capturedLogger, startBus, startStorage, startWorkers } from "./helpers.js";

const MiB = 1024 * 1024;
const md5 = (b: Buffer) => createHash("md5").update(b).digest("hex");

/** Deliveries the chunk consumer made so far (first deliveries and redeliveries alike). */
const chunkDeliveries = async (nc: Parameters<typeof jetstreamManager>[0]): Promise<number> => {
  const jsm = await jetstreamManager(nc);
  return (await jsm.consumers.info(WORK_STREAM, CHUNK_CONSUMER)).delivered.consumer_seq;
};

// 24 chunks of 1 MiB at 1.5 MiB/s: each of the worker's 4 chunks in flight takes about 2.7 s, longer
// than the 2 s ack wait, and the whole file about 16 s — the shape of the benchmark (64 chunks, a
// chunk's time near the ack wait), 30 times faster.
const CHUNKS = 24;
const LIMITS = { maxBandwidthBytesPerSec: 1.5 * MiB, maxRequestsPerSec: 1000 };

test.serial(
  "restore side: one worker holding chunks longer than the ack wait finishes them all, each delivered once",
  async (t) => {
    const dir = await tempDir();
    t.teardown(() => dir.cleanup());
    const data = contentOf(6, Buffer.from("held-chunks"), CHUNKS * MiB - 333);
    const src = join(dir.path, "big.bin");
    await writeFile(src, data);
    const azurite = await startStorage(t);
    const storage = parseStorageTarget(azurite.connectionString)!;
    const container = openContainer(storage, "held");
    await container.ensureExists();
    await uploadFile(container, Buffer.from(src), "big.bin", {
      metadata: metadataForEntry({
        type: EntryType.File,
        mode: 0o100644,
        uid: 0,
        gid: 0,
        mtimeSec: 1717094160,
      }),
      blockSizeBytes: 4 * MiB,
    });
    const { server, nc } = await startBus(t);
    t.is((await ensureTopology(nc, TEST_TOPOLOGY)).topology.ackWaitMs, 2000);
    const { logger, lines } = capturedLogger();
    await startWorkers(t, server.url, 1, undefined, { storage, logger });
    const dst = join(dir.path, "dst");
    await mkdir(dst);
    const summary = await runImportJob({
      nc,
      target: dst,
      container: "held",
      mode: "full",
      storage,
      chunkSizeBytes: MiB,
      limits: LIMITS,
    });
    t.deepEqual(summary.errorSamples, []);
    t.like(summary, { state: "succeeded", totalErrors: 0, importedFiles: 1 });
    t.is(md5(await readFile(join(dst, "big.bin"))), md5(data), "byte-identical");
    t.is(await chunkDeliveries(nc), CHUNKS, "every chunk item was delivered exactly once");
    t.deepEqual(lines, [], "the worker logged no warning (no redelivery, no retry)");
  },
);

test.serial(
  "export side: one worker holding chunks longer than the ack wait stages them all, each delivered once",
  async (t) => {
    const dir = await tempDir();
    t.teardown(() => dir.cleanup());
    const root = join(dir.path, "src");
    await mkdir(root);
    const data = contentOf(7, Buffer.from("held-export"), CHUNKS * MiB - 777);
    await writeFile(join(root, "big.bin"), data);
    const azurite = await startStorage(t);
    const storage = parseStorageTarget(azurite.connectionString)!;
    const { server, nc } = await startBus(t);
    const { logger, lines } = capturedLogger();
    await startWorkers(t, server.url, 1, undefined, { storage, logger });
    const summary = await runExportJob({
      nc,
      root,
      container: "held-export",
      storage,
      chunkSizeBytes: MiB,
      blockSizeBytes: MiB,
      limits: LIMITS,
    });
    t.deepEqual(summary.errorSamples, []);
    t.like(summary, { state: "succeeded", errors: 0, filesExported: 1 });
    const blob = await openContainer(storage, "held-export")
      .client.getBlobClient("big.bin")
      .downloadToBuffer();
    t.is(md5(blob), md5(data), "byte-identical");
    t.is(await chunkDeliveries(nc), CHUNKS, "every chunk item was delivered exactly once");
    t.deepEqual(lines, [], "the worker logged no warning (no redelivery, no retry)");
  },
);
