/**
 * What the control-plane benchmarks share (control-plane.bench.ts, fleet-churn.bench.ts): the
 * nats-server(s), the peer processes (control-plane-peer.ts) and a sampler that reads, once a
 * second on one connection, the JetStream stream and KV sizes and the running job's progress.
 */
import { spawnSync } from "node:child_process";
import type { ChildProcess } from "node:child_process";
import { dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { connectBus, jetstreamManager } from "@hsmfleet/bus";
import type { NatsConnection } from "@hsmfleet/bus";
import {
  decodeJobStatus,
  JOBS_BUCKET,
  LEDGER_BUCKET,
  RESULTS_STREAM,
  WORK_STREAM,
  subjects,
} from "@hsmfleet/protocol";
import { startNatsCluster, startNatsServer } from "@hsmfleet/testkit";
import { LineTail, ProcSampler, spawnTracked } from "./proc.js";

const PEER = fileURLToPath(new URL("./control-plane-peer.js", import.meta.url));
const PEER_BUNDLE = fileURLToPath(new URL("./control-plane-peer.bundle.mjs", import.meta.url));
/** The script worker processes run: the peer's modules, or one bundle of them (bundlePeer). */
let workerPeer = PEER;

/**
 * Bundles the peer and everything it imports into one ES module beside it (esbuild, the CLI's
 * build tool; native addons stay outside) and makes worker processes run it: a process then reads
 * and compiles one file instead of ~1,300 modules — measured 0.24 s of CPU to start against
 * 0.83–0.96 s, 72 MiB RSS against 104–110 (issue 22: 64 worker processes on 2 CPUs). The
 * coordinator keeps running the modules (its figures stay comparable with earlier runs).
 */
export const bundlePeer = (): void => {
  const r = spawnSync(
    "npx",
    [
      "esbuild",
      PEER,
      "--bundle",
      "--platform=node",
      "--format=esm",
      `--outfile=${PEER_BUNDLE}`,
      "--external:*.node",
      "--log-level=warning",
      // CommonJS dependencies call require(); an ES module has none of its own.
      "--banner:js=import { createRequire as __peerRequire } from 'node:module'; const require = __peerRequire(import.meta.url);",
    ],
    { encoding: "utf8", cwd: dirname(PEER) },
  );
  if (r.status !== 0)
    throw new Error(`could not bundle ${PEER} with esbuild: ${r.stderr || r.error?.message}`);
  workerPeer = PEER_BUNDLE;
};

// A benchmark stopped by a signal takes its processes with it (proc.ts kills them on exit).
for (const signal of ["SIGTERM", "SIGINT"] as const) process.once(signal, () => process.exit(130));

export const envInt = (name: string, fallback: number): number => {
  const raw = process.env[name];
  const n = raw === undefined || raw === "" ? fallback : Number(raw);
  if (!Number.isSafeInteger(n) || n < 0)
    throw new Error(`${name} must be an integer ≥ 0, got ${raw}`);
  return n;
};

export const envList = (name: string, fallback: number[]): number[] => {
  const raw = process.env[name];
  if (raw === undefined || raw === "") return fallback;
  const list = raw.split(",").map(Number);
  if (list.some((n) => !Number.isSafeInteger(n) || n <= 0))
    throw new Error(`${name} must be a comma-separated list of integers > 0, got ${raw}`);
  return list;
};

export interface Sizes {
  workBytes: number;
  workMessages: number;
  /** Of those, the job's transfer batches (what the walk backpressure bounds). */
  workTransferMessages: number;
  resultsBytes: number;
  resultsMessages: number;
  jobsKvBytes: number;
  ledgerKvBytes: number;
}

export const maxSizes = (a: Sizes, b: Sizes): Sizes => ({
  workBytes: Math.max(a.workBytes, b.workBytes),
  workMessages: Math.max(a.workMessages, b.workMessages),
  workTransferMessages: Math.max(a.workTransferMessages, b.workTransferMessages),
  resultsBytes: Math.max(a.resultsBytes, b.resultsBytes),
  resultsMessages: Math.max(a.resultsMessages, b.resultsMessages),
  jobsKvBytes: Math.max(a.jobsKvBytes, b.jobsKvBytes),
  ledgerKvBytes: Math.max(a.ledgerKvBytes, b.ledgerKvBytes),
});

const NO_SIZES: Sizes = {
  workBytes: 0,
  workMessages: 0,
  workTransferMessages: 0,
  resultsBytes: 0,
  resultsMessages: 0,
  jobsKvBytes: 0,
  ledgerKvBytes: 0,
};

/** One job's progress as its coordinator last checkpointed it in the jobs KV. */
export interface JobProgressSample {
  /** Milliseconds since the sampler started. */
  atMs: number;
  files: number;
  published: number;
  completed: number;
  outstanding: number;
}

/**
 * Samples the stream/KV sizes (peak kept) and the (single) job's checkpointed progress every
 * `intervalMs` on one connection, until stopped.
 */
export class BusSampler {
  peak: Sizes = NO_SIZES;
  readonly progress: JobProgressSample[] = [];
  readonly #nc: NatsConnection;
  readonly #jobId: string;
  readonly #started = performance.now();
  #stopped = false;
  readonly #loop: Promise<void>;

  private constructor(nc: NatsConnection, jobId: string, intervalMs: number) {
    this.#nc = nc;
    this.#jobId = jobId;
    this.#loop = this.#run(intervalMs);
  }

  /** `jobId`: the job whose record is read (the coordinator peer's CP_JOB_ID). */
  static async start(urls: string[], jobId: string, intervalMs = 1000): Promise<BusSampler> {
    const nc = await connectBus({ servers: urls, name: "cp-bench-sampler" });
    return new BusSampler(nc, jobId, intervalMs);
  }

  /** The job's files done at the last sample (0 before the first checkpoint). */
  get filesDone(): number {
    return this.progress.at(-1)?.files ?? 0;
  }

  async sizes(): Promise<Sizes> {
    const jsm = await jetstreamManager(this.#nc);
    const info = async (name: string) => {
      try {
        return (await jsm.streams.info(name)).state;
      } catch {
        return { bytes: 0, messages: 0 };
      }
    };
    const transfer = subjects.transfer(this.#jobId);
    const transferCount = async (): Promise<number> => {
      try {
        // The job's wildcard: an exact-subject filter came back without counts (work-backlog.ts).
        const i = await jsm.streams.info(WORK_STREAM, {
          subjects_filter: subjects.workForJob(this.#jobId),
        });
        return i.state.subjects?.[transfer] ?? 0;
      } catch {
        return 0;
      }
    };
    const [work, transfers, results, jobs, ledger] = await Promise.all([
      info(WORK_STREAM),
      transferCount(),
      info(RESULTS_STREAM),
      info(`KV_${JOBS_BUCKET}`),
      info(`KV_${LEDGER_BUCKET}`),
    ]);
    return {
      workBytes: work.bytes,
      workMessages: work.messages,
      workTransferMessages: transfers,
      resultsBytes: results.bytes,
      resultsMessages: results.messages,
      jobsKvBytes: jobs.bytes,
      ledgerKvBytes: ledger.bytes,
    };
  }

  async #sampleJob(): Promise<void> {
    const jsm = await jetstreamManager(this.#nc);
    let data: Uint8Array;
    try {
      const m = await jsm.streams.getMessage(`KV_${JOBS_BUCKET}`, {
        last_by_subj: `$KV.${JOBS_BUCKET}.${this.#jobId}`,
      });
      if (m === null) return;
      data = m.data;
    } catch {
      return; // no record yet
    }
    if (data.length === 0) return;
    const job = decodeJobStatus(data);
    this.progress.push({
      atMs: performance.now() - this.#started,
      files: job.export.filesExported,
      published: job.published,
      completed: job.completed,
      outstanding: job.outstanding.length,
    });
  }

  async #run(intervalMs: number): Promise<void> {
    while (!this.#stopped) {
      try {
        this.peak = maxSizes(this.peak, await this.sizes());
        await this.#sampleJob();
      } catch {
        // a sample lost to a busy server: the next one counts
      }
      await new Promise((r) => setTimeout(r, intervalMs));
    }
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    await this.#loop;
    await this.#nc.close();
  }
}

export interface NatsFixture {
  urls: string[];
  nodes: Array<{ pid: number }>;
  stop(): Promise<void>;
}

/** One nats-server, or a 3-node cluster (the run then uses R3 streams and KV). */
export const startNats = async (cluster: boolean): Promise<NatsFixture> => {
  if (cluster) return startNatsCluster({ size: 3 });
  const s = await startNatsServer();
  return { urls: [s.url], nodes: [s], stop: () => s.stop() };
};

export interface PeerEnvOptions {
  urls: string[];
  storage: string;
  replicas: number;
  root: string;
  tree: object;
  batch: number;
  extra?: Record<string, string> | undefined;
}

export const peerEnv = (o: PeerEnvOptions): NodeJS.ProcessEnv => ({
  ...process.env,
  HSMFLEET_LOG_LEVEL: "warn",
  CP_NATS: o.urls.join(","),
  CP_STORAGE: o.storage,
  CP_REPLICAS: String(o.replicas),
  CP_TREE: JSON.stringify(o.tree),
  CP_ROOT: o.root,
  CP_BATCH_ENTRIES: String(o.batch),
  ...o.extra,
});

export interface Peer {
  child: ChildProcess;
  pid: number;
  stdout: LineTail;
  stderr: LineTail;
  sampler: ProcSampler;
}

export const startPeer = (
  role: "worker" | "coordinator",
  env: NodeJS.ProcessEnv,
  execArgv: string[] = [],
  sampleMs = 250,
): Peer => {
  const script = role === "worker" ? workerPeer : PEER;
  const child = spawnTracked(process.execPath, [...execArgv, script, role], {
    stdio: ["ignore", "pipe", "pipe"],
    env,
  });
  if (child.pid === undefined) throw new Error(`could not spawn the ${role}`);
  return {
    child,
    pid: child.pid,
    stdout: new LineTail(child.stdout),
    // Workers log each redelivery at warn: keep them all (fleet-churn counts them).
    stderr: new LineTail(child.stderr, 100_000),
    sampler: new ProcSampler(child.pid, sampleMs),
  };
};

/** Resolves once the worker pulls; rejects with its stderr when it exits first. */
export const peerReady = async (p: Peer, closedOf: Promise<unknown>): Promise<void> => {
  const ready = await Promise.race([
    // The line may have come already (joiners started in a group, waited for one by one).
    p.stdout.lines.includes("ready")
      ? Promise.resolve(true)
      : p.stdout.next((l) => l === "ready").then(() => true),
    closedOf.then(() => false),
  ]);
  if (!ready) throw new Error(`worker ${p.pid} exited at start:\n${p.stderr.text()}`);
};
