import { createHash } from "node:crypto";
import { mkdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import test from "ava";
import { parseStorageTarget } from "@hsmfleet/blob";
import { JobStore, ensureTopology } from "@hsmfleet/bus";
import { runExportJob, runImportJob } from "@hsmfleet/coordinator";
import { contentOf, tempDir } from "@hsmfleet/testkit";
import { runCli, startBus, startStorage, startWorkers, waitFor } from "./helpers.js";

const MiB = 1024 * 1024;
const md5 = (b: Buffer) => createHash("md5").update(b).digest("hex");

test("a job with low --max-requests-per-second and --max-bandwidth completes; every worker paces it at its share of the fleet-wide caps", async (t) => {
  const dir = await tempDir();
  t.teardown(() => dir.cleanup());
  const src = join(dir.path, "src");
  await mkdir(join(src, "d"), { recursive: true });
  const files = new Map<string, Buffer>();
  for (let i = 0; i < 12; i++) files.set(`d/f${i}`, contentOf(i, Buffer.from(`f${i}`), 100_000));
  files.set("big.bin", contentOf(99, Buffer.from("big"), 6 * MiB));
  for (const [name, data] of files) await writeFile(join(src, name), data);
  const totalBytes = [...files.values()].reduce((n, b) => n + b.length, 0);

  const azurite = await startStorage(t);
  const storage = parseStorageTarget(azurite.connectionString)!;
  const { server, nc } = await startBus(t);
  const workers = await startWorkers(t, server.url, 2, undefined, { storage });
  // Both workers see each other before the job starts (heartbeats answer the start-up ping).
  await waitFor("two live workers", () => workers.every((w) => w.liveWorkers === 2));

  const limits = { maxRequestsPerSec: 40, maxBandwidthBytesPerSec: 8 * MiB };
  const exported = await runExportJob({
    nc,
    root: src,
    container: "paced",
    storage,
    blockSizeBytes: 4 * MiB,
    limits,
  });
  t.is(exported.state, "succeeded");
  t.is(exported.filesExported, files.size);
  t.is(exported.errors, 0);

  // The spec carried the limits to the job store, and from there to the workers.
  const { jobs } = await ensureTopology(nc);
  const status = await new JobStore(jobs).require(exported.jobId);
  t.deepEqual(status.spec.limits, limits);
  const shares = workers.map((w) => w.jobLimits(exported.jobId));
  const used = shares.filter((s) => s !== undefined);
  t.true(used.length >= 1, "at least one worker moved data of the job");
  for (const s of used) {
    t.is(s.liveWorkers, 2, "the caps are split over the two live workers");
    t.is(s.requestsPerSec, limits.maxRequestsPerSec / 2);
    t.is(s.bytesPerSec, limits.maxBandwidthBytesPerSec / 2);
  }
  // Every payload byte paid a token; every file took at least one request token.
  const bytesTaken = used.reduce((n, s) => n + s.bytesTaken, 0);
  const requestsTaken = used.reduce((n, s) => n + s.requestsTaken, 0);
  t.true(bytesTaken >= totalBytes, `${bytesTaken} ≥ ${totalBytes}`);
  t.true(requestsTaken >= files.size, `${requestsTaken} request tokens`);

  // The way back: import --mode full with the same caps (ranged downloads pay byte tokens too).
  const dst = join(dir.path, "dst");
  await mkdir(dst);
  const imported = await runImportJob({
    nc,
    target: dst,
    container: "paced",
    mode: "full",
    storage,
    chunkSizeBytes: 2 * MiB,
    limits,
  });
  t.like(imported, { state: "succeeded", totalErrors: 0, importedFiles: files.size });
  for (const [name, data] of files) t.is(md5(await readFile(join(dst, name))), md5(data), name);
  const down = workers
    .map((w) => w.jobLimits(imported.jobId))
    .reduce((n, s) => n + (s?.bytesTaken ?? 0), 0);
  t.true(down >= totalBytes, `download bytes paced: ${down} ≥ ${totalBytes}`);
  // An unlimited job leaves no limiter behind.
  t.true(workers.every((w) => w.jobLimits("no-such-job") === undefined));
});

test("the CLI puts --max-bandwidth and --max-requests-per-second into the job spec; bad values exit 2", async (t) => {
  const dir = await tempDir();
  t.teardown(() => dir.cleanup());
  const src = join(dir.path, "src");
  await mkdir(src);
  await writeFile(join(src, "a"), "hello");
  const azurite = await startStorage(t);
  const { server, nc } = await startBus(t);
  const env = { AZURE_STORAGE_CONNECTION_STRING: azurite.connectionString };
  const run = await runCli(
    [
      "--nats",
      server.url,
      "--workers",
      "1",
      "--max-concurrency",
      "8",
      "export",
      src,
      "--container",
      "cli-paced",
      "--max-bandwidth",
      "40Mbps",
      "--max-requests-per-second",
      "25",
      "--json",
    ],
    { env },
  );
  t.is(run.code, 0, run.stderr);
  const summary = JSON.parse(run.stdout) as { jobId: string; state: string };
  t.is(summary.state, "succeeded");
  const { jobs } = await ensureTopology(nc);
  const status = await new JobStore(jobs).require(summary.jobId);
  t.deepEqual(status.spec.limits, { maxBandwidthBytesPerSec: 5_000_000, maxRequestsPerSec: 25 });

  const bad = await runCli(
    ["--nats", server.url, "export", src, "--container", "x", "--max-bandwidth", "fast"],
    { env },
  );
  t.is(bad.code, 2);
  t.regex(bad.stderr, /not a rate/);
  const badConcurrency = await runCli(
    ["--nats", server.url, "--request-concurrency", "0", "export", src, "--container", "x"],
    { env },
  );
  t.is(badConcurrency.code, 2);
});
