/**
 * Issue 14: every NATS message is untrusted input. A fuzz test of every decoder and handler:
 *
 * 1. In process, FUZZ_CASES (10,000) cases per subject — random bytes and mutated valid messages,
 *    unsealed and sealed with the job's real key — through what the worker and the coordinator run
 *    on receipt (admitWorkItem for work items, decoders plus the ResultLedger for results, the
 *    decoders of heartbeats, HSM progress and cancel): nothing throws but a named refusal or a
 *    decoder error (which the receivers catch), and an admitted item never names a path that
 *    leaves the job root.
 * 2. Through real processes: a standalone worker and a real export (CLI) while mutated messages
 *    go to every subject; the worker stays healthy, the job completes with exactly its files, the
 *    sentinel outside the root is in no blob and nothing appears outside the tree.
 */
import { mkdir, readdir, symlink, writeFile } from "node:fs/promises";
import { join, resolve } from "node:path";
import test from "ava";
import { ContainerClient } from "@azure/storage-blob";
import { JobStore, connectBus, ensureTopology, jetstream, sealHeaders } from "@hsmfleet/bus";
import { ResultLedger } from "@hsmfleet/coordinator";
import {
  JobKind,
  decodeErrorBatch,
  decodeHsmActionResult,
  decodeHsmCancel,
  decodeHsmProgress,
  decodeItemResult,
  decodeTransferBatch,
  decodeWorkerHeartbeat,
  encodeChunk,
  encodeErrorBatch,
  encodeHsmActionList,
  encodeHsmActionResult,
  encodeHsmCancel,
  encodeHsmProgress,
  encodeItemResult,
  encodeTransferBatch,
  encodeWalkShard,
  encodeWorkerHeartbeat,
  newItemResult,
  newJobSpec,
  newJobStatus,
  subjects,
} from "@hsmfleet/protocol";
import type { JobStatus } from "@hsmfleet/protocol";
import { tempDir } from "@hsmfleet/testkit";
import {
  CHUNK_RULES,
  HSM_ACTION_LIST_RULES,
  RefusedWorkItemError,
  TRANSFER_BATCH_RULES,
  WALK_SHARD_RULES,
  admitWorkItem,
  blobNameFor,
  unsafePathReason,
} from "@hsmfleet/worker";
import { exitOf, spawnCli, startBus, startStorage, waitFor } from "./helpers.js";

/** Cases per subject in process (CI runs all of them). */
const FUZZ_CASES = Number(process.env["HSMFLEET_FUZZ_CASES"] ?? 10_000);
/** Mutated messages per subject sent through the real processes. */
const LIVE_CASES = Number(process.env["HSMFLEET_FUZZ_LIVE_CASES"] ?? 150);

/** A small deterministic PRNG (mulberry32): a failure names its seed and case. */
const prng = (seed: number) => {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
};
type Rand = ReturnType<typeof prng>;
const int = (r: Rand, n: number) => Math.floor(r() * n);

const randomBytes = (r: Rand): Buffer => {
  const b = Buffer.alloc(int(r, 300));
  for (let i = 0; i < b.length; i++) b[i] = int(r, 256);
  return b;
};

/** Flips, inserts, deletes, truncates or duplicates bytes of a valid message. */
const mutate = (r: Rand, valid: Uint8Array): Buffer => {
  let b = Buffer.from(valid);
  const rounds = 1 + int(r, 4);
  for (let k = 0; k < rounds; k++) {
    const at = int(r, b.length + 1);
    switch (int(r, 6)) {
      case 0:
        if (b.length > 0) b[Math.min(at, b.length - 1)] = int(r, 256);
        break;
      case 1:
        b = Buffer.concat([b.subarray(0, at), Buffer.from([int(r, 256)]), b.subarray(at)]);
        break;
      case 2:
        b = Buffer.concat([b.subarray(0, at), b.subarray(at + 1 + int(r, 8))]);
        break;
      case 3:
        b = b.subarray(0, at);
        break;
      case 4:
        b = Buffer.concat([b, b.subarray(at)]);
        break;
      default:
        // A varint length or tag pushed to its maximum.
        if (b.length > 0) b[Math.min(at, b.length - 1)] = 0xff;
    }
  }
  return b;
};

const HOSTILE_PATHS = [
  "../outside/secret",
  "../../../../etc",
  "/etc/shadow",
  "d/../../outside",
  "d//f1",
  "./d",
  "d/",
  "d\0x",
  "lnk/sub",
  "d/f1",
  "",
];

const ROOT = "/srv/tree";
const fuzzJob = (kind: JobKind): JobStatus =>
  newJobStatus(newJobSpec({ jobId: "fuzzjob", kind, root: Buffer.from(ROOT), prefix: "p" }));

/** Valid messages of each work subject, with hostile paths here and there. */
const validWork = (r: Rand, jobId: string) => {
  const path = Buffer.from(HOSTILE_PATHS[int(r, HOSTILE_PATHS.length)]!);
  const entry = {
    path,
    type: 1,
    size: 100,
    mode: 0o100644,
    uid: 0,
    gid: 0,
    mtimeSec: 1,
    mtimeNsec: 0,
    ino: 1n,
    hsm: undefined,
  };
  return {
    walk: encodeWalkShard({ jobId, paths: [path], depth: int(r, 4), shardId: `fz${int(r, 1e6)}` }),
    xfer: encodeTransferBatch({
      jobId,
      batchId: `fz${int(r, 1e6)}`,
      shardId: "s",
      sequence: 0,
      entries: [entry as never],
      blobNames: [r() < 0.5 ? "stolen/shadow" : path.toString()],
    }),
    chunk: encodeChunk({
      jobId,
      chunkId: `fz${int(r, 1e6)}`,
      path,
      offset: int(r, 3) * 10,
      length: 10,
      firstBlock: 0,
      blockCount: 1,
      blockSize: 10,
      fileSize: 30,
      fileMtimeSec: 1,
      fileMtimeNsec: 0,
      index: 0,
      count: 1,
      blobName: r() < 0.5 ? "stolen/shadow" : path.toString(),
      etag: "",
      contentMd5: Buffer.alloc(0),
      mode: 0o100644,
      uid: 0,
      gid: 0,
    }),
    hsm: encodeHsmActionList({
      jobId,
      listId: `0-${int(r, 9)}`,
      archiveId: 1,
      fsname: "",
      flags: 0n,
      partition: 0,
      items: [
        {
          action: 21,
          fid: "[0x1:0x2:0x0]",
          dfid: "",
          extent: { offset: 0, length: 0 },
          cookie: 1n,
          gid: 0n,
          data: Buffer.alloc(0),
          path,
        },
      ],
    }),
  };
};

const admittedPaths = (item: unknown): Buffer[] => {
  const i = item as {
    paths?: Buffer[];
    entries?: Array<{ path: Buffer }>;
    path?: Buffer;
    items?: Array<{ path: Buffer }>;
  };
  return [
    ...(i.paths ?? []),
    ...(i.entries ?? []).map((e) => e.path),
    ...(i.path ? [i.path] : []),
    ...(i.items ?? []).map((e) => e.path),
  ];
};

const workCases: Array<{
  subject: string;
  kind: "walk" | "xfer" | "chunk" | "restore" | "hsm";
  admit: (msg: Parameters<typeof admitWorkItem>[0], job: JobStatus) => unknown;
}> = [
  {
    subject: "hsmfleet.work.fuzzjob.walk",
    kind: "walk",
    admit: (m, j) => admitWorkItem(m, j, WALK_SHARD_RULES),
  },
  {
    subject: "hsmfleet.work.fuzzjob.xfer",
    kind: "xfer",
    admit: (m, j) => admitWorkItem(m, j, TRANSFER_BATCH_RULES),
  },
  {
    subject: "hsmfleet.work.fuzzjob.chunk",
    kind: "chunk",
    admit: (m, j) => admitWorkItem(m, j, CHUNK_RULES),
  },
  {
    subject: "hsmfleet.work.fuzzjob.restore",
    kind: "restore",
    admit: (m, j) => admitWorkItem(m, j, TRANSFER_BATCH_RULES),
  },
  // HSM lists are checked the same way once their job is known (worker hsm-action.ts).
  {
    subject: "hsmfleet.work.fuzzjob.hsm",
    kind: "hsm",
    admit: (m, j) => admitWorkItem(m, j, HSM_ACTION_LIST_RULES),
  },
];

for (const { subject, kind, admit } of workCases) {
  test(`fuzz ${subject}: ${FUZZ_CASES} random and mutated work items are refused by name or stay under the root`, (t) => {
    const seed = 1000 + subject.length * 31 + kind.charCodeAt(0);
    const r = prng(seed);
    const started = Date.now();
    let admitted = 0;
    let refused = 0;
    for (let n = 0; n < FUZZ_CASES; n++) {
      const job = fuzzJob(n % 3 === 0 ? JobKind.Import : JobKind.Export);
      const key = job.spec.itemKey;
      const valid = validWork(r, "fuzzjob")[kind === "restore" ? "xfer" : kind];
      const data = n % 4 === 0 ? randomBytes(r) : n % 4 === 1 ? valid : mutate(r, valid);
      // Half sealed with the job's real key (the checks behind the seal), half unsealed or forged.
      const sealed = n % 2 === 0;
      const headers = sealed
        ? sealHeaders(key, subject, data)
        : r() < 0.5
          ? undefined
          : sealHeaders(Buffer.alloc(32, 1), subject, data);
      try {
        const item = admit({ subject, data, headers }, job);
        admitted++;
        t.true(sealed, `case ${n}: admitted without the job's seal`);
        for (const p of admittedPaths(item)) {
          const why = unsafePathReason(p, kind === "walk" || kind === "hsm");
          if (why !== undefined)
            t.fail(`case ${n} (seed ${seed}): admitted ${JSON.stringify(p.toString())}: ${why}`);
          const abs = resolve(ROOT, p.toString("latin1"));
          if (abs !== ROOT && !abs.startsWith(`${ROOT}/`))
            t.fail(`case ${n}: ${abs} is outside ${ROOT}`);
        }
        if (kind === "chunk") {
          const c = item as { path: Buffer; blobName: string };
          if (c.blobName !== "") t.is(c.blobName, blobNameFor(job, c.path), `case ${n}: blob name`);
        }
      } catch (err) {
        if (!(err instanceof RefusedWorkItemError)) {
          t.fail(`case ${n} (seed ${seed}): ${String(err)}`);
          return;
        }
        refused++;
      }
    }
    t.is(admitted + refused, FUZZ_CASES);
    t.true(refused > FUZZ_CASES / 2, `${refused} refused`);
    t.log(`${admitted} admitted, ${refused} refused in ${Date.now() - started} ms`);
  });
}

test(`fuzz results: ${FUZZ_CASES} per results subject never crash the follower's decoding or the ledger`, (t) => {
  const r = prng(77);
  const decoders: Record<string, (d: Uint8Array) => unknown> = {
    item: decodeItemResult,
    errors: decodeErrorBatch,
    conflicts: decodeErrorBatch,
    entries: decodeTransferBatch,
    hsm: decodeHsmActionResult,
  };
  const validOf: Record<string, () => Uint8Array> = {
    item: () =>
      encodeItemResult(
        newItemResult({
          jobId: "fuzzjob",
          itemId: r() < 0.5 ? "root" : `x${int(r, 9)}`,
          kind: "walk",
          children: 2,
          childIds: ["a", "b"],
        }),
      ),
    errors: () =>
      encodeErrorBatch({
        jobId: "fuzzjob",
        itemId: "root",
        sequence: 0,
        errors: [
          {
            path: Buffer.from("d/f"),
            operation: "open",
            code: "EACCES",
            message: "m",
            retryable: false,
          },
        ],
      }),
    conflicts: () => validOf["errors"]!(),
    entries: () => validWork(r, "fuzzjob").xfer,
    hsm: () =>
      encodeHsmActionResult({
        jobId: "fuzzjob",
        listId: "0-0",
        workerId: "w",
        attempt: 1,
        items: [],
      }),
  };
  for (const [kind, decode] of Object.entries(decoders)) {
    const ledger = new ResultLedger(["root"], { published: 1, completed: 0 });
    let decoded = 0;
    for (let n = 0; n < FUZZ_CASES; n++) {
      const valid = validOf[kind]!();
      const data = n % 3 === 0 ? randomBytes(r) : n % 3 === 1 ? valid : mutate(r, valid);
      let value: unknown;
      try {
        value = decode(data);
      } catch (err) {
        // The follower catches this, logs the subject and sequence, and drops the message.
        t.true(err instanceof Error, `case ${n}: ${String(err)}`);
        continue;
      }
      decoded++;
      if (kind === "item") {
        const before = ledger.size;
        const verdict = ledger.accept(value as ReturnType<typeof decodeItemResult>);
        if (!verdict.counted)
          t.is(ledger.size, before, `case ${n}: a refused result changed the ledger`);
        t.is(ledger.published - ledger.completed, ledger.size, `case ${n}: ledger invariant`);
      }
    }
    t.log(`${kind}: ${decoded} of ${FUZZ_CASES} decoded`);
  }
});

test(`fuzz heartbeats, HSM progress and cancel: ${FUZZ_CASES} each decode or throw an Error (the subscriptions catch it)`, (t) => {
  const r = prng(99);
  const cases: Array<[string, (d: Uint8Array) => unknown, () => Uint8Array]> = [
    [
      "heartbeat",
      decodeWorkerHeartbeat,
      () =>
        encodeWorkerHeartbeat({
          workerId: "w",
          vmName: "vm",
          pid: 1,
          version: "0",
          startedAtMs: 1,
          sentAtMs: 2,
          itemsInFlight: 0,
          itemsDone: 0,
          entriesRead: 0,
          bytesMoved: 0,
          concurrency: 1,
          rssBytes: 1,
          requestConcurrency: 1,
          maxRequestConcurrency: 1,
        }),
    ],
    [
      "progress",
      decodeHsmProgress,
      () =>
        encodeHsmProgress({
          jobId: "fuzzjob",
          listId: "0-0",
          fid: "[0x1:0x2:0x0]",
          action: 21,
          bytesDone: 1,
          bytesTotal: 2,
          workerId: "w",
        }),
    ],
    [
      "cancel",
      decodeHsmCancel,
      () => encodeHsmCancel({ fids: ["[0x1:0x2:0x0]"], cookie: 5n, jobId: "hsm-x" }),
    ],
  ];
  for (const [name, decode, valid] of cases) {
    let errors = 0;
    for (let n = 0; n < FUZZ_CASES; n++) {
      const data = n % 2 === 0 ? randomBytes(r) : mutate(r, valid());
      try {
        decode(data);
      } catch (err) {
        errors++;
        t.true(err instanceof Error, `${name} case ${n}: ${String(err)}`);
      }
    }
    t.log(`${name}: ${errors} of ${FUZZ_CASES} refused by the decoder`);
  }
});

const SENTINEL = "SENTINEL-outside-the-job-root-9a7e";

test.serial(
  "fuzz through real processes: a worker and an export survive mutated messages on every subject; nothing outside the job is read or written",
  async (t) => {
    const tmp = await tempDir();
    t.teardown(() => tmp.cleanup());
    const root = join(tmp.path, "tree");
    const outside = join(tmp.path, "outside");
    await mkdir(join(root, "d"), { recursive: true });
    await mkdir(join(outside, "sub"), { recursive: true });
    await writeFile(join(outside, "secret"), SENTINEL);
    await writeFile(join(outside, "sub", "secret"), SENTINEL);
    const FILES = 30;
    for (let i = 0; i < FILES; i++) await writeFile(join(root, "d", `f${i}`), `file ${i}\n`);
    // A user's symlink inside the tree to a directory outside it.
    await symlink(outside, join(root, "lnk"));
    const azurite = await startStorage(t);
    const { server } = await startBus(t);
    const nc = await connectBus({ servers: server.url, reconnectForever: false });
    t.teardown(() => nc.close());
    const env = { AZURE_STORAGE_CONNECTION_STRING: azurite.connectionString };

    const worker = spawnCli(
      ["--nats", server.url, "--log-level", "info", "worker", "--concurrency", "2"],
      { env },
    );
    let workerLog = "";
    worker.stdout?.on("data", (d: Buffer) => (workerLog += d.toString()));
    worker.stderr?.on("data", (d: Buffer) => (workerLog += d.toString()));
    t.teardown(() => worker.kill("SIGKILL"));
    await waitFor("the worker to start", () => workerLog.includes("worker started"), 30_000);

    const seen = nc.subscribe(subjects.walkAll, { max: 1 });
    const exporter = spawnCli(
      [
        "--nats",
        server.url,
        "--state-dir",
        join(tmp.path, "state"),
        "--workers",
        "0",
        "export",
        root,
        "--container",
        "fuzz",
        "--max-requests-per-second",
        "10",
        "--json",
        "--quiet",
      ],
      { env },
    );
    t.teardown(() => exporter.kill("SIGKILL"));
    let stdout = "";
    let stderr = "";
    exporter.stdout?.on("data", (d: Buffer) => (stdout += d.toString()));
    exporter.stderr?.on("data", (d: Buffer) => (stderr += d.toString()));
    let jobId = "";
    for await (const m of seen) jobId = m.subject.split(".")[2] ?? "";
    const { jobs } = await ensureTopology(nc);
    const key = (await new JobStore(jobs).require(jobId)).spec.itemKey;

    const js = jetstream(nc);
    const r = prng(4242);
    let sent = 0;
    for (let n = 0; n < LIVE_CASES; n++) {
      const valid = validWork(r, jobId);
      // Work items: mutated, unsealed or sealed with the job's real key (then the path checks act).
      for (const [name, data] of Object.entries(valid)) {
        const subject =
          name === "hsm" ? subjects.hsmPartition(int(r, 16)) : `hsmfleet.work.${jobId}.${name}`;
        const body = n % 3 === 0 ? randomBytes(r) : mutate(r, data);
        const sealed = n % 2 === 0 && !body.includes(Buffer.from("lnk"));
        await js
          .publish(subject, body, {
            msgID: `fz-${name}-${n}`,
            ...(sealed ? { headers: sealHeaders(key, subject, body) } : {}),
          })
          .catch(() => undefined); // no stream for that subject (hsm partitions not made): fine
        sent++;
      }
      // Results: mutated, unsealed (a forger without the key).
      for (const kind of ["item", "errors", "entries", "conflicts"]) {
        const valid = encodeItemResult(
          newItemResult({ jobId, itemId: `fz${n}`, kind: "transfer", children: 0 }),
        );
        await js.publish(
          `hsmfleet.result.${jobId}.${kind}`,
          n % 2 === 0 ? randomBytes(r) : mutate(r, valid),
          {
            msgID: `fz-r-${kind}-${n}`,
          },
        );
        sent++;
      }
      // Core NATS subjects.
      nc.publish(
        subjects.heartbeat(`fz${n}`),
        mutate(
          r,
          encodeWorkerHeartbeat({
            workerId: "x",
            vmName: "v",
            pid: 1,
            version: "0",
            startedAtMs: 0,
            sentAtMs: 0,
            itemsInFlight: 0,
            itemsDone: 0,
            entriesRead: 0,
            bytesMoved: 0,
            concurrency: 1,
            rssBytes: 0,
            requestConcurrency: 0,
            maxRequestConcurrency: 0,
          }),
        ),
      );
      nc.publish(subjects.hsmProgress(jobId), randomBytes(r));
      nc.publish(subjects.hsmCancel, randomBytes(r));
      nc.publish(subjects.heartbeatPing, randomBytes(r));
      sent += 4;
    }
    const exit = await exitOf(exporter);
    t.is(exit.code, 0, stderr);
    const summary = JSON.parse(stdout) as { state: string; filesExported: number; errors: number };
    t.is(summary.state, "succeeded");
    t.is(summary.filesExported, FILES, "exactly the job's files: forged results counted nothing");

    // The worker is alive and answers a ping.
    t.is(worker.exitCode, null, "the worker is still running");
    const hb = nc.subscribe(subjects.heartbeatAll, { max: 1, timeout: 10_000 });
    nc.publish(subjects.heartbeatPing);
    let answered = false;
    for await (const m of hb) answered = decodeWorkerHeartbeat(m.data).workerId !== "";
    t.true(answered, "the worker answers a heartbeat ping");

    const client = new ContainerClient(azurite.connectionString, "fuzz");
    const names: string[] = [];
    for await (const b of client.listBlobsFlat()) {
      names.push(b.name);
      const body = (await client.getBlobClient(b.name).downloadToBuffer()).toString("latin1");
      t.false(body.includes(SENTINEL), `blob ${b.name} holds the sentinel`);
    }
    t.true(
      names.every((n) => n === "d" || n === "lnk" || /^d\/f\d+$/.test(n)),
      names.join(", "),
    );
    t.deepEqual((await readdir(outside, { recursive: true })).sort(), [
      "secret",
      "sub",
      "sub/secret",
    ]);
    t.deepEqual(
      (await readdir(tmp.path)).sort(),
      ["outside", "state", "tree"],
      "nothing new beside the tree",
    );
    t.log(`${sent} hostile messages sent`);
  },
);
