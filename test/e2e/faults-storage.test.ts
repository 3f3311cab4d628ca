/**
 * Storage faults: exports through the fault-injecting proxy (testkit) between the workers and
 * Azurite. The coordinator talks to Azurite directly; only the workers' traffic is faulted.
 */
import { mkdir, open, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import test from "ava";
import { BlobServiceClient } from "@azure/storage-blob";
import { blobRetryStats, parseStorageTarget } from "@hsmfleet/blob";
import { blobNameForPath } from "@hsmfleet/core";
import { runExportJob, runImportJob, runRestoreJob } from "@hsmfleet/coordinator";
import { HsmEmulation, hsmAtAbsolutePaths } from "@hsmfleet/fs";
import { contentOf, generateTree, startFaultProxy, tempDir } from "@hsmfleet/testkit";
import { startBus, startStorage, startWorkers } from "./helpers.js";

test("export through 10% injected faults (503/429/resets) completes byte-identical with an empty error log", async (t) => {
  const dir = await tempDir();
  t.teardown(() => dir.cleanup());
  const root = join(dir.path, "tree");
  const manifest = await generateTree(root, {
    depth: 2,
    fanout: 3,
    filesPerDir: 8,
    symlinksPerDir: 1,
    sizes: [0, 100, 5000, 70_000],
  });
  // Two multi-block files: Put Block and Put Block List get faults too.
  const big = [
    contentOf(5, Buffer.from("big-a"), 9 * 1024 * 1024),
    contentOf(6, Buffer.from("big-b"), 5 * 1024 * 1024),
  ];
  await writeFile(join(root, "big-a.bin"), big[0]!);
  await writeFile(join(root, "big-b.bin"), big[1]!);

  const azurite = await startStorage(t);
  const proxy = await startFaultProxy({
    target: azurite.blobEndpoint,
    seed: 8,
    retryAfterSeconds: 1,
    rates: { status503: 0.04, status429: 0.03, reset: 0.03 },
  });
  t.teardown(() => proxy.stop());
  const direct = parseStorageTarget(azurite.connectionString)!;
  const faulty = parseStorageTarget(proxy.rewriteConnectionString(azurite.connectionString))!;
  const { server, nc } = await startBus(t);
  const workers = await startWorkers(t, server.url, 2, undefined, {
    storage: faulty,
    requestRetryDelayMs: 50,
    retryDelayMs: 200,
  });
  const requestRetriesBefore = blobRetryStats.retries;
  const errorLog = join(dir.path, "errors.ndjson");
  const summary = await runExportJob({
    nc,
    root,
    container: "faulty",
    storage: direct,
    blockSizeBytes: 4 * 1024 * 1024,
    errorLog,
  });
  const injected = proxy.counters();
  const requestRetries = blobRetryStats.retries - requestRetriesBefore;
  const entryRetries = workers.reduce((a, w) => a + w.stats.entryRetries, 0);
  t.log(
    `requests ${injected.requests}, injected ${proxy.totalInjected()} (${JSON.stringify(injected.injected)}), request retries ${requestRetries}, entry retries ${entryRetries}`,
  );
  t.true(proxy.totalInjected() >= 10, "faults were injected");
  t.like(summary, { state: "succeeded", errors: 0 });
  t.is(summary.filesExported, manifest.files + 2);
  t.is((await readFile(errorLog, "utf8").catch(() => "")).trim(), "", "the error log is empty");

  // Byte-identical, read straight from Azurite.
  const container = BlobServiceClient.fromConnectionString(
    azurite.connectionString,
  ).getContainerClient("faulty");
  for (const e of manifest.entries.filter((x) => x.type === "file")) {
    const want = await readFile(join(root, e.path.toString()));
    const got = await container.getBlobClient(blobNameForPath(e.path, "")).downloadToBuffer();
    t.true(got.equals(want), `${e.path.toString()} is byte-identical`);
  }
  for (const [i, name] of ["big-a.bin", "big-b.bin"].entries()) {
    const got = await container.getBlobClient(name).downloadToBuffer();
    t.true(got.equals(big[i]!), `${name} is byte-identical`);
  }
});

test("a 403 fails that file at once with a clear message; the others go through", async (t) => {
  const dir = await tempDir();
  t.teardown(() => dir.cleanup());
  const root = join(dir.path, "tree");
  await mkdir(root);
  for (const n of ["a", "b", "denied.txt", "c"]) await writeFile(join(root, n), `data of ${n}`);
  const azurite = await startStorage(t);
  const proxy = await startFaultProxy({
    target: azurite.blobEndpoint,
    rates: { status403: 1 },
    eligible: (req) => req.method === "PUT" && (req.url ?? "").includes("/denied.txt"),
  });
  t.teardown(() => proxy.stop());
  const { server, nc } = await startBus(t);
  const workers = await startWorkers(t, server.url, 1, undefined, {
    storage: parseStorageTarget(proxy.rewriteConnectionString(azurite.connectionString))!,
    retryDelayMs: 10,
  });
  const summary = await runExportJob({
    nc,
    root,
    container: "denied",
    storage: parseStorageTarget(azurite.connectionString)!,
    maxErrors: -1,
  });
  t.like(summary, { state: "completed-with-errors", errors: 1, filesExported: 3 });
  t.like(summary.errorSamples[0], { path: "denied.txt", operation: "put-blob" });
  t.regex(summary.errorSamples[0]!.message, /HTTP 403 AuthorizationPermissionMismatch/);
  t.is(proxy.counters().injected.status403, 1, "sent once: no request retry, no second attempt");
  t.is(workers[0]!.stats.entryRetries, 0);
});

test("a file that keeps failing goes to the error log after --max-attempts, with the attempt count", async (t) => {
  const dir = await tempDir();
  t.teardown(() => dir.cleanup());
  const root = join(dir.path, "tree");
  await mkdir(root);
  for (const n of ["ok-1", "busy.bin", "ok-2"]) await writeFile(join(root, n), `data of ${n}`);
  const azurite = await startStorage(t);
  const proxy = await startFaultProxy({
    target: azurite.blobEndpoint,
    retryAfterSeconds: 0,
    rates: { status503: 1 },
    eligible: (req) => req.method === "PUT" && (req.url ?? "").includes("/busy.bin"),
  });
  t.teardown(() => proxy.stop());
  const { server, nc } = await startBus(t);
  await startWorkers(t, server.url, 1, undefined, {
    storage: parseStorageTarget(proxy.rewriteConnectionString(azurite.connectionString))!,
    maxAttempts: 3,
    requestRetries: 1,
    requestRetryDelayMs: 10,
    retryDelayMs: 10,
  });
  const errorLog = join(dir.path, "errors.ndjson");
  const summary = await runExportJob({
    nc,
    root,
    container: "busy",
    storage: parseStorageTarget(azurite.connectionString)!,
    maxErrors: -1,
    errorLog,
  });
  t.like(summary, { state: "completed-with-errors", errors: 1, filesExported: 2 });
  t.regex(summary.errorSamples[0]!.message, /HTTP 503 ServerBusy.*gave up after 3 attempts/);
  t.is(proxy.counters().injected.status503, 6, "3 attempts × (1 try + 1 request retry)");
  const lines = (await readFile(errorLog, "utf8")).trim().split("\n");
  t.is(lines.length, 1);
  t.like(JSON.parse(lines[0]!) as object, { path: "busy.bin", operation: "put-blob" });
});

test("import --mode full, then release and restore, through 10% injected faults: every file byte-identical, no errors", async (t) => {
  const dir = await tempDir();
  t.teardown(() => dir.cleanup());
  const root = join(dir.path, "tree");
  const manifest = await generateTree(root, {
    depth: 2,
    fanout: 2,
    filesPerDir: 8,
    symlinksPerDir: 1,
    sizes: [0, 100, 5000, 70_000],
  });
  await writeFile(join(root, "big.bin"), contentOf(9, Buffer.from("big"), 9 * 1024 * 1024));
  const azurite = await startStorage(t);
  const proxy = await startFaultProxy({
    target: azurite.blobEndpoint,
    seed: 11,
    retryAfterSeconds: 1,
    rates: { status503: 0.04, status429: 0.03, reset: 0.03 },
  });
  t.teardown(() => proxy.stop());
  const direct = parseStorageTarget(azurite.connectionString)!;
  const faulty = parseStorageTarget(proxy.rewriteConnectionString(azurite.connectionString))!;
  const { server, nc } = await startBus(t);
  await startWorkers(t, server.url, 2, undefined, {
    storage: faulty,
    requestRetryDelayMs: 50,
    retryDelayMs: 200,
  });
  const exported = await runExportJob({ nc, root, container: "imp-faulty", storage: direct });
  t.like(exported, { state: "succeeded", errors: 0 });
  const injectedBefore = proxy.totalInjected();

  const target = join(dir.path, "target");
  await mkdir(target);
  const errorLog = join(dir.path, "import-errors.ndjson");
  const imported = await runImportJob({
    nc,
    target,
    container: "imp-faulty",
    mode: "full",
    storage: direct,
    errorLog,
    chunkSizeBytes: 4 * 1024 * 1024,
  });
  t.like(imported, { state: "succeeded", totalErrors: 0, importedFiles: manifest.files + 1 });
  t.is(
    (await readFile(errorLog, "utf8").catch(() => "")).trim(),
    "",
    "the import error log is empty",
  );
  const same = async () => {
    for (const e of [
      ...manifest.entries.filter((x) => x.type === "file"),
      { path: Buffer.from("big.bin") },
    ]) {
      const want = await readFile(join(root, e.path.toString()));
      const got = await readFile(join(target, e.path.toString()));
      t.true(got.equals(want), `${e.path.toString()} is byte-identical`);
    }
  };
  await same();

  // Release every file (drop its data, keep the stub), then restore through the faults.
  const hsm = hsmAtAbsolutePaths(new HsmEmulation());
  for (const e of manifest.entries.filter((x) => x.type === "file")) {
    const abs = Buffer.from(join(target, e.path.toString()));
    const fh = await open(abs, "r+");
    await fh.truncate(0);
    await fh.truncate(e.size);
    await fh.close();
    await hsm.setState(abs, { compat: 1, flags: 0xd, archiveId: 1n, archiveVersion: 0n });
  }
  const restored = await runRestoreJob({ nc, path: target, maxInflight: 20 });
  t.like(restored, { state: "succeeded", errors: 0, filesRestored: manifest.files });
  await same();
  t.log(`faults injected during import and restore: ${proxy.totalInjected() - injectedBefore}`);
  t.true(proxy.totalInjected() - injectedBefore >= 5, "faults were injected");
});
