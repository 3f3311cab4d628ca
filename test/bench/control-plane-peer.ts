/**
 * The processes of the control-plane benchmark (control-plane.bench.ts), this module as main:
 *
 *   node control-plane-peer.js worker       a worker whose walks list a SyntheticNamespace and
 *                                           whose export target is the in-process null target
 *   node control-plane-peer.js coordinator  one export job of that tree; prints its summary
 *
 * Both read CP_NATS (comma-separated URLs), CP_TREE (SyntheticTreeSpec as JSON), CP_STORAGE (the
 * benchmark sink's connection string: the coordinator creates its containers and writes the job's
 * logs there; the null target makes no request), CP_REPLICAS (1 or 3). A worker says "ready" on
 * stdout once it pulls; SIGTERM stops it (in-flight items finish) and it prints its stats.
 * The coordinator reads CP_BATCH_ENTRIES (transfer batch size) and CP_ROOT (a real empty
 * directory: the coordinator checks and claims it; the workers never read it) and CP_JOB_ID (the
 * job's id, so the benchmark can read its record; default: a new one). Workers read
 * CP_WALK_CONCURRENCY, CP_TRANSFER_CONCURRENCY, CP_FILE_CONCURRENCY and CP_FILE_MS (each file
 * takes this long: a stand-in for its transfer; default 0).
 */
import { appendFileSync, writeFileSync } from "node:fs";
import { Session as InspectorSession } from "node:inspector";
import { getHeapSpaceStatistics, getHeapStatistics, writeHeapSnapshot } from "node:v8";
import { parseStorageTarget } from "@hsmfleet/blob";
import { connectBus } from "@hsmfleet/bus";
import { createLogger } from "@hsmfleet/telemetry";
import { SyntheticNamespace, Worker } from "@hsmfleet/worker";
import type { SyntheticTreeSpec } from "@hsmfleet/worker";

const env = (name: string): string => {
  const v = process.env[name];
  if (v === undefined || v === "") throw new Error(`control-plane peer: ${name} is not set`);
  return v;
};

const post = (session: InspectorSession, method: string, params: object): Promise<unknown> =>
  new Promise((resolve, reject) =>
    session.post(method, params, (err, result) => (err ? reject(err) : resolve(result))),
  );

const role = process.argv[2];
const servers = env("CP_NATS").split(",");
const storage = parseStorageTarget(env("CP_STORAGE"));
if (!storage) throw new Error("control-plane peer: CP_STORAGE is not a storage target");
const topology = { replicas: Number(process.env["CP_REPLICAS"] ?? "1") };
const nc = await connectBus({ servers, name: `cp-${role}-${process.pid}` });

if (role === "worker") {
  // CP_TREE=posix: the real tree at the job's root (the huge-directory bench), still the null target.
  const treeSpec = env("CP_TREE");
  const tree =
    treeSpec === "posix"
      ? undefined
      : new SyntheticNamespace(JSON.parse(treeSpec) as SyntheticTreeSpec);
  // A small per-process footprint: 64 of these share 2 CPUs.
  const worker = await Worker.create({
    nc,
    storage,
    topology,
    concurrency: Number(process.env["CP_WALK_CONCURRENCY"] ?? "4"),
    transferConcurrency: Number(process.env["CP_TRANSFER_CONCURRENCY"] ?? "4"),
    fileConcurrency: Number(process.env["CP_FILE_CONCURRENCY"] ?? "64"),
    memoryBudgetBytes: 16 * 1024 * 1024,
    ...(process.env["CP_MAX_QUEUED_BATCHES"]
      ? { maxQueuedBatches: Number(process.env["CP_MAX_QUEUED_BATCHES"]) }
      : {}),
    maxRequestConcurrency: 4,
    bench: {
      ...(tree === undefined ? {} : { namespace: tree }),
      nullTarget: true,
      nullTargetFileMs: Number(process.env["CP_FILE_MS"] ?? "0"),
    },
    // Warnings (redeliveries, retries) on stderr: the join/leave test counts redeliveries there.
    logger: createLogger({ role: "worker", level: "warn" }),
  });
  const running = worker.run();
  process.stdout.write("ready\n");
  const stop = (): void => {
    void worker.shutdown();
  };
  process.once("SIGTERM", stop);
  process.once("SIGINT", stop);
  await running;
  process.stdout.write(
    `${JSON.stringify({ stats: worker.stats, backlog: worker.backlog.stats })}\n`,
  );
  await nc.close();
} else if (role === "coordinator") {
  // CP_MEMORY_LOG=FILE: process.memoryUsage() and V8's heap statistics every 500 ms (a JSON line
  // each; after a full collection when the process runs with --expose-gc), to find what grows with the job's size (issue 22: coordinator RSS flat from 1M to 10M);
  // CP_HEAP_SNAPSHOT=FILE: a heap snapshot when the job has ended (before the connection closes);
  const memoryLog = process.env["CP_MEMORY_LOG"];
  const sampler =
    memoryLog === undefined || memoryLog === ""
      ? undefined
      : setInterval(() => {
          // With --expose-gc (NODE_OPTIONS) the heap is collected first: heapUsed is then what
          // is live, the figure that shows a structure growing with the job.
          (globalThis as { gc?: () => void }).gc?.();
          const h = getHeapStatistics();
          appendFileSync(
            memoryLog,
            `${JSON.stringify({ t: Date.now(), ...process.memoryUsage(), mallocedMemory: h.malloced_memory, externalMemory: h.external_memory, spaces: Object.fromEntries(getHeapSpaceStatistics().map((x) => [x.space_name, [x.space_size, x.space_used_size]])) })}\n`,
          );
        }, 500);
  // CP_HEAP_SNAPSHOT_AT=S,…: heap snapshots S seconds after the start as well (FILE-S), so two
  // points of one job can be compared.
  for (const at of (process.env["CP_HEAP_SNAPSHOT_AT"] ?? "").split(",").filter((x) => x !== ""))
    setTimeout(
      () => writeHeapSnapshot(`${process.env["CP_HEAP_SNAPSHOT"] ?? "coordinator"}-${at}`),
      Number(at) * 1000,
    ).unref();
  // CP_HEAP_PROFILE=FILE: V8's sampling heap profile of the whole job, counting objects that a
  // major collection freed (promoted garbage) but not those the scavenger freed: what reaches
  // old space and makes its size grow (a .heapprofile for Chrome DevTools; heap-profile-top.js).
  const heapProfile = process.env["CP_HEAP_PROFILE"];
  const inspector =
    heapProfile === undefined || heapProfile === "" ? undefined : new InspectorSession();
  if (inspector !== undefined) {
    inspector.connect();
    await post(inspector, "HeapProfiler.startSampling", {
      samplingInterval: 4096,
      includeObjectsCollectedByMajorGC: true,
      includeObjectsCollectedByMinorGC: false,
    });
  }
  // Loaded here, not at the top: a worker process does not load the coordinator's modules (64 of
  // them start on 2 CPUs).
  const { runExportJob } = await import("@hsmfleet/coordinator");
  const summary = await runExportJob({
    nc,
    root: env("CP_ROOT"),
    container: "bench",
    storage,
    topology,
    batchMaxEntries: Number(process.env["CP_BATCH_ENTRIES"] ?? "1000"),
    ...(process.env["CP_JOB_ID"] ? { jobId: process.env["CP_JOB_ID"] } : {}),
    maxErrors: 0,
  });
  if (sampler !== undefined) clearInterval(sampler);
  if (inspector !== undefined && heapProfile !== undefined) {
    const { profile } = (await post(inspector, "HeapProfiler.stopSampling", {})) as {
      profile: unknown;
    };
    writeFileSync(heapProfile, JSON.stringify(profile));
    inspector.disconnect();
  }
  const snapshot = process.env["CP_HEAP_SNAPSHOT"];
  if (snapshot !== undefined && snapshot !== "") writeHeapSnapshot(snapshot);
  process.stdout.write(`${JSON.stringify(summary)}\n`);
  await nc.close();
} else {
  throw new Error(`control-plane peer: role must be worker or coordinator, got ${role}`);
}
