import { chmod, chown, mkdir, readFile, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import test from "ava";
import { JobStore, ensureTopology } from "@hsmfleet/bus";
import { HsmFlag } from "@hsmfleet/core";
import { runScanJob } from "@hsmfleet/coordinator";
import { HsmEmulationBackend, hsmAtAbsolutePaths } from "@hsmfleet/fs";
import type { ScanProgress } from "@hsmfleet/coordinator";
import { JobState, WALK_GROUP_DIRECTORIES } from "@hsmfleet/protocol";
import { generateTree, referenceWalk, startNatsServer, tempDir } from "@hsmfleet/testkit";
import { exitOf, listJobs, runCli, spawnCli, startBus, startWorkers, waitFor } from "./helpers.js";

const isRoot = process.getuid?.() === 0;

test("scan of a generated tree matches its manifest, entry for entry", async (t) => {
  const dir = await tempDir();
  t.teardown(() => dir.cleanup());
  const root = join(dir.path, "tree");
  const manifest = await generateTree(root, {
    depth: 2,
    fanout: 3,
    filesPerDir: 6,
    symlinksPerDir: 1,
    fifosPerDir: 1,
    oddNames: true,
    sizes: [0, 1, 4096, 100_000, 3 << 20],
    hsm: {
      states: [
        { flags: HsmFlag.Released | HsmFlag.Exists | HsmFlag.Archived, archiveId: 1 },
        { flags: HsmFlag.Exists | HsmFlag.Archived, archiveId: 1 },
        { flags: HsmFlag.Exists | HsmFlag.Dirty | HsmFlag.Archived, archiveId: 2 },
        { flags: HsmFlag.Exists, archiveId: 0 },
        null,
      ],
    },
  });
  const { server, nc } = await startBus(t);
  await startWorkers(t, server.url, 2);
  const listFile = join(dir.path, "list.ndjson");
  const seen: ScanProgress[] = [];
  const summary = await runScanJob({
    nc,
    root,
    listFile,
    checkpointIntervalMs: 100,
    onProgress: (p) => seen.push(p),
  });

  t.is(summary.state, "succeeded");
  t.is(summary.files, manifest.files);
  t.is(summary.directories, manifest.directories);
  t.is(summary.symlinks, manifest.symlinks);
  t.is(summary.other, manifest.other);
  t.is(summary.bytes, manifest.bytes);
  t.is(summary.errors, 0);
  t.is(summary.vanished, 0);
  t.deepEqual(summary.hsmStates, manifest.hsmStates);
  t.is(
    summary.sizeHistogram.reduce((n, b) => n + b.files, 0),
    manifest.files,
  );
  const big = summary.sizeHistogram.find((b) => b.minBytes <= 3 << 20 && 3 << 20 <= b.maxBytes);
  t.truthy(big, "the 3 MiB files land in the [2 MiB, 4 MiB) bucket");
  t.true(seen.length > 0, "progress was reported");

  // --list: every entry below the root exactly once, with raw names intact.
  const lines = (await readFile(listFile, "utf8")).trim().split("\n");
  const listed = lines.map(
    (l) =>
      JSON.parse(l) as {
        path: string;
        pathBase64?: string;
        type: string;
        size: number;
        hsm: { flags: string } | null;
      },
  );
  const key = (p: Buffer) => p.toString("base64");
  const fromList = listed.map((e) =>
    e.pathBase64 ? e.pathBase64 : key(Buffer.from(e.path, "utf8")),
  );
  t.is(new Set(fromList).size, fromList.length, "no entry listed twice");
  t.deepEqual([...fromList].sort(), manifest.entries.map((e) => key(e.path)).sort());
  t.true(
    listed.some((e) => e.pathBase64 !== undefined),
    "a non-UTF-8 name is carried as base64",
  );
  const byPath = new Map(manifest.entries.map((e) => [key(e.path), e]));
  for (const [i, e] of listed.entries()) {
    const m = byPath.get(fromList[i]!)!;
    t.is(e.type, m.type);
    if (m.type === "file") {
      t.is(e.size, m.size);
      t.is(e.hsm === null ? undefined : Number(e.hsm.flags), m.hsm?.flags);
    }
  }

  // The record in KV says the same, for `hsmfleet status` from anywhere.
  const { jobs } = await ensureTopology(nc);
  const status = await new JobStore(jobs).require(summary.jobId);
  t.is(status.state, JobState.Succeeded);
  t.is(status.scan.files, manifest.files);
  // Sibling directories travel in groups: 1 root shard + one shard per group of up to 16 siblings.
  t.is(status.completed, status.published);
  t.true(status.published >= 1 + Math.ceil((manifest.directories - 1) / WALK_GROUP_DIRECTORIES));
  t.true(status.published < manifest.directories);
});

test("vanished directories are counted and named, and the scan still finishes", async (t) => {
  const dir = await tempDir();
  t.teardown(() => dir.cleanup());
  const root = join(dir.path, "tree");
  await generateTree(root, { depth: 1, fanout: 2, filesPerDir: 3 });
  await mkdir(join(root, "doomed"));
  await writeFile(join(root, "doomed", "f"), "x");
  const ref = await referenceWalk(root);
  const { server, nc } = await startBus(t);
  await startWorkers(t, server.url, 1, {
    beforeWalkShard: async (shard) => {
      if (shard.paths.some((p) => p.toString() === "doomed"))
        await rm(join(root, "doomed"), { recursive: true });
    },
  });
  const summary = await runScanJob({ nc, root });
  t.is(summary.state, "succeeded");
  t.is(summary.vanished, 1);
  t.is(summary.errors, 0);
  t.is(summary.directories, ref.directories, "the vanished directory was seen by its parent");
  t.is(summary.files, ref.files - 1, "its file was never read");
  t.like(summary.errorSamples[0], { path: "doomed", operation: "opendir", code: "ENOENT" });
});

test("unreadable directories are counted and named with EACCES (worker runs as an unprivileged user)", async (t) => {
  if (!isRoot) {
    t.log("skipped: needs root to start a worker as uid 65534 and make a directory it cannot read");
    t.pass();
    return;
  }
  const dir = await tempDir();
  t.teardown(() => dir.cleanup());
  const root = join(dir.path, "tree");
  await generateTree(root, { depth: 1, fanout: 2, filesPerDir: 4 });
  await mkdir(join(root, "locked", "inner"), { recursive: true });
  await writeFile(join(root, "locked", "secret"), "s");
  const ref = await referenceWalk(root);
  await chmod(join(root, "locked"), 0o000);
  const { server, nc } = await startBus(t);
  const worker = spawnCli(["--nats", server.url, "worker", "--concurrency", "4"], {
    uid: 65534,
    gid: 65534,
  });
  let workerErr = "";
  worker.stderr?.on("data", (d: Buffer) => (workerErr += d.toString()));
  t.teardown(() => {
    worker.kill("SIGKILL");
  });
  const summary = await runScanJob({ nc, root });
  t.is(summary.state, "completed-with-errors", workerErr);
  t.is(summary.errors, 1);
  t.like(summary.errorSamples[0], { path: "locked", operation: "opendir", code: "EACCES" });
  t.is(summary.directories, ref.directories - 1, "locked/inner was never seen");
  t.is(summary.files, ref.files - 1, "locked/secret was never seen");
});

test("a scan root that does not exist, or is a file, fails with a clear message", async (t) => {
  const { server } = await startBus(t);
  const missing = await runCli([
    "--nats",
    server.url,
    "--workers",
    "0",
    "scan",
    "/nonexistent/hsmfleet-root",
  ]);
  t.is(missing.code, 2);
  t.regex(missing.stderr, /scan root \/nonexistent\/hsmfleet-root does not exist/);
  const dir = await tempDir();
  t.teardown(() => dir.cleanup());
  await writeFile(join(dir.path, "file"), "x");
  const file = await runCli([
    "--nats",
    server.url,
    "--workers",
    "0",
    "scan",
    join(dir.path, "file"),
  ]);
  t.is(file.code, 2);
  t.regex(file.stderr, /is not a directory/);
});

test("a worker killed in the middle of a scan loses nothing", async (t) => {
  const dir = await tempDir();
  t.teardown(() => dir.cleanup());
  const root = join(dir.path, "tree");
  await generateTree(root, { depth: 4, fanout: 5, filesPerDir: 10, sizes: [0, 10, 1000] });
  const ref = await referenceWalk(root);
  const { server, nc } = await startBus(t);
  const victim = spawnCli([
    "--nats",
    server.url,
    "worker",
    "--concurrency",
    "1",
    "--vm-name",
    "victim",
  ]);
  const survivor = spawnCli([
    "--nats",
    server.url,
    "worker",
    "--concurrency",
    "1",
    "--vm-name",
    "survivor",
  ]);
  t.teardown(() => {
    victim.kill("SIGKILL");
    survivor.kill("SIGKILL");
  });
  let killedAt = -1;
  const summary = await runScanJob({
    nc,
    root,
    checkpointIntervalMs: 50,
    onProgress: (p) => {
      if (killedAt < 0 && p.entries > 0) {
        killedAt = p.entries;
        victim.kill("SIGKILL");
      }
    },
  });
  await exitOf(victim);
  t.true(killedAt > 0 && killedAt < ref.files + ref.directories, `killed at ${killedAt} entries`);
  t.is(summary.state, "succeeded");
  t.deepEqual(
    {
      files: summary.files,
      directories: summary.directories,
      symlinks: summary.symlinks,
      other: summary.other,
      bytes: summary.bytes,
      errors: summary.errors,
    },
    {
      files: ref.files,
      directories: ref.directories,
      symlinks: ref.symlinks,
      other: ref.other,
      bytes: ref.bytes,
      errors: 0,
    },
  );
});

test("redelivered shards do not double counts (deterministic message ids)", async (t) => {
  const dir = await tempDir();
  t.teardown(() => dir.cleanup());
  const root = join(dir.path, "tree");
  const manifest = await generateTree(root, { depth: 2, fanout: 3, filesPerDir: 4 });
  const { server, nc } = await startBus(t);
  const failedOnce = new Set<string>();
  await startWorkers(t, server.url, 2, {
    // Publish everything, then fail before the ack: JetStream redelivers the shard, which
    // publishes its children and result again under the same ids.
    afterWalkShard: (shard) => {
      if (!failedOnce.has(shard.shardId)) {
        failedOnce.add(shard.shardId);
        throw new Error("injected failure after publishing");
      }
    },
  });
  const summary = await runScanJob({ nc, root });
  t.is(summary.files, manifest.files);
  t.is(summary.directories, manifest.directories);
  t.is(summary.bytes, manifest.bytes);
  const { jobs } = await ensureTopology(nc);
  const status = await new JobStore(jobs).require(summary.jobId);
  t.is(failedOnce.size, status.completed, "every shard was processed twice, and counted once");
  t.true(status.completed > 1);
});

test("jobs, status and cancel work from another process while a scan runs", async (t) => {
  const dir = await tempDir();
  t.teardown(() => dir.cleanup());
  const root = join(dir.path, "tree");
  await generateTree(root, { depth: 1, fanout: 2, filesPerDir: 2 });
  const { server } = await startBus(t);
  // No workers anywhere: the job waits for the fleet.
  const scan = spawnCli(["--nats", server.url, "--workers", "0", "scan", root, "--json"]);
  t.teardown(() => {
    scan.kill("SIGKILL");
  });
  let scanErr = "";
  let scanExit: number | null | undefined;
  scan.stderr?.on("data", (d: Buffer) => (scanErr += d.toString()));
  scan.once("exit", (code) => (scanExit = code));
  let jobId = "";
  // Each look is a CLI run (~1 s on a loaded machine); the scan's own start is bounded by the
  // test's timeout, and a scan that exits instead fails the wait with its stderr.
  await waitFor(
    "the job to be listed",
    async () => {
      if (scanExit !== undefined) throw new Error(`the scan exited (${scanExit}): ${scanErr}`);
      jobId = (await listJobs(server.url)).find((j) => j.state === "running")?.jobId ?? "";
      return jobId !== "";
    },
    90_000,
  ).catch((err: unknown) => {
    throw new Error(`${(err as Error).message}; the scan's stderr so far: ${scanErr}`);
  });
  const status = await runCli(["--nats", server.url, "status", jobId, "--json"]);
  t.is(status.code, 0);
  t.like(JSON.parse(status.stdout), { jobId, state: "running", kind: "scan", outstanding: 1 });
  const table = await runCli(["--nats", server.url, "jobs"]);
  t.regex(table.stdout, new RegExp(`${jobId}\\s+scan\\s+running`));

  const cancel = await runCli(["--nats", server.url, "cancel", jobId]);
  t.is(cancel.code, 0, cancel.stderr);
  t.regex(cancel.stdout, /cancelled/);
  t.like(await exitOf(scan), { code: 130 });
  const after = await runCli(["--nats", server.url, "status", jobId, "--json"]);
  t.is((JSON.parse(after.stdout) as { state: string }).state, "cancelled");
  const unknown = await runCli(["--nats", server.url, "status", "no-such-job"]);
  t.is(unknown.code, 2);
  t.regex(unknown.stderr, /no job no-such-job/);
});

test("a coordinator killed mid-scan is resumed with --resume; counts and --list are exact", async (t) => {
  const dir = await tempDir();
  t.teardown(() => dir.cleanup());
  const root = join(dir.path, "tree");
  const manifest = await generateTree(root, { depth: 3, fanout: 4, filesPerDir: 8 });
  const { server, nc } = await startBus(t);
  const listFile = join(dir.path, "list.ndjson");
  const first = spawnCli([
    "--nats",
    server.url,
    "--workers",
    "0",
    "scan",
    root,
    "--list",
    listFile,
  ]);
  t.teardown(() => {
    first.kill("SIGKILL");
  });
  const { jobs } = await ensureTopology(nc);
  const store = new JobStore(jobs);
  let jobId = "";
  await waitFor("the job record", async () => {
    jobId = (await store.list())[0]?.spec.jobId ?? "";
    return jobId !== "";
  });
  // Let the fleet do part of the walk while the coordinator is alive, then kill it.
  // Slowed down so the kill lands mid-walk.
  const workers = await startWorkers(t, server.url, 1, {
    beforeWalkShard: () => new Promise((r) => setTimeout(r, 500)),
  });
  await waitFor("some progress", async () => (await store.require(jobId)).scan.files > 0);
  const atKill = await store.require(jobId);
  first.kill("SIGKILL");
  await exitOf(first);
  t.log(
    `killed the coordinator at ${atKill.scan.files} files, ${atKill.completed}/${atKill.published} directories`,
  );
  t.is(atKill.state, JobState.Running);
  t.true(workers[0]!.stats.itemsDone > 0);

  const resumed = await runCli([
    "--nats",
    server.url,
    "--workers",
    "1",
    "scan",
    "--resume",
    jobId,
    "--json",
  ]);
  t.is(resumed.code, 0, resumed.stderr);
  const summary = JSON.parse(resumed.stdout) as {
    files: number;
    directories: number;
    bytes: number;
    state: string;
  };
  t.like(summary, {
    state: "succeeded",
    files: manifest.files,
    directories: manifest.directories,
    bytes: manifest.bytes,
  });
  const lines = (await readFile(listFile, "utf8")).trim().split("\n");
  t.is(lines.length, manifest.entries.length, "every entry listed exactly once across the crash");
  t.is(new Set(lines.map((l) => (JSON.parse(l) as { path: string }).path)).size, lines.length);
});

test("embedded default: no --nats starts a local nats-server, runs in-process workers, and keeps job history", async (t) => {
  const dir = await tempDir();
  t.teardown(() => dir.cleanup());
  const root = join(dir.path, "tree");
  const manifest = await generateTree(root, { depth: 1, fanout: 3, filesPerDir: 5 });
  const stateDir = join(dir.path, "state");
  const env = { HSMFLEET_NATS_URL: "" };
  const run = await runCli(["--state-dir", stateDir, "--workers", "2", "scan", root, "--json"], {
    env,
  });
  t.is(run.code, 0, run.stderr);
  const summary = JSON.parse(run.stdout) as {
    jobId: string;
    files: number;
    directories: number;
    symlinks: number;
    bytes: number;
    errors: number;
  };
  t.like(summary, {
    files: manifest.files,
    directories: manifest.directories,
    bytes: manifest.bytes,
    errors: 0,
  });
  // The server stopped with the command; a later command finds the job in the persisted store.
  const jobs = await runCli(["--state-dir", stateDir, "jobs"], { env });
  t.is(jobs.code, 0, jobs.stderr);
  t.regex(jobs.stdout, new RegExp(`${summary.jobId}\\s+scan\\s+succeeded`));
});

test("children finishing before their parent reports never end the walk early (spawn notices)", async (t) => {
  const dir = await tempDir();
  t.teardown(() => dir.cleanup());
  const root = join(dir.path, "tree");
  // 600 subdirectories: more than one announcement window (256), so spawn notices are used too.
  await mkdir(root);
  for (let i = 0; i < 600; i++) {
    await mkdir(join(root, `d${i}`));
    await writeFile(join(root, `d${i}`, "f"), "x");
  }
  const ref = await referenceWalk(root);
  const { server, nc } = await startBus(t);
  await startWorkers(t, server.url, 2, {
    // The root reports long after its children were published and finished.
    beforeWalkResult: (shard) =>
      shard.depth === 0 ? new Promise((r) => setTimeout(r, 1500)) : undefined,
  });
  const summary = await runScanJob({ nc, root });
  t.like(summary, {
    state: "succeeded",
    files: ref.files,
    directories: ref.directories,
    errors: 0,
  });
});

test("a NATS server without JetStream is a clear error, and the command exits instead of hanging", async (t) => {
  const server = await startNatsServer({ jetstream: false });
  t.teardown(() => server.stop());
  const dir = await tempDir();
  t.teardown(() => dir.cleanup());
  const run = await runCli(["--nats", server.url, "--workers", "1", "scan", dir.path], {
    timeoutMs: 30_000,
  });
  t.is(run.signal, null, "exited by itself");
  t.is(run.code, 2);
  t.regex(run.stderr, /has no JetStream \(start nats-server with -js\)/);
});

test("a scan run without root, which cannot read trusted.hsm, says so once instead of calling every file new silently", async (t) => {
  if (process.getuid?.() !== 0) return t.pass("needs root to set trusted.hsm and drop to nobody");
  const dir = await tempDir();
  t.teardown(() => dir.cleanup());
  await chmod(dir.path, 0o755);
  const root = join(dir.path, "tree");
  await mkdir(root);
  for (let i = 0; i < 5; i++) await writeFile(join(root, `f${i}`), "data");
  const hsm = hsmAtAbsolutePaths(new HsmEmulationBackend({ xattr: "trusted.hsm" }));
  for (let i = 0; i < 5; i++) await hsm.setFlags(Buffer.from(join(root, `f${i}`)), 0x9, 0, 1);
  await mkdir(join(dir.path, "state"));
  await chown(join(dir.path, "state"), 65534, 65534);
  const { server } = await startBus(t);
  const child = spawnCli(["--nats", server.url, "--workers", "1", "scan", root, "--quiet"], {
    uid: 65534,
    gid: 65534,
    env: { HSMFLEET_STATE_DIR: join(dir.path, "state") },
  });
  let stdout = "";
  let stderr = "";
  child.stdout?.on("data", (d: Buffer) => (stdout += d.toString()));
  child.stderr?.on("data", (d: Buffer) => (stderr += d.toString()));
  const { code } = await exitOf(child);
  t.is(code, 0, stderr);
  const warnings = stderr.split("\n").filter((l) => l.includes("trusted.hsm"));
  t.is(warnings.length, 1, stderr);
  t.regex(warnings[0]!, /not root \(uid 65534\).*trusted\.hsm.*cannot be read.*HSM states.*new/);
  t.regex(stdout, /HSM states \(regular files\): not readable without root/);
});
