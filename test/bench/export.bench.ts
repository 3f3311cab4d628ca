/**
 * `npm run bench:export`: how fast one hsmfleet worker exports files to Blob, beside the ceiling
 * of a minimal raw-HTTP client (raw-client.ts) that reads the same files and sends the same
 * requests (same metadata headers) at the same concurrency, without SDK, checksums, stat calls,
 * walk or NATS.
 *
 * Endpoints:
 *   sink     the loopback benchmark sink (blob-sink.ts: answers the Blob API, discards the data),
 *            in a child process: measures the client side alone. The aims apply here.
 *   azurite  a real (local) Azurite, on a smaller data set: it stores the data and is slow.
 *
 * hsmfleet side: a real nats-server, ONE in-process worker (WORKER_DEFAULTS), runExportJob into a
 * fresh container per run. Rates use the job's own clock (summary.elapsedSeconds: walk, listing,
 * uploads, commits); the raw client's clock covers the same requests. Every case runs one
 * unmeasured warm-up of each side, then RUNS repetitions, raw and hsmfleet alternating.
 *
 * Environment:
 *   HSMFLEET_BENCH_DIR         keep the generated trees here and reuse them (default: a temp dir,
 *                              removed at the end)
 *   HSMFLEET_BENCH_RUNS        repetitions per side and case (default 3)
 *   HSMFLEET_BENCH_CASES       comma-separated subset of sink-large,sink-small,azurite-large,
 *                              azurite-small (default all)
 *   HSMFLEET_BENCH_LARGE       large files against the sink as COUNTxMIB (default 4x512)
 *   HSMFLEET_BENCH_CPU_PROF    a directory: CPU profile (inspector, main thread) of the measured
 *                              hsmfleet runs of each case, <case>.cpuprofile, summarized on stderr
 *   HSMFLEET_SINK_LOG_REQUESTS N: the sink prints method, URL and headers of its first N requests
 *   HSMFLEET_BENCH_BREAKDOWN   0 skips the layer breakdown against the sink (below)
 *   HSMFLEET_SINK_CRC64_EVERY  the sink checks the x-ms-content-crc64 of one request in N
 *                              (default 8; 1 checks every one, at the sink's CPU cost)
 *
 * Where the time goes: for the sink cases the same data also goes up through the layers in
 * between, RUNS times each: the blob client alone (BlobContainer / BlockBlobClient requests from
 * memory with precomputed checksums — CRC64 per block, MD5 per small blob: no reads, no hashing;
 * Put Blob and Put Block go out directly, as in the job), then uploadFile() straight from the files
 * (reads, block CRC64s, whole-file MD5; small files with the walk's size and mtime, so they take
 * the one-job read path; no NATS, no walk; note that uploadFile() does not chunk, so a large file
 * takes the block path with its whole-file MD5, while the job chunks files over 256 MiB and hashes
 * no MD5 for them). Each step up adds one cost; the table prints rate and client CPU per layer. The
 * MD5 bound of the uploadFile() layer (one MD5 pass per byte, one core per file) is printed beside
 * the large-file ceiling.
 *
 * The sink checks the x-ms-content-crc64 of one request in HSMFLEET_SINK_CRC64_EVERY against the
 * body (blob-sink.ts); a wrong one fails the request, and the run.
 */
import "./threadpool.js";
import { createHash } from "node:crypto";
import { existsSync, rmSync, statfsSync } from "node:fs";
import { mkdir, open, readFile, stat, writeFile } from "node:fs/promises";
import { availableParallelism, cpus, loadavg } from "node:os";
import { join, resolve } from "node:path";
import { performance } from "node:perf_hooks";
import { fileURLToPath } from "node:url";
import { BlobServiceClient } from "@azure/storage-blob";
import {
  DEFAULT_BLOCK_SIZE_BYTES,
  MemoryBudget,
  blockIdFor,
  chooseBlockSize,
  openContainer,
  parseStorageTarget,
  uploadFile,
} from "@hsmfleet/blob";
import { connectBus } from "@hsmfleet/bus";
import { crc64, crc64Bytes } from "@hsmfleet/fs/crc64";
import type { NatsConnection } from "@hsmfleet/bus";
import { DEFAULT_CHUNK_SIZE_BYTES } from "@hsmfleet/protocol";
import { runExportJob } from "@hsmfleet/coordinator";
import type { ExportSummary } from "@hsmfleet/coordinator";
import { generateTree, startAzurite, startNatsServer, tempDir } from "@hsmfleet/testkit";
import type { AzuriteFixture, NatsServerFixture, TempDir, TreeSpec } from "@hsmfleet/testkit";
import { WORKER_DEFAULTS, Worker } from "@hsmfleet/worker";
import { SINK_ACCOUNT_KEY, SINK_ACCOUNT_NAME, spawnBlobSink } from "./blob-sink.js";
import type { BlobSinkProcess, BlobSinkStats } from "./blob-sink.js";
import { CpuProfiler, summarizeProfile } from "./cpu-profile.js";
import { best, cpuSeconds, int, median } from "./proc.js";
import { ensureRclone, rcloneCopy, rcloneFlags, rcloneRemote, timedRun } from "./peer.js";
import type { Peer, TimedRun } from "./peer.js";
import {
  RawBlobClient,
  forEachLimit,
  rawUploadLarge,
  rawUploadSmall,
  sampleMetadata,
} from "./raw-client.js";

/** test/dist/bench/export.bench.js -> repository root. */
const REPO_ROOT = fileURLToPath(new URL("../../../", import.meta.url));
const CLI_BIN = fileURLToPath(new URL("./bin.js", import.meta.resolve("@hsmfleet/cli")));
/** The peer (rclone), found or installed once in main(); undefined: no peer column. */
let PEER: Peer | undefined;
const RESULTS_FILE = join(REPO_ROOT, "bench", "results", "export.json");
const MiB = 1024 * 1024;

const envInt = (name: string, fallback: number, min = 1): number => {
  const raw = process.env[name];
  if (raw === undefined || raw === "") return fallback;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < min) throw new Error(`${name} must be an integer ≥ ${min}`);
  return n;
};

const RUNS = envInt("HSMFLEET_BENCH_RUNS", 3);
const BENCH_DIR = process.env["HSMFLEET_BENCH_DIR"] || undefined;
const CPU_PROF_DIR = process.env["HSMFLEET_BENCH_CPU_PROF"] || undefined;
const SINK_LOG_REQUESTS = envInt("HSMFLEET_SINK_LOG_REQUESTS", 0, 0);
const BREAKDOWN = process.env["HSMFLEET_BENCH_BREAKDOWN"] !== "0";
const SINK_CRC64_EVERY = envInt("HSMFLEET_SINK_CRC64_EVERY", 8);
const ALL_CASES = ["sink-large", "sink-small", "azurite-large", "azurite-small"] as const;
type CaseName = (typeof ALL_CASES)[number];
const CASES: CaseName[] = (() => {
  const raw = process.env["HSMFLEET_BENCH_CASES"];
  if (!raw) return [...ALL_CASES];
  const names = raw.split(",").map((s) => s.trim());
  for (const n of names)
    if (!(ALL_CASES as readonly string[]).includes(n))
      throw new Error(`HSMFLEET_BENCH_CASES: unknown case ${n} (${ALL_CASES.join(", ")})`);
  return names as CaseName[];
})();
const [LARGE_COUNT, LARGE_MIB] = (() => {
  const raw = process.env["HSMFLEET_BENCH_LARGE"] || "4x512";
  const m = /^(\d+)x(\d+)$/.exec(raw);
  if (!m) throw new Error("HSMFLEET_BENCH_LARGE must look like 4x512 (files x MiB)");
  return [Number(m[1]), Number(m[2])] as const;
})();

/** The aims, against the sink with one worker: hsmfleet / raw ceiling. */
const AIM = { large: 0.8, small: 0.6 } as const;

// ---------------------------------------------------------------------------------------------
// Trees

type Kind = "large" | "small";

interface Tree {
  label: string;
  kind: Kind;
  root: string;
  /** Blob names (AMLFS: the relative path) and sizes. */
  files: Array<{ name: string; size: number }>;
  /** Directories below the root (each becomes an hdi_isfolder stub). */
  directories: string[];
  bytes: number;
}

const TREE_SPECS: Record<string, { kind: Kind; spec: TreeSpec; describe: string }> = {
  large: {
    kind: "large",
    spec: { depth: 0, fanout: 0, filesPerDir: LARGE_COUNT, sizes: [LARGE_MIB * MiB] },
    describe: `${LARGE_COUNT} × ${LARGE_MIB} MiB`,
  },
  small: {
    kind: "small",
    // root + 99 directories, 100 files each: 10,000 files in 100 directories
    spec: { depth: 1, fanout: 99, filesPerDir: 100, sizes: [4096] },
    describe: "10,000 × 4 KiB in 100 dirs",
  },
  "azurite-large": {
    kind: "large",
    spec: { depth: 0, fanout: 0, filesPerDir: 1, sizes: [256 * MiB] },
    describe: "1 × 256 MiB",
  },
  "azurite-small": {
    kind: "small",
    // root + 19 directories, 100 files each
    spec: { depth: 1, fanout: 19, filesPerDir: 100, sizes: [4096] },
    describe: "2,000 × 4 KiB in 20 dirs",
  },
};

const treeBytesOf = (spec: TreeSpec): number => {
  let dirs = 1;
  let level = 1;
  for (let d = 0; d < spec.depth; d++) {
    level *= spec.fanout;
    dirs += level;
  }
  const sizes = spec.sizes ?? [0];
  let bytes = 0;
  for (let i = 0; i < dirs * spec.filesPerDir; i++) bytes += sizes[i % sizes.length] ?? 0;
  return bytes;
};

/** Generates `spec` under base/name, or reuses it when base/name.json says it was built from it. */
const prepareTree = async (base: string, name: string): Promise<Tree> => {
  const { kind, spec } = TREE_SPECS[name]!;
  const root = join(base, name);
  const recordFile = join(base, `${name}.json`);
  type Record = Omit<Tree, "label" | "kind" | "root"> & { spec: TreeSpec };
  if (existsSync(root) && existsSync(recordFile)) {
    const record = JSON.parse(await readFile(recordFile, "utf8")) as Record;
    if (JSON.stringify(record.spec) === JSON.stringify(spec)) {
      log(`reusing ${root}`);
      return { label: name, kind, root, ...record };
    }
  }
  rmSync(root, { recursive: true, force: true });
  rmSync(recordFile, { force: true });
  log(`generating ${root} (${TREE_SPECS[name]!.describe}) …`);
  const t0 = performance.now();
  const m = await generateTree(root, spec);
  const record: Record = {
    spec,
    files: m.entries
      .filter((e) => e.type === "file")
      .map((e) => ({ name: e.path.toString("utf8"), size: e.size })),
    directories: m.entries
      .filter((e) => e.type === "directory")
      .map((e) => e.path.toString("utf8")),
    bytes: m.bytes,
  };
  await writeFile(recordFile, JSON.stringify(record));
  log(`  ${int(m.files)} files, ${int(m.directories)} dirs in ${seconds(t0).toFixed(1)} s`);
  return { label: name, kind, root, ...record };
};

/** Reads every file once (page cache, dentries, inodes). */
const warmCache = async (tree: Tree): Promise<number> => {
  const t0 = performance.now();
  const buf = Buffer.allocUnsafe(8 * MiB);
  let total = 0;
  for (const f of tree.files) {
    const h = await open(join(tree.root, f.name), "r");
    try {
      for (;;) {
        const { bytesRead } = await h.read(buf, 0, buf.length, null);
        if (bytesRead === 0) break;
        total += bytesRead;
      }
    } finally {
      await h.close();
    }
  }
  if (total !== tree.bytes)
    throw new Error(`${tree.root}: read ${total} bytes, expected ${tree.bytes}`);
  return seconds(t0);
};

// ---------------------------------------------------------------------------------------------
// Endpoints

interface Endpoint {
  label: "sink" | "azurite";
  connectionString: string;
  blobEndpoint: string;
  /** The server process, for CPU accounting. */
  pid: number;
  sink?: BlobSinkProcess;
  azurite?: AzuriteFixture;
}

interface Run {
  /** MiB/s (large) or files/s (small). */
  rate: number;
  seconds: number;
  /** hsmfleet: spawn of runExportJob to its return (container checks, job record, logs). */
  wallSeconds: number;
  bytes: number;
  files: number;
  /** CPU seconds during the run: this process (worker + coordinator, or raw client), server, nats. */
  clientCpuSeconds: number;
  serverCpuSeconds: number;
  natsCpuSeconds: number;
  sink?: Pick<
    BlobSinkStats,
    | "requests"
    | "dataBytes"
    | "bodyBytes"
    | "byKind"
    | "withContentMD5"
    | "withBlobContentMD5"
    | "withContentCrc64"
    | "crc64Checked"
    | "crc64Mismatches"
  >;
}

const seconds = (t0: number): number => (performance.now() - t0) / 1000;

const rateOf = (tree: Tree, s: number): number =>
  tree.kind === "large" ? tree.bytes / MiB / s : tree.files.length / s;

const unitOf = (tree: Tree): string => (tree.kind === "large" ? "MiB/s" : "files/s");

class Meter {
  readonly #cpu0 = process.cpuUsage();
  readonly #server0: number;
  readonly #nats0: number;
  constructor(
    private readonly endpoint: Endpoint,
    private readonly nats: NatsServerFixture,
  ) {
    this.#server0 = cpuSeconds(endpoint.pid) ?? 0;
    this.#nats0 = cpuSeconds(nats.pid) ?? 0;
  }
  read(): Pick<Run, "clientCpuSeconds" | "serverCpuSeconds" | "natsCpuSeconds"> {
    const c = process.cpuUsage(this.#cpu0);
    return {
      clientCpuSeconds: (c.user + c.system) / 1e6,
      serverCpuSeconds: (cpuSeconds(this.endpoint.pid) ?? 0) - this.#server0,
      natsCpuSeconds: (cpuSeconds(this.nats.pid) ?? 0) - this.#nats0,
    };
  }
}

const sinkSummary = (s: BlobSinkStats): NonNullable<Run["sink"]> => ({
  requests: s.requests,
  dataBytes: s.dataBytes,
  bodyBytes: s.bodyBytes,
  byKind: s.byKind,
  withContentMD5: s.withContentMD5,
  withBlobContentMD5: s.withBlobContentMD5,
  withContentCrc64: s.withContentCrc64,
  crc64Checked: s.crc64Checked,
  crc64Mismatches: s.crc64Mismatches,
});

let containerSeq = 0;
const containerName = (side: string, c: string): string =>
  `bench-${side}-${c}-${++containerSeq}-${process.pid}`.slice(0, 63);

const deleteContainers = async (endpoint: Endpoint, names: string[]): Promise<void> => {
  if (endpoint.label !== "azurite") return; // the sink keeps nothing
  const service = BlobServiceClient.fromConnectionString(endpoint.connectionString);
  for (const n of names) await service.getContainerClient(n).deleteIfExists();
};

const runRaw = async (ctx: CaseContext, raw: RawBlobClient): Promise<Run> => {
  const { tree, endpoint } = ctx;
  const container = containerName("raw", ctx.name);
  await raw.createContainer(container);
  await endpoint.sink?.reset();
  const meter = new Meter(endpoint, ctx.nats);
  const t0 = performance.now();
  const bytes =
    tree.kind === "large"
      ? await rawUploadLarge(raw, {
          container,
          root: tree.root,
          files: tree.files,
          blockSize: chooseBlockSize(
            Math.max(...tree.files.map((f) => f.size)),
            DEFAULT_BLOCK_SIZE_BYTES,
          ),
          rangeBytes: DEFAULT_CHUNK_SIZE_BYTES,
          rangeConcurrency: WORKER_DEFAULTS.transferConcurrency,
          blockConcurrency: WORKER_DEFAULTS.blockConcurrency,
        })
      : await rawUploadSmall(raw, {
          container,
          root: tree.root,
          directories: tree.directories,
          files: tree.files,
          concurrency: WORKER_DEFAULTS.transferConcurrency * WORKER_DEFAULTS.fileConcurrency,
        });
  const s = seconds(t0);
  const cpu = meter.read();
  const stats = await endpoint.sink?.stats();
  await deleteContainers(endpoint, [container]);
  if (bytes !== tree.bytes)
    throw new Error(`raw client sent ${bytes} bytes, expected ${tree.bytes}`);
  return {
    rate: rateOf(tree, s),
    seconds: s,
    wallSeconds: s,
    bytes,
    files: tree.files.length,
    ...cpu,
    ...(stats ? { sink: sinkSummary(stats) } : {}),
  };
};

const runHsmfleet = async (ctx: CaseContext): Promise<Run> => {
  const { tree, endpoint } = ctx;
  const container = containerName("hsm", ctx.name);
  await endpoint.sink?.reset();
  const meter = new Meter(endpoint, ctx.nats);
  const t0 = performance.now();
  const summary: ExportSummary = await runExportJob({
    nc: ctx.nc,
    root: tree.root,
    container,
    storage: ctx.storage,
    maxErrors: 0,
  });
  const wall = seconds(t0);
  const cpu = meter.read();
  const stats = await endpoint.sink?.stats();
  await deleteContainers(endpoint, [container, `${container}-logs`]);
  if (
    summary.state !== "succeeded" ||
    summary.errors !== 0 ||
    summary.filesExported !== tree.files.length ||
    summary.bytes !== tree.bytes ||
    summary.directoriesExported !== tree.directories.length
  ) {
    throw new Error(`export did not copy the whole tree: ${JSON.stringify(summary)}`);
  }
  if (stats && stats.dataBytes < tree.bytes)
    throw new Error(`the sink received ${stats.dataBytes} data bytes, expected ≥ ${tree.bytes}`);
  if (stats && stats.crc64Mismatches > 0)
    throw new Error(`the sink found ${stats.crc64Mismatches} wrong x-ms-content-crc64 headers`);
  return {
    rate: rateOf(tree, summary.elapsedSeconds),
    seconds: summary.elapsedSeconds,
    wallSeconds: wall,
    bytes: summary.bytes,
    files: summary.filesExported,
    ...cpu,
    ...(stats ? { sink: sinkSummary(stats) } : {}),
  };
};

// ---------------------------------------------------------------------------------------------
// Layers between the raw client and the whole job (sink only)

type Layer = "sdk" | "uploadFile";

const LAYER_LABELS: Record<"raw" | Layer | "hsmfleet", string> = {
  raw: "raw HTTP (ceiling)",
  sdk: "blob client, from memory, checksums given",
  uploadFile: "+ reads, CRC64s, MD5: uploadFile() direct",
  hsmfleet: "+ job: walk, listings, NATS, batches",
};

const md5Of = (b: Buffer): Buffer => createHash("md5").update(b).digest();

/**
 * The same requests through the SDK (`sdk`: bodies from one in-memory buffer, MD5s precomputed)
 * or through uploadFile() from the files (`uploadFile`), at the worker's concurrency.
 */
const runLayer = async (ctx: CaseContext, layer: Layer): Promise<Run> => {
  const { tree, endpoint } = ctx;
  const container = openContainer(
    ctx.storage,
    containerName(layer === "sdk" ? "sdk" : "upl", ctx.name),
  );
  await container.ensureExists();
  const metadata = sampleMetadata();
  const budget = new MemoryBudget(WORKER_DEFAULTS.memoryBudgetBytes);
  const maxSize = Math.max(0, ...tree.files.map((f) => f.size));
  const blockSize = chooseBlockSize(maxSize, DEFAULT_BLOCK_SIZE_BYTES);
  const data = Buffer.alloc(tree.kind === "large" ? blockSize : maxSize, 0x5a);
  const md5s = new Map<number, Buffer>();
  const md5For = (n: number): Buffer => {
    let m = md5s.get(n);
    if (m === undefined) md5s.set(n, (m = md5Of(data.subarray(0, n))));
    return m;
  };
  const crcs = new Map<number, Buffer>();
  const crc64For = (n: number): Buffer => {
    let c = crcs.get(n);
    if (c === undefined) crcs.set(n, (c = crc64Bytes(crc64(data.subarray(0, n)))));
    return c;
  };
  const pathOf = (name: string): Buffer => Buffer.from(join(tree.root, name));
  // What the walk hands uploadFile (size and mtime), listed before the clock starts.
  type Listed = { size: number; mtimeSec: number; mtimeNsec: number };
  const listed = new Map<string, Listed>();
  if (layer === "uploadFile" && tree.kind === "small") {
    for (const f of tree.files) {
      const st = await stat(join(tree.root, f.name), { bigint: true });
      listed.set(f.name, {
        size: Number(st.size),
        mtimeSec: Number(st.mtimeNs / 1_000_000_000n),
        mtimeNsec: Number(st.mtimeNs % 1_000_000_000n),
      });
    }
  }
  await endpoint.sink?.reset();
  const meter = new Meter(endpoint, ctx.nats);
  const t0 = performance.now();
  if (tree.kind === "large") {
    await forEachLimit(tree.files, WORKER_DEFAULTS.transferConcurrency, async (f) => {
      if (layer === "uploadFile") {
        await uploadFile(container, pathOf(f.name), f.name, {
          metadata,
          concurrency: WORKER_DEFAULTS.blockConcurrency,
          budget,
        });
        return;
      }
      const blocks: Array<{ id: string; length: number }> = [];
      for (let offset = 0; offset < f.size; offset += blockSize)
        blocks.push({ id: blockIdFor(offset), length: Math.min(blockSize, f.size - offset) });
      await forEachLimit(blocks, WORKER_DEFAULTS.blockConcurrency, async (b) => {
        await container.stageBlock(f.name, b.id, data.subarray(0, b.length), {
          contentCrc64: crc64For(b.length),
        });
      });
      await container.commitBlockList(
        f.name,
        blocks.map((b) => b.id),
        { metadata, contentMD5: md5For(blockSize) },
      );
    });
  } else {
    const concurrency = WORKER_DEFAULTS.transferConcurrency * WORKER_DEFAULTS.fileConcurrency;
    await forEachLimit(["", ...tree.directories.map((d) => `${d}/`)], concurrency, async (p) => {
      for await (const _ of container.listLevel(p)) {
        // the sink and a fresh container list nothing
      }
    });
    const dirMeta = { ...metadata, permissions: "0755", hdi_isfolder: "true" };
    const ops = [
      ...tree.directories.map((name) => ({ name, size: 0, dir: true })),
      ...tree.files.map((f) => ({ ...f, dir: false })),
    ];
    await forEachLimit(ops, concurrency, async (op) => {
      if (op.dir) await container.putBlob(op.name, Buffer.alloc(0), { metadata: dirMeta });
      else if (layer === "uploadFile")
        await uploadFile(container, pathOf(op.name), op.name, {
          metadata,
          budget,
          expected: listed.get(op.name)!,
        });
      else
        await container.putBlob(op.name, data.subarray(0, op.size), {
          metadata,
          contentMD5: md5For(op.size),
        });
    });
  }
  const s = seconds(t0);
  const cpu = meter.read();
  const stats = await endpoint.sink?.stats();
  await deleteContainers(endpoint, [container.name]);
  return {
    rate: rateOf(tree, s),
    seconds: s,
    wallSeconds: s,
    bytes: tree.bytes,
    files: tree.files.length,
    ...cpu,
    ...(stats ? { sink: sinkSummary(stats) } : {}),
  };
};

/** Single-core MD5 speed of this machine, MiB/s (best of 3 over 64 MiB). */
const measureMd5 = (): number => {
  const buf = Buffer.alloc(64 * MiB, 0xa5);
  let bestRate = 0;
  for (let i = 0; i < 3; i++) {
    const t0 = performance.now();
    md5Of(buf);
    bestRate = Math.max(bestRate, 64 / seconds(t0));
  }
  return bestRate;
};

// ---------------------------------------------------------------------------------------------
// Cases

interface CaseContext {
  name: CaseName;
  tree: Tree;
  endpoint: Endpoint;
  nats: NatsServerFixture;
  /** The coordinator's connection (the worker has its own). */
  nc: NatsConnection;
  storage: NonNullable<ReturnType<typeof parseStorageTarget>>;
}

interface Side {
  runs: Run[];
  best: number;
  median: number;
}

interface CaseResult {
  name: CaseName;
  endpoint: string;
  dataSet: string;
  unit: string;
  files: number;
  bytes: number;
  raw: Side;
  hsmfleet: Side;
  /** median hsmfleet / median raw. */
  ratio: number;
  ratioBest: number;
  aim?: { ratio: number; met: boolean };
  /** Sink cases: the layers between the raw client and the job. */
  layers?: Partial<Record<Layer, Side>>;
  /** Sink cases: `hsmfleet export` as a one-shot CLI run (embedded NATS) and `rclone copy`. */
  cli?: Side;
  peer?: Side;
  peerLabel?: string;
  profile?: ReturnType<typeof summarizeProfile> & { file: string };
}

const side = (runs: Run[]): Side => ({
  runs,
  best: best(runs.map((r) => r.rate)),
  median: median(runs.map((r) => r.rate)),
});

const describeRun = (r: Run, unit: string): string =>
  `${int(r.rate)} ${unit} (${r.seconds.toFixed(2)} s` +
  `${r.wallSeconds !== r.seconds ? `, wall ${r.wallSeconds.toFixed(2)} s` : ""}), CPU s: client ${r.clientCpuSeconds.toFixed(2)}, ` +
  `server ${r.serverCpuSeconds.toFixed(2)}, nats ${r.natsCpuSeconds.toFixed(2)}` +
  (r.sink
    ? `; ${int(r.sink.requests)} requests, ${int(r.sink.withContentMD5)} with Content-MD5, ` +
      `${int(r.sink.withContentCrc64)} with x-ms-content-crc64 (${int(r.sink.crc64Checked)} checked)`
    : "");

/** A one-shot command's run (wall clock; CPU of the command and its children). */
const timedRunOf = (ctx: CaseContext, r: TimedRun, serverCpu: number): Run => ({
  rate: rateOf(ctx.tree, r.seconds),
  seconds: r.seconds,
  wallSeconds: r.seconds,
  bytes: ctx.tree.bytes,
  files: ctx.tree.files.length,
  clientCpuSeconds: r.cpuUser + r.cpuSystem,
  serverCpuSeconds: serverCpu,
  natsCpuSeconds: 0,
});

/**
 * `hsmfleet export` as a user runs it (one process: the CLI, its embedded nats-server, its
 * worker), or the peer `rclone copy` (peer.ts), of the same tree into a fresh container of the
 * sink, start to exit.
 */
const runOneShot = async (ctx: CaseContext, which: "cli" | "rclone"): Promise<Run> => {
  const container = containerName(which, ctx.name);
  const server0 = cpuSeconds(ctx.endpoint.pid) ?? 0;
  let r: TimedRun;
  if (which === "rclone") {
    r = await rcloneCopy(PEER!, ctx.tree.root, rcloneRemote(ctx.endpoint.blobEndpoint, container));
  } else {
    r = await timedRun(
      [
        process.execPath,
        CLI_BIN,
        "--state-dir",
        join(ctx.tree.root, "..", `cli-state-${process.pid}`),
        "--storage",
        ctx.endpoint.connectionString,
        "export",
        "--container",
        container,
        "--quiet",
        ctx.tree.root,
      ],
      { ...process.env, HSMFLEET_LOG_LEVEL: "warn" },
    );
    if (r.code !== 0) throw new Error(`hsmfleet export failed (${r.code}): ${r.stderrTail}`);
  }
  return timedRunOf(ctx, r, (cpuSeconds(ctx.endpoint.pid) ?? 0) - server0);
};

const measureCase = async (ctx: CaseContext, raw: RawBlobClient): Promise<CaseResult> => {
  const { tree } = ctx;
  const unit = unitOf(tree);
  log(`${ctx.name}: ${TREE_SPECS[tree.label]!.describe} → ${ctx.endpoint.label}`);
  const warmRaw = await runRaw(ctx, raw);
  log(`  warm-up raw:      ${describeRun(warmRaw, unit)}`);
  const warmHsm = await runHsmfleet(ctx);
  log(`  warm-up hsmfleet: ${describeRun(warmHsm, unit)}`);
  const raws: Run[] = [];
  const hsms: Run[] = [];
  const profiler = CPU_PROF_DIR ? new CpuProfiler() : undefined;
  let profileOut: CaseResult["profile"];
  try {
    for (let i = 0; i < RUNS; i++) {
      // Alternate which side goes first, so drift of the machine does not favour one.
      const order = i % 2 === 0 ? (["raw", "hsm"] as const) : (["hsm", "raw"] as const);
      for (const which of order) {
        if (which === "raw") {
          const r = await runRaw(ctx, raw);
          raws.push(r);
          log(`  run ${i + 1} raw:      ${describeRun(r, unit)}`);
        } else {
          await profiler?.start();
          const r = await runHsmfleet(ctx);
          if (profiler) {
            const file = join(CPU_PROF_DIR!, `${ctx.name}-run${i + 1}.cpuprofile`);
            const p = await profiler.stop(file);
            if (i === 0) profileOut = { ...summarizeProfile(p), file };
          }
          hsms.push(r);
          log(`  run ${i + 1} hsmfleet: ${describeRun(r, unit)}`);
        }
      }
    }
  } finally {
    profiler?.close();
  }
  const rawSide = side(raws);
  const hsmSide = side(hsms);
  const ratio = hsmSide.median / rawSide.median;
  const result: CaseResult = {
    name: ctx.name,
    endpoint: ctx.endpoint.label,
    dataSet: TREE_SPECS[tree.label]!.describe,
    unit,
    files: tree.files.length,
    bytes: tree.bytes,
    raw: rawSide,
    hsmfleet: hsmSide,
    ratio,
    ratioBest: hsmSide.best / rawSide.best,
  };
  if (ctx.endpoint.label === "sink") {
    const aim = AIM[tree.kind];
    result.aim = { ratio: aim, met: ratio >= aim };
    // One-shot runs: what a user runs (hsmfleet export with its embedded NATS) beside the peer.
    const cliRuns: Run[] = [];
    const peerRuns: Run[] = [];
    for (let i = 0; i < RUNS; i++) {
      const order: Array<"cli" | "rclone"> = PEER
        ? i % 2 === 0
          ? ["cli", "rclone"]
          : ["rclone", "cli"]
        : ["cli"];
      for (const which of order) {
        const r = await runOneShot(ctx, which);
        (which === "cli" ? cliRuns : peerRuns).push(r);
        log(
          `  run ${i + 1} ${which === "cli" ? "hsmfleet CLI" : "rclone copy "}: ${describeRun(r, unit)}`,
        );
      }
    }
    result.cli = side(cliRuns);
    if (peerRuns.length > 0) {
      result.peer = side(peerRuns);
      result.peerLabel = `rclone copy ${rcloneFlags().join(" ")}`;
    }
    if (BREAKDOWN) {
      const layerRuns: Record<Layer, Run[]> = { sdk: [], uploadFile: [] };
      for (let i = 0; i < RUNS; i++) {
        for (const layer of i % 2 === 0
          ? (["sdk", "uploadFile"] as const)
          : (["uploadFile", "sdk"] as const)) {
          const r = await runLayer(ctx, layer);
          layerRuns[layer].push(r);
          log(`  run ${i + 1} ${layer}: ${describeRun(r, unit)}`);
        }
      }
      result.layers = { sdk: side(layerRuns.sdk), uploadFile: side(layerRuns.uploadFile) };
    }
  }
  if (profileOut) {
    result.profile = profileOut;
    log(
      `  CPU profile of hsmfleet run 1 (main thread, ${profileOut.totalMs.toFixed(0)} ms): ${profileOut.file}`,
    );
    for (const c of profileOut.categories)
      log(`    ${(c.share * 100).toFixed(1).padStart(5)}%  ${c.name}`);
    log("    top self time:");
    for (const l of profileOut.top.slice(0, 15))
      log(`    ${(l.share * 100).toFixed(1).padStart(5)}%  ${l.name}  ${l.where}`);
  }
  return result;
};

// ---------------------------------------------------------------------------------------------
// Main

const log = (line: string): void => {
  process.stderr.write(`${line}\n`);
};

const ownedDirs: string[] = [];
const cleanups: Array<() => Promise<void>> = [];

const onSignal = (signal: NodeJS.Signals): void => {
  process.stderr.write(`\n${signal}: stopping, removing ${ownedDirs.join(", ")} …\n`);
  for (const dir of ownedDirs) rmSync(dir, { recursive: true, force: true });
  process.exit(130); // the sink, nats-server and Azurite are killed by their exit hooks
};

const pad = (s: string, n: number): string => s.padEnd(n);

/** One worker for this endpoint (only one at a time pulls work), run until `fn` is done. */
const withWorker = async <T>(
  nats: NatsServerFixture,
  storage: CaseContext["storage"],
  fn: () => Promise<T>,
): Promise<T> => {
  const nc = await connectBus({ servers: nats.url, reconnectForever: false });
  const worker = await Worker.create({ nc, storage, workerId: `bench-worker-${process.pid}` });
  const running = worker.run();
  try {
    return await fn();
  } finally {
    await worker.shutdown();
    await running.catch(() => undefined);
    await nc.close();
  }
};

const main = async (): Promise<void> => {
  if (CASES.some((c) => c.startsWith("sink-"))) {
    const found = ensureRclone(log);
    if ("missing" in found) log(`peer column left out: ${found.missing}`);
    else PEER = found;
  }
  process.once("SIGINT", onSignal);
  process.once("SIGTERM", onSignal);
  process.once("SIGHUP", onSignal);

  let treesDir: TempDir | undefined;
  let nats: NatsServerFixture | undefined;
  let coordinatorNc: NatsConnection | undefined;
  try {
    let base: string;
    if (BENCH_DIR) {
      base = resolve(BENCH_DIR);
      await mkdir(base, { recursive: true });
    } else {
      treesDir = await tempDir("hsmfleet-export-bench-");
      ownedDirs.push(treesDir.path);
      base = treesDir.path;
    }
    if (CPU_PROF_DIR) await mkdir(CPU_PROF_DIR, { recursive: true });

    const treeFor: Record<CaseName, string> = {
      "sink-large": "large",
      "sink-small": "small",
      "azurite-large": "azurite-large",
      "azurite-small": "azurite-small",
    };
    const treeNames = [...new Set(CASES.map((c) => treeFor[c]))];
    const needed = treeNames.reduce((s, n) => s + treeBytesOf(TREE_SPECS[n]!.spec), 0);
    const fs = statfsSync(base);
    const free = fs.bavail * fs.bsize;
    if (needed + 1024 * MiB > free && !BENCH_DIR)
      throw new Error(
        `${base} has ${int(free / MiB)} MiB free; the trees need ${int(needed / MiB)} MiB (+1 GiB margin). ` +
          `Set HSMFLEET_BENCH_DIR or HSMFLEET_BENCH_LARGE (e.g. 2x256).`,
      );
    const trees = new Map<string, Tree>();
    for (const n of treeNames) trees.set(n, await prepareTree(base, n));
    for (const t of trees.values())
      log(`warm cache ${t.label}: ${(await warmCache(t)).toFixed(2)} s`);

    nats = await startNatsServer();
    cleanups.push(() => nats!.stop());
    log(`nats-server ${nats.url} (pid ${nats.pid})`);
    coordinatorNc = await connectBus({ servers: nats.url, reconnectForever: false });

    const md5MiBps = measureMd5();
    log(`MD5 on one core: ${int(md5MiBps)} MiB/s`);
    const loadAtStart = loadavg()[0] ?? Number.NaN;
    const results: CaseResult[] = [];
    for (const label of ["sink", "azurite"] as const) {
      const cases = CASES.filter((c) => c.startsWith(`${label}-`));
      if (cases.length === 0) continue;
      let endpoint: Endpoint;
      if (label === "sink") {
        const sink = await spawnBlobSink({
          logRequests: SINK_LOG_REQUESTS,
          checkCrc64Every: SINK_CRC64_EVERY,
        });
        cleanups.push(() => sink.stop());
        endpoint = { label, ...sink, sink };
        log(`blob sink (discards data) ${sink.blobEndpoint} (pid ${sink.pid})`);
      } else {
        const azurite = await startAzurite();
        cleanups.push(() => azurite.stop());
        endpoint = { label, ...azurite, azurite };
        log(`azurite ${azurite.blobEndpoint} (pid ${azurite.pid})`);
      }
      const storage = parseStorageTarget(endpoint.connectionString);
      if (!storage) throw new Error("no storage target");
      const raw = new RawBlobClient({
        blobEndpoint: endpoint.blobEndpoint,
        accountName: SINK_ACCOUNT_NAME,
        accountKey: SINK_ACCOUNT_KEY,
      });
      try {
        await withWorker(nats, storage, async () => {
          for (const name of cases) {
            results.push(
              await measureCase(
                {
                  name,
                  tree: trees.get(treeFor[name])!,
                  endpoint,
                  nats: nats!,
                  nc: coordinatorNc!,
                  storage,
                },
                raw,
              ),
            );
          }
        });
      } finally {
        raw.close();
        await cleanups.pop()?.();
      }
    }
    const loadAtEnd = loadavg()[0] ?? Number.NaN;

    const nCpus = availableParallelism();
    const fmt = (v: number) => int(v);
    const medianOf = (
      runs: Run[],
      key: "clientCpuSeconds" | "serverCpuSeconds" | "natsCpuSeconds",
    ) => median(runs.map((r) => r[key])).toFixed(2);
    const lines = [
      "",
      `export benchmark — one in-process worker (transferConcurrency ${WORKER_DEFAULTS.transferConcurrency}, ` +
        `fileConcurrency ${WORKER_DEFAULTS.fileConcurrency}, blockConcurrency ${WORKER_DEFAULTS.blockConcurrency}, ` +
        `8 MiB blocks), warm page cache, ${nCpus} CPUs, ${RUNS} runs each, load average ${loadAtStart.toFixed(1)} → ${loadAtEnd.toFixed(1)}`,
      `${pad("endpoint", 9)}${pad("data set", 28)}${pad("raw ceiling best / median", 30)}${pad("hsmfleet best / median", 30)}${pad("ratio (median)", 16)}aim`,
      ...results.map(
        (r) =>
          `${pad(r.endpoint, 9)}${pad(r.dataSet, 28)}${pad(`${fmt(r.raw.best)} / ${fmt(r.raw.median)} ${r.unit}`, 30)}` +
          `${pad(`${fmt(r.hsmfleet.best)} / ${fmt(r.hsmfleet.median)} ${r.unit}`, 30)}` +
          `${pad(`${r.ratio.toFixed(2)} (best ${r.ratioBest.toFixed(2)})`, 16)}` +
          (r.aim ? `≥ ${r.aim.ratio.toFixed(2)} ${r.aim.met ? "MET" : "NOT MET"}` : "—"),
      ),
      "",
      "median CPU seconds per run, client process / server / nats-server (raw | hsmfleet):",
      ...results.map(
        (r) =>
          `  ${pad(`${r.endpoint} ${r.dataSet}`, 36)}${medianOf(r.raw.runs, "clientCpuSeconds")} / ${medianOf(r.raw.runs, "serverCpuSeconds")} / ${medianOf(r.raw.runs, "natsCpuSeconds")}` +
          `  |  ${medianOf(r.hsmfleet.runs, "clientCpuSeconds")} / ${medianOf(r.hsmfleet.runs, "serverCpuSeconds")} / ${medianOf(r.hsmfleet.runs, "natsCpuSeconds")}`,
      ),
      "hsmfleet rates use the job's own clock (walk, listings, uploads, commits); the raw client's the same requests.",
      "",
      "one-shot runs against the sink (start to exit, what a user runs; CPU s = the command and its children, embedded nats-server included):",
      `${pad("  data set", 30)}${pad("rclone copy (peer)", 30)}${pad("hsmfleet export CLI", 30)}${pad("to rclone (wall)", 18)}to rclone (CPU)`,
      ...results
        .filter((r) => r.cli !== undefined)
        .map((r) => {
          const cpu = (sd: Side): number => median(sd.runs.map((x) => x.clientCpuSeconds));
          const cell = (sd: Side | undefined): string =>
            sd ? `${fmt(sd.median)} ${r.unit}, ${cpu(sd).toFixed(2)} CPU s` : "—";
          return (
            `  ${pad(r.dataSet, 28)}${pad(cell(r.peer), 30)}${pad(cell(r.cli), 30)}` +
            (r.peer
              ? `${pad((r.cli!.median / r.peer.median).toFixed(2), 18)}${(cpu(r.peer) / cpu(r.cli!)).toFixed(2)}`
              : "— (no peer)")
          );
        }),
      ...(PEER
        ? [
            `  peer: ${PEER.version}, ${results.find((r) => r.peerLabel)?.peerLabel ?? ""}, account SAS URL`,
          ]
        : []),
      "ratio = median hsmfleet / median raw ceiling; aims (one worker, against the sink): large ≥ 0.80, small ≥ 0.60.",
    ];
    // uploadFile() of a block-path file hashes every byte once with MD5 (the whole-file MD5, one
    // core per file); chunked files (the job's path for files over the chunk size) hash none.
    const md5Bound = Math.min(nCpus, WORKER_DEFAULTS.transferConcurrency) * md5MiBps;
    for (const r of results.filter((x) => x.layers !== undefined)) {
      const perUnit = (cpu: number): string =>
        r.unit === "MiB/s"
          ? `${(cpu / (r.bytes / 1024 / MiB)).toFixed(2)} CPU s/GiB`
          : `${int((cpu / r.files) * 1e6)} µs CPU/file`;
      const rows: Array<[string, Side | undefined]> = [
        [LAYER_LABELS.raw, r.raw],
        [LAYER_LABELS.sdk, r.layers?.sdk],
        [LAYER_LABELS.uploadFile, r.layers?.uploadFile],
        [LAYER_LABELS.hsmfleet, r.hsmfleet],
      ];
      lines.push(
        "",
        `where the time goes — ${r.endpoint} ${r.dataSet} (medians: rate, client CPU per run, per unit):`,
        ...rows
          .filter((row): row is [string, Side] => row[1] !== undefined)
          .map(([label, sd]) => {
            const cpu = median(sd.runs.map((x) => x.clientCpuSeconds));
            return `  ${pad(label, 46)}${pad(`${int(sd.median)} ${r.unit}`, 16)}${pad(`${cpu.toFixed(2)} s`, 10)}${perUnit(cpu)}`;
          }),
      );
      if (r.unit === "MiB/s")
        lines.push(
          `  MD5 bound of uploadFile() direct: one whole-file MD5 pass per byte (blocks carry CRC64), one core per file; at ${int(md5MiBps)} MiB/s per core ≤ ${int(md5Bound)} MiB/s on ${nCpus} CPUs with nothing else running. ` +
            `The job chunks files over the chunk size (256 MiB): their blocks carry CRC64 only, no MD5.`,
        );
    }
    if (Math.max(loadAtStart, loadAtEnd) > nCpus)
      lines.push(
        `warning: load average above the CPU count (${nCpus}): other processes competed for the CPUs; numbers are noisy`,
      );
    process.stdout.write(`${lines.join("\n")}\n`);

    await mkdir(join(REPO_ROOT, "bench", "results"), { recursive: true });
    await writeFile(
      RESULTS_FILE,
      `${JSON.stringify(
        {
          benchmark: "export",
          date: new Date().toISOString(),
          node: process.version,
          cpus: nCpus,
          cpuModel: cpus()[0]?.model ?? "unknown",
          runsPerSide: RUNS,
          loadAverage: { start: loadAtStart, end: loadAtEnd },
          worker: WORKER_DEFAULTS,
          aims: AIM,
          md5MiBPerSecondOneCore: md5MiBps,
          md5BoundMiBPerSecond: md5Bound,
          cases: results,
        },
        null,
        2,
      )}\n`,
    );
    log(`results written to ${RESULTS_FILE}`);
  } finally {
    await coordinatorNc?.close().catch(() => undefined);
    for (const c of cleanups.reverse()) await c().catch(() => undefined);
    if (treesDir) {
      log("removing the trees …");
      await treesDir.cleanup();
    }
  }
};

try {
  await main();
} catch (err) {
  process.stderr.write(
    `export benchmark failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`,
  );
  process.exitCode = 1;
}
