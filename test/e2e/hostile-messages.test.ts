/**
 * Issue 14, items 4–7: anyone who can publish on NATS can send hsmfleet messages. Each test runs
 * the real CLI (coordinator and workers as processes) against a real nats-server and Azurite and
 * publishes forged messages with a plain NATS connection, as an attacker would.
 */
import { mkdir, readdir, stat, symlink, writeFile, readFile } from "node:fs/promises";
import { join } from "node:path";
import test from "ava";
import type { ExecutionContext } from "ava";
import { ContainerClient } from "@azure/storage-blob";
import { JobStore, connectBus, ensureTopology, jetstream, sealHeaders } from "@hsmfleet/bus";
import type { NatsConnection } from "@hsmfleet/bus";
import {
  encodeChunk,
  encodeItemResult,
  encodeWalkShard,
  newItemResult,
  subjects,
} from "@hsmfleet/protocol";
import { tempDir } from "@hsmfleet/testkit";
import { exitOf, runCli, spawnCli, startBus, startStorage, waitFor } from "./helpers.js";

/** What only root may read: it must never reach a blob. */
const SENTINEL = "SENTINEL-outside-the-job-root-4f1c";

interface Setup {
  dir: string;
  root: string;
  outside: string;
  state: string;
  url: string;
  nc: NatsConnection;
  env: NodeJS.ProcessEnv;
  connectionString: string;
}

/** A tree of `files` small files, a directory outside it holding the sentinel, a bus, Azurite. */
const setUp = async (t: ExecutionContext, files: number): Promise<Setup> => {
  const tmp = await tempDir();
  t.teardown(() => tmp.cleanup());
  const root = join(tmp.path, "tree");
  const outside = join(tmp.path, "outside");
  await mkdir(join(root, "d"), { recursive: true });
  await mkdir(outside);
  await mkdir(join(outside, "sub"));
  await writeFile(join(outside, "secret"), `${SENTINEL}\n`);
  await writeFile(join(outside, "sub", "secret"), `${SENTINEL}\n`);
  for (let i = 0; i < files; i++)
    await writeFile(join(root, "d", `f${i}`), Buffer.alloc(4096, 97 + (i % 26)));
  const azurite = await startStorage(t);
  const { server } = await startBus(t);
  const nc = await connectBus({ servers: server.url, reconnectForever: false });
  t.teardown(() => nc.close());
  const state = join(tmp.path, "state");
  return {
    dir: tmp.path,
    root,
    outside,
    state,
    url: server.url,
    nc,
    connectionString: azurite.connectionString,
    env: { AZURE_STORAGE_CONNECTION_STRING: azurite.connectionString },
  };
};

/** Starts a slow export through the CLI (in-process workers); resolves its job id from the bus. */
const slowExport = async (s: Setup, container: string, extra: string[] = []) => {
  const seen = s.nc.subscribe(subjects.walkAll, { max: 1 });
  const child = spawnCli(
    [
      "--nats",
      s.url,
      "--state-dir",
      s.state,
      "--workers",
      "1",
      "export",
      s.root,
      "--container",
      container,
      "--max-requests-per-second",
      "40",
      "--json",
      "--quiet",
      ...extra,
    ],
    { env: s.env },
  );
  let stdout = "";
  let stderr = "";
  child.stdout?.on("data", (d: Buffer) => (stdout += d.toString()));
  child.stderr?.on("data", (d: Buffer) => (stderr += d.toString()));
  let jobId = "";
  for await (const m of seen) jobId = m.subject.split(".")[2] ?? "";
  const done = exitOf(child).then((e) => ({ ...e, stdout, stderr }));
  return { jobId, done, kill: () => child.kill("SIGKILL") };
};

const blobsOf = async (s: Setup, container: string): Promise<Map<string, string>> => {
  const client = new ContainerClient(s.connectionString, container);
  const blobs = new Map<string, string>();
  for await (const b of client.listBlobsFlat()) {
    const body = await client.getBlobClient(b.name).downloadToBuffer();
    blobs.set(b.name, body.toString("latin1"));
  }
  return blobs;
};

/** Every file under `dir` (recursive), relative names. */
const filesUnder = async (dir: string): Promise<string[]> => {
  const out: string[] = [];
  for (const e of await readdir(dir, { recursive: true, withFileTypes: true }))
    if (!e.isDirectory()) out.push(join(e.parentPath, e.name).slice(dir.length + 1));
  return out.sort();
};

const assertNothingOutside = async (t: ExecutionContext, s: Setup, container: string) => {
  const blobs = await blobsOf(s, container);
  for (const [name, body] of blobs) {
    t.false(body.includes(SENTINEL), `blob ${name} holds the sentinel from outside the root`);
    t.false(name.startsWith("stolen"), `blob ${name} was named by a message`);
  }
  t.deepEqual(
    await filesUnder(s.outside),
    ["secret", "sub/secret"],
    "nothing appeared outside the root",
  );
  return blobs;
};

test.serial(
  "item 4: forged Chunk and walk shards never read outside the job root, nor through symlinks in the tree",
  async (t) => {
    const s = await setUp(t, 60);
    // A user-owned symlink inside the tree to a directory outside it.
    await symlink(s.outside, join(s.root, "lnk"));
    const job = await slowExport(s, "four", ["--max-errors", "-1"]);
    t.teardown(job.kill);
    const js = jetstream(s.nc);
    const secret = await stat(join(s.outside, "secret"), { bigint: true });
    const size = Number(secret.size);
    await js.publish(
      subjects.chunk(job.jobId),
      encodeChunk({
        jobId: job.jobId,
        chunkId: "forged.k0.0",
        path: Buffer.from("../outside/secret"),
        offset: 0,
        length: size,
        firstBlock: 0,
        blockCount: 1,
        blockSize: 4 * 1024 * 1024,
        fileSize: size,
        fileMtimeSec: Number(secret.mtimeNs / 1_000_000_000n),
        fileMtimeNsec: Number(secret.mtimeNs % 1_000_000_000n),
        index: 0,
        count: 1,
        blobName: "stolen/shadow",
        etag: "",
        contentMd5: Buffer.alloc(0),
        mode: 0o100600,
        uid: 0,
        gid: 0,
      }),
      { msgID: "forged-chunk" },
    );
    for (const [i, p] of ["../outside", "lnk/sub", "lnk/../../outside", "/"].entries()) {
      await js.publish(
        subjects.walk(job.jobId),
        encodeWalkShard({
          jobId: job.jobId,
          paths: [Buffer.from(p)],
          depth: 1,
          shardId: `forged-${i}`,
        }),
        { msgID: `forged-walk-${i}` },
      );
    }
    const exit = await job.done;
    const blobs = await assertNothingOutside(t, s, "four");
    t.is(exit.code, 0, exit.stderr);
    const summary = JSON.parse(exit.stdout) as { state: string; filesExported: number };
    t.is(summary.state, "succeeded");
    t.false(blobs.has("stolen/shadow"));
    t.false(
      [...blobs.keys()].some((n) => n.startsWith("lnk/")),
      "nothing exported through lnk",
    );
    t.is([...blobs.keys()].filter((n) => n.startsWith("d/f")).length, 60);
  },
);

test.serial(
  "item 5: an undecodable work item is terminated with a named error and never wedges a worker slot",
  async (t) => {
    const s = await setUp(t, 3);
    // One standalone worker with a single walk slot.
    const worker = spawnCli(
      ["--nats", s.url, "--log-level", "info", "worker", "--concurrency", "1"],
      {
        env: s.env,
      },
    );
    let workerLog = "";
    worker.stdout?.on("data", (d: Buffer) => (workerLog += d.toString()));
    worker.stderr?.on("data", (d: Buffer) => (workerLog += d.toString()));
    t.teardown(() => worker.kill("SIGKILL"));
    await waitFor(
      "the worker's first heartbeat",
      () => workerLog.includes("worker started"),
      30_000,
    );
    const js = jetstream(s.nc);
    // Not protobuf: the length of field 1 runs past the end.
    await js.publish("hsmfleet.work.nosuchjob.walk", Buffer.from("0a05616263", "hex"), {
      msgID: "garbage-1",
    });
    await js.publish("hsmfleet.work.nosuchjob.xfer", Buffer.from([0xff, 0xff, 0xff]), {
      msgID: "garbage-2",
    });
    const run = await runCli(
      [
        "--nats",
        s.url,
        "--state-dir",
        s.state,
        "--workers",
        "0",
        "export",
        s.root,
        "--container",
        "five",
        "--json",
        "--quiet",
      ],
      { env: s.env, timeoutMs: 60_000 },
    );
    t.is(run.code, 0, `export must not hang behind a bad message: ${run.stderr}`);
    t.like(JSON.parse(run.stdout || "{}") as object, { state: "succeeded", filesExported: 3 });
    t.regex(workerLog, /UndecodableWorkItemError|undecodable/i, "the worker names the bad message");
  },
);

test.serial(
  "item 5: an undecodable work item naming a running job goes to that job's error log",
  async (t) => {
    const s = await setUp(t, 40);
    const job = await slowExport(s, "fivejob");
    t.teardown(job.kill);
    await jetstream(s.nc).publish(subjects.transfer(job.jobId), Buffer.from([0xff, 0xff, 0xff]), {
      msgID: "garbage-job",
    });
    const exit = await job.done;
    t.is(exit.code, 0, exit.stderr);
    t.like(JSON.parse(exit.stdout) as object, { state: "succeeded", filesExported: 40 });
    const logs = (await readdir(s.state, { recursive: true })).filter((f) =>
      f.endsWith("errors.ndjson"),
    );
    const text = (await Promise.all(logs.map((f) => readFile(join(s.state, f), "utf8")))).join("");
    t.regex(text, /UNDECODABLE_WORK_ITEM/);
  },
);

test.serial("item 6: forged results never end a job early; every file is exported", async (t) => {
  const s = await setUp(t, 240);
  const job = await slowExport(s, "six");
  t.teardown(job.kill);
  const js = jetstream(s.nc);
  for (let i = 0; i < 10; i++) {
    await js.publish(
      subjects.itemResult(job.jobId),
      encodeItemResult(
        newItemResult({ jobId: job.jobId, itemId: `forged-${i}`, kind: "transfer", children: 0 }),
      ),
      { msgID: `forged-result-${i}` },
    );
  }
  const exit = await job.done;
  t.is(exit.code, 0, exit.stderr);
  const summary = JSON.parse(exit.stdout) as { state: string; filesExported: number };
  t.is(summary.state, "succeeded");
  t.is(summary.filesExported, 240, "the job ran to its real end");
  const blobs = await blobsOf(s, "six");
  t.is([...blobs.keys()].filter((n) => n.startsWith("d/f")).length, 240);
});

test.serial(
  "item 7: a garbage result is logged with its subject and sequence and dropped; the job finishes",
  async (t) => {
    const s = await setUp(t, 40);
    const job = await slowExport(s, "seven");
    t.teardown(job.kill);
    await jetstream(s.nc).publish(
      subjects.itemResult(job.jobId),
      Buffer.from("0a05616263", "hex"),
      { msgID: "garbage-result" },
    );
    const exit = await job.done;
    t.is(exit.code, 0, exit.stderr);
    t.like(JSON.parse(exit.stdout) as object, { state: "succeeded", filesExported: 40 });
    t.regex(exit.stderr, new RegExp(`hsmfleet\\.result\\.${job.jobId}\\.item`));
    const jobs = await runCli(["--nats", s.url, "jobs", "--json"]);
    const listed = JSON.parse(jobs.stdout) as Array<{ jobId: string; state: string }>;
    t.is(listed.find((j) => j.jobId === job.jobId)?.state, "succeeded");
  },
);

test.serial(
  "item 6: even results sealed with the job's key count only for ids the job published",
  async (t) => {
    const s = await setUp(t, 120);
    const job = await slowExport(s, "sixsealed");
    t.teardown(job.kill);
    // The worst case short of a compromised worker: the forger read the job record and its key.
    const { jobs } = await ensureTopology(s.nc);
    const key = (await new JobStore(jobs).require(job.jobId)).spec.itemKey;
    const js = jetstream(s.nc);
    const subject = subjects.itemResult(job.jobId);
    for (let i = 0; i < 10; i++) {
      const data = encodeItemResult(
        newItemResult({ jobId: job.jobId, itemId: `forged-${i}`, kind: "transfer" }),
      );
      await js.publish(subject, data, {
        msgID: `sealed-forged-${i}`,
        headers: sealHeaders(key, subject, data),
      });
    }
    // A result that claims children it does not name is inconsistent: dropped as well.
    const lying = encodeItemResult(
      newItemResult({ jobId: job.jobId, itemId: "forged-x", kind: "walk", children: 3 }),
    );
    await js.publish(subject, lying, {
      msgID: "sealed-lying",
      headers: sealHeaders(key, subject, lying),
    });
    const exit = await job.done;
    t.is(exit.code, 0, exit.stderr);
    const summary = JSON.parse(exit.stdout) as { state: string; filesExported: number };
    t.is(summary.state, "succeeded");
    t.is(summary.filesExported, 120, "the job ran to its real end");
    t.regex(exit.stderr, /not-outstanding/);
  },
);

test.serial(
  "item 6: unsolicited walk shards never end an import early; every large file arrives",
  async (t) => {
    const s = await setUp(t, 0);
    const client = new ContainerClient(s.connectionString, "sixin");
    await client.create();
    const big = Buffer.alloc(3 * 1024 * 1024, 0x5a);
    for (let i = 0; i < 5; i++) await client.getBlockBlobClient(`big/l${i}`).uploadData(big);
    const target = join(s.dir, "target");
    await mkdir(target);
    const seen = s.nc.subscribe(subjects.walkAll, { max: 1 });
    const child = spawnCli(
      [
        "--nats",
        s.url,
        "--state-dir",
        s.state,
        "--workers",
        "1",
        "import",
        target,
        "--container",
        "sixin",
        "--mode",
        "full",
        "--chunk-size",
        "1MiB",
        "--max-requests-per-second",
        "10",
        "--json",
        "--quiet",
      ],
      { env: s.env },
    );
    t.teardown(() => child.kill("SIGKILL"));
    let stdout = "";
    let stderr = "";
    child.stdout?.on("data", (d: Buffer) => (stdout += d.toString()));
    child.stderr?.on("data", (d: Buffer) => (stderr += d.toString()));
    let jobId = "";
    for await (const m of seen) jobId = m.subject.split(".")[2] ?? "";
    const js = jetstream(s.nc);
    for (let i = 0; i < 4; i++) {
      const paths = [Buffer.from(`nothing-here-${i}`)];
      await js.publish(
        subjects.walk(jobId),
        encodeWalkShard({ jobId, paths, depth: 0, shardId: `unsolicited-${i}` }),
        { msgID: `unsolicited-${i}` },
      );
    }
    const exit = await exitOf(child);
    t.is(exit.code, 0, stderr);
    const summary = JSON.parse(stdout) as { state: string; importedFiles: number };
    t.is(summary.state, "succeeded");
    t.is(summary.importedFiles, 5, stdout);
    for (let i = 0; i < 5; i++) t.is((await stat(join(target, "big", `l${i}`))).size, big.length);
    t.deepEqual(await filesUnder(s.outside), ["secret", "sub/secret"]);
  },
);

test.serial(
  "item 4: a chunk sealed with the job's own key but naming a path outside the root is refused as unsafe; nothing is read",
  async (t) => {
    const s = await setUp(t, 30);
    const job = await slowExport(s, "foursealed");
    t.teardown(job.kill);
    const { jobs } = await ensureTopology(s.nc);
    const key = (await new JobStore(jobs).require(job.jobId)).spec.itemKey;
    const secret = await stat(join(s.outside, "secret"), { bigint: true });
    const subject = subjects.chunk(job.jobId);
    const data = encodeChunk({
      jobId: job.jobId,
      chunkId: "sealed-forged.k0.0",
      path: Buffer.from("../outside/secret"),
      offset: 0,
      length: Number(secret.size),
      firstBlock: 0,
      blockCount: 1,
      blockSize: 4 * 1024 * 1024,
      fileSize: Number(secret.size),
      fileMtimeSec: Number(secret.mtimeNs / 1_000_000_000n),
      fileMtimeNsec: Number(secret.mtimeNs % 1_000_000_000n),
      index: 0,
      count: 1,
      blobName: "",
      etag: "",
      contentMd5: Buffer.alloc(0),
      mode: 0o100600,
      uid: 0,
      gid: 0,
    });
    await jetstream(s.nc).publish(subject, data, {
      msgID: "sealed-forged-chunk",
      headers: sealHeaders(key, subject, data),
    });
    const exit = await job.done;
    await assertNothingOutside(t, s, "foursealed");
    t.regex(exit.stderr, /UNSAFE_WORK_ITEM[^\n]*'\.\.' path component[^\n]*UnsafeWorkItemError/);
    t.is(exit.code, 0, exit.stderr);
    t.like(JSON.parse(exit.stdout) as object, { state: "succeeded", filesExported: 30 });
  },
);
