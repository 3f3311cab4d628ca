/**
 * Integrity of the download path (issue 17): import --mode full and restore through a proxy that
 * answers x-ms-range-get-content-crc64 as Azure Blob Storage does (Azurite ignores it), once
 * faithfully and once with one byte flipped in one range of one file.
 */
import { mkdir, open, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import test from "ava";
import { parseStorageTarget } from "@hsmfleet/blob";
import { runExportJob, runImportJob, runRestoreJob } from "@hsmfleet/coordinator";
import { HsmEmulation, crc64, hsmAtAbsolutePaths } from "@hsmfleet/fs";
import { contentOf, startFaultProxy, tempDir } from "@hsmfleet/testkit";
import { TEST_TOPOLOGY, startBus, startStorage, startWorkers } from "./helpers.js";

const MiB = 1024 * 1024;

test("import --mode full and restore check every range against the service's CRC64: one flipped byte fails that file naming the path and the range, the others are byte-identical", async (t) => {
  const dir = await tempDir();
  t.teardown(() => dir.cleanup());
  const root = join(dir.path, "tree");
  await mkdir(join(root, "ok"), { recursive: true });
  // Chunks of 16 MiB: bad.bin and ok/chunked.bin are downloaded in chunks (each checked range by
  // range, recorded in the chunk tracker), ok/ranged.bin whole in 4 MiB ranges.
  const files = {
    "bad.bin": contentOf(2, Buffer.from("bad"), 20 * MiB),
    "ok/chunked.bin": contentOf(1, Buffer.from("chunked"), 20 * MiB + 5),
    "ok/ranged.bin": contentOf(3, Buffer.from("ranged"), 12 * MiB + 1),
  };
  for (const [name, data] of Object.entries(files)) await writeFile(join(root, name), data);
  const azurite = await startStorage(t);
  const direct = parseStorageTarget(azurite.connectionString)!;
  // The flipped range: bytes 4-8 MiB of bad.bin (the second range of its first chunk).
  const badRange = `bytes=${4 * MiB}-${8 * MiB - 1}`;
  const proxy = await startFaultProxy({
    target: azurite.blobEndpoint,
    rangeCrc64: (body) => crc64(body),
    eligible: (req) =>
      (req.url ?? "").split("?")[0]!.endsWith("/bad.bin") && req.headers["x-ms-range"] === badRange,
    rates: { flip: 1 },
  });
  t.teardown(() => proxy.stop());
  const checked = parseStorageTarget(proxy.rewriteConnectionString(azurite.connectionString))!;
  const { server, nc } = await startBus(t, { ...TEST_TOPOLOGY, maxDeliver: 2 });
  await startWorkers(t, server.url, 1, undefined, { storage: checked, retryDelayMs: 50 });
  const exported = await runExportJob({ nc, root, container: "crc-check", storage: direct });
  t.like(exported, { state: "succeeded", errors: 0 });

  const target = join(dir.path, "target");
  await mkdir(target);
  const imported = await runImportJob({
    nc,
    target,
    container: "crc-check",
    mode: "full",
    storage: direct,
    chunkSizeBytes: 16 * MiB,
  });
  t.like(imported, { state: "failed", totalErrors: 1, importedFiles: 2 });
  t.log(JSON.stringify(imported.errorSamples));
  const sample = JSON.stringify(imported.errorSamples);
  t.true(sample.includes("bad.bin"), sample);
  t.true(sample.includes(`bytes ${4 * MiB}-${8 * MiB - 1}`), `the range is named: ${sample}`);
  t.true(sample.includes("CRC64"), sample);
  const good = ["ok/chunked.bin", "ok/ranged.bin"] as const;
  for (const name of good) {
    t.true((await readFile(join(target, name))).equals(files[name]), `${name} is byte-identical`);
  }
  // 6 + 4 ranges of the good files, and bad.bin's 5 ranges with the bad one fetched 3 times per
  // delivery: at least 10 + 5.
  t.true(proxy.counters().crc64Answers >= 15, "every range had its CRC64");

  // Release the good files and restore them through the same proxy: checked the same way.
  const hsm = hsmAtAbsolutePaths(new HsmEmulation());
  for (const name of good) {
    const abs = Buffer.from(join(target, name));
    const fh = await open(abs, "r+");
    await fh.truncate(0);
    await fh.truncate(files[name].length);
    await fh.close();
    await hsm.setState(abs, { compat: 1, flags: 0xd, archiveId: 1n, archiveVersion: 0n });
  }
  const before = proxy.counters().crc64Answers;
  const restored = await runRestoreJob({ nc, path: join(target, "ok") });
  t.like(restored, { state: "succeeded", errors: 0, filesRestored: 2 });
  for (const name of good) {
    t.true((await readFile(join(target, name))).equals(files[name]), `${name} restored exact`);
  }
  t.is(proxy.counters().crc64Answers - before, 6 + 4, "restored in 4 MiB ranges, each checked");
});
