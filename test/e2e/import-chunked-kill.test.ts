import { createHash } from "node:crypto";
import { mkdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import test from "ava";
import { openContainer, parseStorageTarget, uploadFile } from "@hsmfleet/blob";
import { EntryType, decodeHsmAttrs, metadataForEntry } from "@hsmfleet/core";
import { runImportJob } from "@hsmfleet/coordinator";
import { getXattr } from "@hsmfleet/fs";
import { decodeWorkerHeartbeat, subjects } from "@hsmfleet/protocol";
import { contentOf, tempDir } from "@hsmfleet/testkit";
import { capturedLogger, spawnCli, startBus, startStorage, startWorkers } from "./helpers.js";

const MiB = 1024 * 1024;
const md5 = (b: Buffer) => createHash("md5").update(b).digest("hex");

test("restore side: a worker process killed mid-file during a chunked download (import --mode full); its chunks are redelivered and the file is byte-identical", async (t) => {
  const dir = await tempDir();
  t.teardown(() => dir.cleanup());
  const data = contentOf(12, Buffer.from("killed-download"), 40 * MiB + 777);
  const src = join(dir.path, "big.bin");
  await writeFile(src, data);
  const azurite = await startStorage(t);
  const storage = parseStorageTarget(azurite.connectionString)!;
  const container = openContainer(storage, "killed-dl");
  await container.ensureExists();
  await uploadFile(container, Buffer.from(src), "big.bin", {
    metadata: metadataForEntry({
      type: EntryType.File,
      mode: 0o100640,
      uid: 1000,
      gid: 1000,
      mtimeSec: 1717094160,
    }),
    blockSizeBytes: 4 * MiB,
  });
  const { server, nc } = await startBus(t);
  // The victim is a real process, alone at first (so it takes the chunks), with one request in
  // flight so that it is still mid-file when it is killed.
  const victim = spawnCli(
    ["--nats", server.url, "--request-concurrency", "1", "worker", "--vm-name", "victim"],
    { env: { AZURE_STORAGE_CONNECTION_STRING: azurite.connectionString } },
  );
  t.teardown(() => {
    victim.kill("SIGKILL");
  });
  let victimBytes = 0;
  let victimConcurrency = 0;
  const hb = nc.subscribe(subjects.heartbeatAll, {
    callback: (_err, msg) => {
      const beat = decodeWorkerHeartbeat(msg.data);
      if (beat.vmName !== "victim") return;
      victimBytes = beat.bytesMoved;
      victimConcurrency = beat.requestConcurrency;
    },
  });
  t.teardown(() => hb.unsubscribe());
  const survivors = capturedLogger();
  let watching = true;
  let killedAt = 0;
  const watcher = (async () => {
    while (watching && killedAt === 0) {
      nc.publish(subjects.heartbeatPing);
      if (victimBytes >= 4 * MiB) {
        killedAt = victimBytes;
        victim.kill("SIGKILL");
        await startWorkers(t, server.url, 2, undefined, { storage, logger: survivors.logger });
      }
      await new Promise((r) => setTimeout(r, 25));
    }
  })();
  const dst = join(dir.path, "dst");
  await mkdir(dst);
  const summary = await runImportJob({
    nc,
    target: dst,
    container: "killed-dl",
    mode: "full",
    storage,
    chunkSizeBytes: 8 * MiB,
    // Slow enough to be caught mid-file whatever the machine's speed.
    limits: { maxBandwidthBytesPerSec: 8 * MiB },
  });
  watching = false;
  await watcher;
  t.is(victimConcurrency, 1, "the heartbeat carried the fixed request concurrency");
  t.true(killedAt > 0 && killedAt < data.length, `killed mid-file (${killedAt} bytes written)`);
  t.deepEqual(summary.errorSamples, []);
  t.like(summary, { state: "succeeded", totalErrors: 0, importedFiles: 1 });
  t.is(md5(await readFile(join(dst, "big.bin"))), md5(data), "byte-identical");
  const attrs = await getXattr(Buffer.from(join(dst, "big.bin")), "trusted.hsm");
  t.is(attrs ? decodeHsmAttrs(attrs).flags : undefined, 0x9, "exists archived");
  // The chunks the victim held were delivered again, and the worker that got each said so.
  const again = survivors.lines.filter((l) =>
    String(l["msg"]).startsWith("chunk item delivered again"),
  );
  t.true(again.length >= 1, "a redelivered chunk was logged at warn");
  t.like(again[0], { level: 40, kind: "chunk", path: "big.bin", attempt: 2, maxDeliver: 5 });
  t.regex(String(again[0]!["chunk"]), /^chunk \d+ of 6 \(bytes \d+–\d+\)$/);
  t.regex(
    String(again[0]!["reason"]),
    /^attempt 1 was not acknowledged within the ack wait \(2 s\)/,
  );
});
