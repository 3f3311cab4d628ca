import { execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import { chmod, lstat, mkdir, readFile, readlink, utimes, writeFile } from "node:fs/promises";
import { join } from "node:path";
import test from "ava";
import { BlobServiceClient } from "@azure/storage-blob";
import type { ContainerClient } from "@azure/storage-blob";
import { parseStorageTarget } from "@hsmfleet/blob";
import { blobNameForPath, formatModtime, pathForBlobName } from "@hsmfleet/core";
import { formatExportSummary, runExportJob } from "@hsmfleet/coordinator";
import { decodeWorkerHeartbeat, subjects } from "@hsmfleet/protocol";
import { contentOf, generateTree, tempDir } from "@hsmfleet/testkit";
import {
  exitOf,
  listJobs,
  runCli,
  spawnCli,
  startBus,
  startStorage,
  startWorkers,
  waitFor,
} from "./helpers.js";

const md5 = (b: Buffer) => createHash("md5").update(b).digest("hex");

const listAll = async (
  c: ContainerClient,
): Promise<Map<string, { size: number; metadata: Record<string, string>; md5?: string }>> => {
  const out = new Map<string, { size: number; metadata: Record<string, string>; md5?: string }>();
  for await (const b of c.listBlobsFlat({ includeMetadata: true })) {
    const m = b.properties.contentMD5;
    out.set(b.name, {
      size: b.properties.contentLength ?? -1,
      metadata: b.metadata ?? {},
      ...(m ? { md5: Buffer.from(m).toString("hex") } : {}),
    });
  }
  return out;
};

test("round trip: every entry of a generated tree is in the container in AMLFS format, byte for byte", async (t) => {
  const dir = await tempDir();
  t.teardown(() => dir.cleanup());
  const root = join(dir.path, "tree");
  const manifest = await generateTree(root, {
    depth: 2,
    fanout: 2,
    filesPerDir: 4,
    symlinksPerDir: 1,
    oddNames: true,
    sizes: [0, 1, 4096, 300_000],
    modes: [0o644, 0o600, 0o1777, 0o755],
    owners: [
      { uid: 0, gid: 0 },
      { uid: 1234, gid: 5678 },
    ],
  });
  const big = contentOf(7, Buffer.from("big.bin"), 100 * 1024 * 1024);
  await writeFile(join(root, "big.bin"), big);
  await utimes(
    join(root, "dir-0"),
    new Date("2020-01-02T03:04:05Z"),
    new Date("2020-01-02T03:04:05Z"),
  );
  const azurite = await startStorage(t);
  const storage = parseStorageTarget(azurite.connectionString)!;
  const { server, nc } = await startBus(t);
  await startWorkers(t, server.url, 2, undefined, { storage });
  const summary = await runExportJob({
    nc,
    root,
    container: "roundtrip",
    storage,
    blockSizeBytes: 8 * 1024 * 1024,
  });

  const files = manifest.entries.filter((e) => e.type === "file").length + 1;
  const dirs = manifest.entries.filter((e) => e.type === "directory").length;
  const links = manifest.entries.filter((e) => e.type === "symlink").length;
  t.like(summary, {
    state: "succeeded",
    errors: 0,
    filesExported: files,
    directoriesExported: dirs,
    symlinksExported: links,
    skipped: 0,
  });
  t.is(summary.bytes, manifest.bytes + big.length);

  const container = BlobServiceClient.fromConnectionString(
    azurite.connectionString,
  ).getContainerClient("roundtrip");
  const blobs = await listAll(container);
  t.is(blobs.size, files + dirs + links, "one blob per file, directory and symlink, nothing else");
  // Names map back to the exact path bytes.
  const expected = new Set([
    ...manifest.entries.map((e) => e.path.toString("base64")),
    Buffer.from("big.bin").toString("base64"),
  ]);
  for (const name of blobs.keys())
    t.true(expected.has(pathForBlobName(name).toString("base64")), `unexpected blob ${name}`);

  for (const e of [
    ...manifest.entries,
    { path: Buffer.from("big.bin"), type: "file" as const, size: big.length },
  ]) {
    const local = Buffer.concat([Buffer.from(root), Buffer.from("/"), e.path]);
    const st = await lstat(local);
    const blob = blobs.get(blobNameForPath(e.path));
    t.truthy(blob, `no blob for ${e.path.toString()}`);
    if (!blob) continue;
    const meta = blob.metadata;
    t.is(meta["owner"], String(st.uid));
    t.is(meta["group"], String(st.gid));
    t.is(meta["permissions"], (st.mode & 0o1777).toString(8).padStart(4, "0"));
    t.is(meta["modtime"], formatModtime(Math.floor(st.mtimeMs / 1000)));
    if (e.type === "directory") {
      t.is(meta["hdi_isfolder"], "true");
      t.is(blob.size, 0);
    } else if (e.type === "symlink") {
      t.is(meta["ftype"], "LNK");
      const body = await container.getBlobClient(blobNameForPath(e.path)).downloadToBuffer();
      t.deepEqual(body, await readlink(local, { encoding: "buffer" }));
    } else {
      t.is(blob.size, st.size);
      const data = await readFile(local);
      t.is(blob.md5, md5(data), `whole-file MD5 of ${e.path.toString()}`);
      if (data.length <= 300_000) {
        t.deepEqual(
          await container.getBlobClient(blobNameForPath(e.path)).downloadToBuffer(),
          data,
        );
      }
    }
  }
  t.is(blobs.get("dir-0")?.metadata["modtime"], "2020-01-02 03:04:05 +0000");
  t.true(
    [...blobs.values()].some((b) => b.metadata["permissions"] === "1777"),
    "sticky bit kept",
  );
  const bigDownload = await container.getBlobClient("big.bin").downloadToBuffer();
  t.is(md5(bigDownload), md5(big), "100 MiB file byte-identical");

  // The logging container got the job's summary and an empty error list.
  const logs = BlobServiceClient.fromConnectionString(azurite.connectionString).getContainerClient(
    "roundtrip-logs",
  );
  const logged = JSON.parse(
    (await logs.getBlobClient(`${summary.jobId}/summary.json`).downloadToBuffer()).toString(),
  ) as { filesExported: number };
  t.is(logged.filesExported, files);
  t.is((await logs.getBlobClient(`${summary.jobId}/errors.ndjson`).downloadToBuffer()).length, 0);
});

test("a second export of an unchanged tree uploads nothing; touching one file uploads one", async (t) => {
  const dir = await tempDir();
  t.teardown(() => dir.cleanup());
  const root = join(dir.path, "tree");
  const manifest = await generateTree(root, {
    depth: 2,
    fanout: 2,
    filesPerDir: 5,
    symlinksPerDir: 1,
  });
  const azurite = await startStorage(t);
  const storage = parseStorageTarget(azurite.connectionString)!;
  const { server, nc } = await startBus(t);
  await startWorkers(t, server.url, 1, undefined, { storage });
  const first = await runExportJob({ nc, root, container: "incr", storage });
  t.is(first.filesExported, manifest.files);
  const second = await runExportJob({ nc, root, container: "incr", storage });
  t.like(second, {
    filesExported: 0,
    directoriesExported: 0,
    symlinksExported: 0,
    bytes: 0,
    errors: 0,
  });
  t.is(second.skipped, manifest.entries.length);
  const touched = manifest.entries.find((e) => e.type === "file")!;
  const later = new Date(Date.now() + 5000);
  await utimes(Buffer.concat([Buffer.from(root + "/"), touched.path]), later, later);
  const third = await runExportJob({ nc, root, container: "incr", storage });
  t.like(third, { filesExported: 1, bytes: touched.size, skipped: manifest.entries.length - 1 });
  // A metadata-only change (mode) is not exported.
  await chmod(Buffer.concat([Buffer.from(root + "/"), touched.path]), 0o600);
  const fourth = await runExportJob({ nc, root, container: "incr", storage });
  t.is(fourth.filesExported, 0);
});

test("a file that changes while it is uploaded is reported and no blob is committed for it", async (t) => {
  const dir = await tempDir();
  t.teardown(() => dir.cleanup());
  const root = join(dir.path, "tree");
  await mkdir(root);
  await writeFile(join(root, "steady"), "steady");
  const moving = join(root, "moving.bin");
  await writeFile(moving, contentOf(3, Buffer.from("moving"), 48 * 1024 * 1024));
  const azurite = await startStorage(t);
  const storage = parseStorageTarget(azurite.connectionString)!;
  const { server, nc } = await startBus(t);
  await startWorkers(t, server.url, 1, undefined, { storage, blockConcurrency: 1 });
  // Keep rewriting the file's tail while the export runs.
  let stop = false;
  const writer = (async () => {
    let i = 0;
    while (!stop) {
      await writeFile(moving, Buffer.from(`tick ${i++}`), { flag: "r+" });
      await new Promise((r) => setTimeout(r, 20));
    }
  })();
  const summary = await runExportJob({
    nc,
    root,
    container: "moving",
    storage,
    maxErrors: -1,
    blockSizeBytes: 4 * 1024 * 1024,
  });
  stop = true;
  await writer;
  t.is(summary.errors, 1);
  t.is(summary.filesExported, 1, "the steady file went through");
  t.like(summary.errorSamples[0], { path: "moving.bin" });
  t.regex(summary.errorSamples[0]!.message, /changed (while being uploaded|since it was listed)/);
  const container = BlobServiceClient.fromConnectionString(
    azurite.connectionString,
  ).getContainerClient("moving");
  t.false(await container.getBlobClient("moving.bin").exists(), "no half-copied blob");
});

test("names Blob cannot hold fail that file only; --max-errors decides the job", async (t) => {
  const dir = await tempDir();
  t.teardown(() => dir.cleanup());
  const root = join(dir.path, "tree");
  // 5 nested 250-byte names: a 1,254-character blob name, over the 1,024 limit.
  let deep = root;
  for (let i = 0; i < 5; i++) deep = join(deep, String(i).repeat(250));
  await mkdir(deep, { recursive: true });
  await writeFile(join(deep, "f"), "x");
  await writeFile(join(root, "ok"), "ok");
  const azurite = await startStorage(t);
  const storage = parseStorageTarget(azurite.connectionString)!;
  const { server, nc } = await startBus(t);
  await startWorkers(t, server.url, 1, undefined, { storage });
  const tolerant = await runExportJob({ nc, root, container: "names", storage, maxErrors: -1 });
  t.is(tolerant.state, "completed-with-errors");
  t.true(tolerant.errors >= 1);
  t.true(
    tolerant.errorSamples.every((e) => e.code === "InvalidBlobName" || e.operation === "name"),
  );
  t.regex(tolerant.errorSamples[0]!.message, /1,?024|too long/);
  const logs = BlobServiceClient.fromConnectionString(azurite.connectionString).getContainerClient(
    "names-logs",
  );
  const errors = (await logs.getBlobClient(`${tolerant.jobId}/errors.ndjson`).downloadToBuffer())
    .toString()
    .trim()
    .split("\n");
  t.is(errors.length, tolerant.errors, JSON.stringify({ errors, samples: tolerant.errorSamples }));
  t.like(JSON.parse(errors[0]!), { operation: "name" });
  t.true(
    await BlobServiceClient.fromConnectionString(azurite.connectionString)
      .getContainerClient("names")
      .getBlobClient("ok")
      .exists(),
  );

  const strict = await runExportJob({ nc, root, container: "names", storage });
  t.is(strict.state, "failed");
  t.regex(strict.reason, /more than --max-errors 0/);
});

test("only one export per source root at a time; a second one is refused with a clear message", async (t) => {
  const dir = await tempDir();
  t.teardown(() => dir.cleanup());
  const root = join(dir.path, "tree");
  const manifest = await generateTree(root, { depth: 1, fanout: 1, filesPerDir: 2 });
  const azurite = await startStorage(t);
  const { server } = await startBus(t);
  const env = { AZURE_STORAGE_CONNECTION_STRING: azurite.connectionString };
  // No workers: the first job waits.
  const first = spawnCli(
    ["--nats", server.url, "--workers", "0", "export", root, "--container", "first", "--quiet"],
    { env },
  );
  t.teardown(() => {
    first.kill("SIGKILL");
  });
  let jobId = "";
  await waitFor("the first job", async () => {
    jobId = (await listJobs(server.url)).find((j) => j.state === "running")?.jobId ?? "";
    return jobId !== "";
  });
  const second = await runCli(
    ["--nats", server.url, "--workers", "0", "export", root, "--container", "second"],
    { env },
  );
  t.is(second.code, 2);
  t.regex(
    second.stderr,
    new RegExp(`another job \\(${jobId}\\) is running on .*hsmfleet cancel ${jobId}`),
  );
  t.is((await runCli(["--nats", server.url, "cancel", jobId])).code, 0);
  t.like(await exitOf(first), { code: 130 });
  // With the lock released, an export (with workers) goes through.
  const third = await runCli(
    ["--nats", server.url, "--workers", "1", "export", root, "--container", "second", "--json"],
    { env },
  );
  t.is(third.code, 0, third.stderr);
  t.like(JSON.parse(third.stdout), { state: "succeeded", filesExported: manifest.files });
});

test("a worker killed mid-upload of a large file: the job completes, the blob is byte-identical, never committed partial", async (t) => {
  const dir = await tempDir();
  t.teardown(() => dir.cleanup());
  const root = join(dir.path, "tree");
  await mkdir(root);
  const data = contentOf(11, Buffer.from("large"), 160 * 1024 * 1024);
  await writeFile(join(root, "large.bin"), data);
  const azurite = await startStorage(t);
  const storage = parseStorageTarget(azurite.connectionString)!;
  const { server, nc } = await startBus(t);
  const victim = spawnCli(["--nats", server.url, "worker", "--vm-name", "victim"], {
    env: { AZURE_STORAGE_CONNECTION_STRING: azurite.connectionString },
  });
  t.teardown(() => {
    victim.kill("SIGKILL");
  });
  const blob = BlobServiceClient.fromConnectionString(azurite.connectionString)
    .getContainerClient("large")
    .getBlockBlobClient("large.bin");
  const partialSightings: number[] = [];
  // The victim's progress, from its heartbeats (a ping makes every worker answer at once).
  let victimBytes = 0;
  const hb = nc.subscribe(subjects.heartbeatAll, {
    callback: (_err, msg) => {
      const beat = decodeWorkerHeartbeat(msg.data);
      if (beat.vmName === "victim") victimBytes = beat.bytesMoved;
    },
  });
  t.teardown(() => hb.unsubscribe());
  let watching = true;
  let killedWithBlocks = 0;
  const watcher = (async () => {
    while (watching) {
      const props = await blob.getProperties().catch(() => undefined);
      if (props && props.contentLength !== data.length)
        partialSightings.push(props.contentLength ?? -1);
      if (killedWithBlocks === 0) {
        nc.publish(subjects.heartbeatPing);
        if (victimBytes >= 12 * 1024 * 1024) {
          killedWithBlocks = victimBytes;
          victim.kill("SIGKILL");
          // The rest of the fleet: one in-process worker takes the batch over after the ack wait.
          await startWorkers(t, server.url, 1, undefined, { storage });
        }
      }
      await new Promise((r) => setTimeout(r, 25));
    }
  })();
  const summary = await runExportJob({
    nc,
    root,
    container: "large",
    storage,
    blockSizeBytes: 4 * 1024 * 1024,
  });
  watching = false;
  await watcher;
  t.true(
    killedWithBlocks > 0 && killedWithBlocks < data.length,
    `the worker was killed mid-upload (${killedWithBlocks} bytes in)`,
  );
  t.like(summary, { state: "succeeded", errors: 0, filesExported: 1, bytes: data.length });
  t.deepEqual(partialSightings, [], "no partial blob was ever visible");
  const props = await blob.getProperties();
  t.is(Buffer.from(props.contentMD5!).toString("hex"), md5(data));
  t.is(md5(await blob.downloadToBuffer()), md5(data), "byte-identical");
});

test("re-running the same export after the coordinator was killed resumes that job and copies only what is left", async (t) => {
  const dir = await tempDir();
  t.teardown(() => dir.cleanup());
  const root = join(dir.path, "tree");
  const manifest = await generateTree(root, {
    depth: 2,
    fanout: 3,
    filesPerDir: 6,
    sizes: [10, 5000],
  });
  const azurite = await startStorage(t);
  const storage = parseStorageTarget(azurite.connectionString)!;
  const { server } = await startBus(t);
  const env = { AZURE_STORAGE_CONNECTION_STRING: azurite.connectionString };
  const args = [
    "--nats",
    server.url,
    "--workers",
    "0",
    "export",
    root,
    "--container",
    "resumed",
    "--json",
    "--quiet",
  ];
  const first = spawnCli(args, { env });
  t.teardown(() => {
    first.kill("SIGKILL");
  });
  let jobId = "";
  // Up to 90 s: in the suite this file's tests run at once beside another file (the fuzz tests'
  // 10,000-message floods once kept the command from recording its job within 30 s).
  await waitFor(
    "the job",
    async () => {
      jobId = (await listJobs(server.url)).find((j) => j.state === "running")?.jobId ?? "";
      return jobId !== "";
    },
    90_000,
  );
  // The fleet starts working (slowly), then the coordinator dies.
  const uploads: string[] = [];
  await startWorkers(
    t,
    server.url,
    1,
    { beforeWalkShard: () => new Promise((r) => setTimeout(r, 300)) },
    { storage, fileConcurrency: 1 },
  );
  const container = BlobServiceClient.fromConnectionString(
    azurite.connectionString,
  ).getContainerClient("resumed");
  await waitFor("some uploads", async () => {
    let n = 0;
    for await (const _ of container.listBlobsFlat()) n++;
    return n > 3;
  });
  first.kill("SIGKILL");
  await exitOf(first);

  // Refused while the dead coordinator's record still looks fresh; taken over once it is stale.
  const again = await runCli(args, { env, timeoutMs: 120_000 });
  if (again.code === 2 && /another job/.test(again.stderr)) {
    await new Promise((r) => setTimeout(r, 16_000));
    const retry = await runCli(args, { env, timeoutMs: 120_000 });
    uploads.push(retry.stdout);
  } else {
    uploads.push(again.stdout);
  }
  const summary = JSON.parse(uploads[0]!) as {
    jobId: string;
    state: string;
    resumed: boolean;
    filesExported: number;
  };
  t.like(summary, { jobId, state: "succeeded", resumed: true });
  t.is(
    summary.filesExported,
    manifest.files,
    "the job's counters cover the whole tree, before and after the crash",
  );
  let blobs = 0;
  for await (const _ of container.listBlobsFlat()) blobs++;
  t.is(blobs, manifest.entries.length);
});

test("entries Blob cannot hold (a FIFO) are named in the error log, as skipped, not as errors", async (t) => {
  const dir = await tempDir();
  t.teardown(() => dir.cleanup());
  const root = join(dir.path, "tree");
  await mkdir(join(root, "sub"), { recursive: true });
  await writeFile(join(root, "ok"), "ok");
  execFileSync("mkfifo", [join(root, "sub", "pipe")]);
  const azurite = await startStorage(t);
  const storage = parseStorageTarget(azurite.connectionString)!;
  const { server, nc } = await startBus(t);
  await startWorkers(t, server.url, 1, undefined, { storage });
  // The default --max-errors 0: a skipped FIFO does not fail the job.
  const s = await runExportJob({ nc, root, container: "fifo", storage });
  t.like(s, { state: "succeeded", errors: 0, unsupported: 1, filesExported: 1 });
  const logs = BlobServiceClient.fromConnectionString(azurite.connectionString).getContainerClient(
    "fifo-logs",
  );
  const lines = (await logs.getBlobClient(`${s.jobId}/errors.ndjson`).downloadToBuffer())
    .toString()
    .trim()
    .split("\n")
    .map((l) => JSON.parse(l) as Record<string, unknown>);
  t.is(lines.length, 1);
  t.like(lines[0], { path: "sub/pipe", operation: "skip", code: "Unsupported" });
  t.regex(String(lines[0]!["message"]), /FIFO/);
  const text = formatExportSummary(s);
  t.regex(text, /unsupported\s+1 \(skipped; named in .*errors\.ndjson\)/);
  t.regex(text, /errors\s+0\n/);
});

test("export of a single file uploads that one file, named by its base name (as azcopy does)", async (t) => {
  const dir = await tempDir();
  t.teardown(() => dir.cleanup());
  await mkdir(join(dir.path, "tree", "sub"), { recursive: true });
  const file = join(dir.path, "tree", "sub", "report.csv");
  await writeFile(file, "a,b\n1,2\n");
  await writeFile(join(dir.path, "tree", "sub", "other"), "not exported");
  await utimes(file, 1_600_000_000, 1_600_000_000);
  const azurite = await startStorage(t);
  const { server } = await startBus(t);
  const run = await runCli(
    [
      "--nats",
      server.url,
      "--workers",
      "1",
      "export",
      file,
      "--container",
      "single",
      "--prefix",
      "p",
      "--json",
    ],
    { env: { AZURE_STORAGE_CONNECTION_STRING: azurite.connectionString } },
  );
  t.is(run.code, 0, run.stderr + run.stdout);
  t.like(JSON.parse(run.stdout) as object, {
    state: "succeeded",
    filesExported: 1,
    filesFound: 1,
    errors: 0,
  });
  const blobs = await listAll(
    BlobServiceClient.fromConnectionString(azurite.connectionString).getContainerClient("single"),
  );
  t.deepEqual([...blobs.keys()], ["p/report.csv"]);
  t.is(blobs.get("p/report.csv")!.size, 8);
  t.is(blobs.get("p/report.csv")!.metadata["modtime"], formatModtime(1_600_000_000));
});
