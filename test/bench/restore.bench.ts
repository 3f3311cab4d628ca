/**
 * `npm run bench:restore`: how fast hsmfleet restores released files from Blob and imports a
 * namespace, with 1 and 2 standalone worker processes, beside the ceiling of a raw-HTTP client
 * (raw-client.ts rawRestore) doing the same reads into the same files in the same run.
 *
 * Endpoint: the loopback benchmark sink (blob-sink.ts) in a child process of its own. Its read
 * side serves REGISTERED blobs with synthetic, deterministic content (it stores nothing), so the
 * figures measure the client side alone.
 *
 * Restore cases: N released stubs are made in a temp dir the way `hsmfleet import --mode
 * namespace` makes them on the emulation backend — an empty file, HsmEmulation.importReleased
 * (sparse, `trusted.hsm` = 0xd released exists archived) and `trusted.hsmfleet.archive` =
 * `<container>/<blob>` (import-target.ts formatArchiveLocation) — pointing at sink blobs. Then
 * runRestoreJob runs in this process (the coordinator) with standalone workers
 * (`node hsmfleet.js --nats URL --storage <sink> worker`, as on a VM), and restores them all. The
 * stubs are made once per case and released again before every later run (data dropped, state
 * 0xd; outside the clock). The first run of each case and worker count is checked in full: every
 * file 0x9 exists archived, right size, content equal to the sink's. After the workers start, an
 * unmeasured restore of 400 small files warms them up (Azure SDK loaded, connections open).
 *   small      many small files (default 20,000 × 4 KiB, 200 per directory)
 *   large      a few large files (default 8 × 64 MiB, one directory)
 *   large-md5  the same, blobs with a Content-MD5 (the client re-reads each file and verifies it)
 * Rates use the job's own clock (summary.elapsedSeconds: walk + restore): files/s and MiB/s.
 *
 * Raw ceiling (same run, alternating with the hsmfleet runs): per file Get Blob Properties + ranged
 * GETs of 8 MiB (If-Match), at one worker's concurrency (32 files, 8 ranges per file, at most 64
 * ranges = the 512 MiB budget), each range written at its offset into the same freshly made stub
 * files (the fair ceiling: a restore writes files). A "discard" variant (received and counted,
 * nothing written) shows the network path alone.
 *
 * Import case: a container of N blobs (default 20,000 in 100 directories with hdi_isfolder stubs,
 * AMLFS metadata) imported with `--mode namespace` (runImportJob) into a fresh directory per run,
 * rate = totalBlobsWalked / elapsed, beside AMLFS's figures (auto-import ~2,000 blobs/s; the
 * documented batch restore 186 files/s) and two local references: the raw client listing every
 * level (listing alone) and this process making the same number of stubs directly (file system
 * alone).
 *
 * Environment:
 *   HSMFLEET_BENCH_RUNS      measured runs per side, case and worker count (default 2)
 *   HSMFLEET_BENCH_CASES     comma-separated subset of small,large,large-md5,import (default all)
 *   HSMFLEET_BENCH_WORKERS   worker counts, comma-separated, ascending (default 1,2)
 *   HSMFLEET_BENCH_SMALL     COUNTxKIB (default 20000x4)
 *   HSMFLEET_BENCH_LARGE     COUNTxMIB (default 8x64)
 *   HSMFLEET_BENCH_IMPORT    blobs of the import case (default 20000)
 *   HSMFLEET_BENCH_DIR       where the stubs and import targets go (default: a temp dir)
 *   HSMFLEET_BENCH_FULL_NATS full-* cases: embedded,running (default); running-md5 adds the
 *                            Content-MD5 path (HSMFLEET_RANGE_CRC64=0); running-nodehttp adds the
 *                            CLI with node:http GETs (HSMFLEET_DIRECT_GET_SOCKET=0), the path before
 *                            socket-get.ts; running-stepwise the CLI with HSMFLEET_SMALL_FILE_JOB=0
 *                            (small files finished call by call, the path before one native job
 *                            per file); running-nostream the CLI with HSMFLEET_STREAM_PIECE_BYTES=0
 *                            (each range written after all of it arrived, the path before
 *                            range-write.ts wrote ranges as they arrive)
 *   HSMFLEET_BENCH_CPU_PROF  a directory: the worker processes run with --cpu-prof there
 *                            (<dir>/workers-<n>/), summarized on stderr at the end; the full-*
 *                            one-shot CLI runs too (<dir>/cli-<side>/)
 */
import "./threadpool.js";
import type { ChildProcess } from "node:child_process";
import type { Profiler } from "node:inspector";
import { constants, existsSync, readFileSync, readdirSync, rmSync } from "node:fs";
import { mkdir, open, readFile, rename, rm, writeFile } from "node:fs/promises";
import { availableParallelism, cpus, loadavg } from "node:os";
import { basename, join, resolve } from "node:path";
import { performance } from "node:perf_hooks";
import { setTimeout as sleep } from "node:timers/promises";
import { fileURLToPath } from "node:url";
import { createHash } from "node:crypto";
import { parseStorageTarget } from "@hsmfleet/blob";
import { connectBus } from "@hsmfleet/bus";
import type { NatsConnection } from "@hsmfleet/bus";
import { runImportJob, runRestoreJob } from "@hsmfleet/coordinator";
import type { ImportSummary, RestoreSummary } from "@hsmfleet/coordinator";
import { HSM_COMPAT, HsmFlag } from "@hsmfleet/core";
import { HsmEmulation, RELEASED_STUB_FLAGS, setXattr, hsmAtAbsolutePaths } from "@hsmfleet/fs";
import { startNatsServer, tempDir } from "@hsmfleet/testkit";
import type { NatsServerFixture, TempDir } from "@hsmfleet/testkit";
import { WORKER_DEFAULTS } from "@hsmfleet/worker";
import { SINK_ACCOUNT_KEY, SINK_ACCOUNT_NAME, sinkContent, spawnBlobSink } from "./blob-sink.js";
import type { BlobSinkProcess, SinkBlobSpec } from "./blob-sink.js";
import { summarizeProfile } from "./cpu-profile.js";
import {
  LineTail,
  awaitFreedInodes,
  best,
  closed,
  cpuSeconds,
  int,
  median,
  requireBundle,
  retireTree,
  settleWrites,
  spawnTracked,
  stopChild,
} from "./proc.js";
import { RawBlobClient, forEachLimit, rawRestore, sampleMetadata } from "./raw-client.js";
import { SocketRangeClient, socketRestoreNew } from "./raw-socket.js";
import { ensureRclone, rcloneCopy, rcloneFlags, rcloneRemote, timedRun } from "./peer.js";
import type { Peer, TimedRun } from "./peer.js";

/** The CLI as a user runs it: bin/hsmfleet.js (the bundle with its code cache; startup.md). */
const CLI_BIN = fileURLToPath(
  new URL("../../bin/hsmfleet.js", import.meta.resolve("@hsmfleet/cli")),
);
/** test/dist/bench/restore.bench.js -> repository root. */
const REPO_ROOT = fileURLToPath(new URL("../../../", import.meta.url));
const RESULTS_FILE = join(REPO_ROOT, "bench", "results", "restore.json");
const MiB = 1024 * 1024;
/** The emulation backend's HSM xattr and the archive-location xattr beside it (import-target.ts). */
const HSM_XATTR = "trusted.hsm";
const ARCHIVE_XATTR = "trusted.hsmfleet.archive";
const ARCHIVE_ID = 1;
/** hsmfleet's download shape (packages/blob download.ts defaults). */
const RANGE_SIZE = 8 * MiB;
/** AMLFS figures printed beside the results. */
const ANCHORS = { amlfsAutoImportBlobsPerSecond: 2000, amlfsBatchRestoreFilesPerSecond: 186 };

const envInt = (name: string, fallback: number, min = 1): number => {
  const raw = process.env[name];
  if (raw === undefined || raw === "") return fallback;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < min) throw new Error(`${name} must be an integer ≥ ${min}`);
  return n;
};
const envPair = (name: string, fallback: string, what: string): [number, number] => {
  const raw = process.env[name] || fallback;
  const m = /^(\d+)x(\d+)$/.exec(raw);
  if (!m || Number(m[1]) < 1) throw new Error(`${name} must look like ${fallback} (${what})`);
  return [Number(m[1]), Number(m[2])];
};

const RUNS = envInt("HSMFLEET_BENCH_RUNS", 2);
const BENCH_DIR = process.env["HSMFLEET_BENCH_DIR"] || undefined;
const CPU_PROF_DIR = process.env["HSMFLEET_BENCH_CPU_PROF"] || undefined;
const [SMALL_COUNT, SMALL_KIB] = envPair("HSMFLEET_BENCH_SMALL", "20000x4", "files x KiB");
const [LARGE_COUNT, LARGE_MIB] = envPair("HSMFLEET_BENCH_LARGE", "8x64", "files x MiB");
const [FULL_SMALL_COUNT, FULL_SMALL_KIB] = envPair(
  "HSMFLEET_BENCH_FULL_SMALL",
  "10000x4",
  "files x KiB",
);
const [FULL_LARGE_COUNT, FULL_LARGE_MIB] = envPair(
  "HSMFLEET_BENCH_FULL_LARGE",
  "4x512",
  "files x MiB",
);
/**
 * "embedded" (the CLI's default), "running" (--nats to the bench's server), "running-nodehttp"
 * (the same with HSMFLEET_DIRECT_GET_SOCKET=0: GETs read by node:http, the path before
 * socket-get.ts, for a before/after in one run), "running-md5" (the same with
 * HSMFLEET_RANGE_CRC64=0: integrity by the whole-blob Content-MD5 instead of the service's range
 * CRC64s, the path before range-crc64.ts), "running-stepwise" (HSMFLEET_SMALL_FILE_JOB=0: small
 * files written and finished call by call, the path before the one native job per file),
 * "running-nostream" (HSMFLEET_STREAM_PIECE_BYTES=0: each range written once all of it arrived);
 * comma-separated.
 */
type FullNats =
  | "embedded"
  | "running"
  | "running-nodehttp"
  | "running-md5"
  | "running-stepwise"
  | "running-nostream";
const FULL_NATS: FullNats[] = (process.env["HSMFLEET_BENCH_FULL_NATS"] || "embedded,running")
  .split(",")
  .map((s) => s.trim())
  .map((s) => {
    if (
      s !== "embedded" &&
      s !== "running" &&
      s !== "running-nodehttp" &&
      s !== "running-md5" &&
      s !== "running-stepwise" &&
      s !== "running-nostream"
    )
      throw new Error(
        "HSMFLEET_BENCH_FULL_NATS: embedded, running, running-nodehttp, running-md5, running-stepwise, running-nostream",
      );
    return s;
  });
const IMPORT_COUNT = envInt("HSMFLEET_BENCH_IMPORT", 20_000);
const ALL_CASES = ["full-small", "full-large", "small", "large", "large-md5", "import"] as const;
type CaseName = (typeof ALL_CASES)[number];
type RestoreCase = "small" | "large" | "large-md5";
type FullCase = "full-small" | "full-large";
const isRestoreCase = (c: CaseName): c is RestoreCase =>
  c === "small" || c === "large" || c === "large-md5";
const isFullCase = (c: CaseName): c is FullCase => c === "full-small" || c === "full-large";
const CASES: CaseName[] = (() => {
  const raw = process.env["HSMFLEET_BENCH_CASES"];
  if (!raw) return [...ALL_CASES];
  const names = raw.split(",").map((s) => s.trim());
  for (const n of names)
    if (!(ALL_CASES as readonly string[]).includes(n))
      throw new Error(`HSMFLEET_BENCH_CASES: unknown case ${n} (${ALL_CASES.join(", ")})`);
  return names as CaseName[];
})();
const WORKER_COUNTS: number[] = (process.env["HSMFLEET_BENCH_WORKERS"] || "1,2")
  .split(",")
  .map((s) => Number(s.trim()))
  .map((n) => {
    if (!Number.isInteger(n) || n < 1) throw new Error("HSMFLEET_BENCH_WORKERS: e.g. 1,2");
    return n;
  })
  .sort((a, b) => a - b);

/** One worker's restore concurrency (WORKER_DEFAULTS): what the raw ceiling uses. */
const RAW_SHAPE = {
  fileConcurrency: WORKER_DEFAULTS.transferConcurrency * WORKER_DEFAULTS.fileConcurrency,
  rangeConcurrency: WORKER_DEFAULTS.blockConcurrency,
  maxRangesInFlight: Math.floor(WORKER_DEFAULTS.memoryBudgetBytes / RANGE_SIZE),
};

const log = (line: string): void => {
  process.stderr.write(`${line}\n`);
};
const seconds = (t0: number): number => (performance.now() - t0) / 1000;
const pad = (s: string, n: number): string => s.padEnd(n);

// ---------------------------------------------------------------------------------------------
// Data sets

interface DataSet {
  container: string;
  /** Blob name = path relative to the restore root. */
  files: Array<{ name: string; size: number }>;
  directories: string[];
  bytes: number;
  md5: boolean;
  describe: string;
}

const filesIn = (count: number, perDir: number, size: number) => {
  const files: Array<{ name: string; size: number }> = [];
  const directories = new Set<string>();
  const dirs = Math.ceil(count / perDir);
  const width = String(Math.max(0, dirs - 1)).length;
  for (let i = 0; i < count; i++) {
    const dir = dirs > 1 ? `d${String(Math.floor(i / perDir)).padStart(width, "0")}` : "";
    if (dir) directories.add(dir);
    const name = `f${String(i).padStart(String(count - 1).length, "0")}`;
    files.push({ name: dir ? `${dir}/${name}` : name, size });
  }
  return { files, directories: [...directories] };
};

const restoreSets = (): Record<"small" | "large" | "large-md5", DataSet> => {
  const small = filesIn(SMALL_COUNT, 200, SMALL_KIB * 1024);
  const large = filesIn(LARGE_COUNT, LARGE_COUNT, LARGE_MIB * MiB);
  const set = (
    container: string,
    f: ReturnType<typeof filesIn>,
    md5: boolean,
    describe: string,
  ): DataSet => ({
    container,
    ...f,
    bytes: f.files.reduce((s, x) => s + x.size, 0),
    md5,
    describe,
  });
  return {
    small: set(
      "bench-restore-small",
      small,
      false,
      `${int(SMALL_COUNT)} × ${SMALL_KIB} KiB in ${int(small.directories.length || 1)} dirs`,
    ),
    large: set("bench-restore-large", large, false, `${LARGE_COUNT} × ${LARGE_MIB} MiB`),
    "large-md5": set(
      "bench-restore-large-md5",
      large,
      true,
      `${LARGE_COUNT} × ${LARGE_MIB} MiB, Content-MD5`,
    ),
  };
};

/** The import --mode full cases: blobs with a Content-MD5 (hsmfleet checks every byte). */
const fullSets = (): Record<FullCase, DataSet> => {
  const small = filesIn(FULL_SMALL_COUNT, 200, FULL_SMALL_KIB * 1024);
  const large = filesIn(FULL_LARGE_COUNT, FULL_LARGE_COUNT, FULL_LARGE_MIB * MiB);
  const set = (container: string, f: ReturnType<typeof filesIn>, describe: string): DataSet => ({
    container,
    ...f,
    bytes: f.files.reduce((n, x) => n + x.size, 0),
    md5: true,
    describe,
  });
  return {
    "full-small": set(
      "bench-full-small",
      small,
      `${int(FULL_SMALL_COUNT)} × ${FULL_SMALL_KIB} KiB, MD5, ${int(small.directories.length || 1)} dirs`,
    ),
    "full-large": set(
      "bench-full-large",
      large,
      `${FULL_LARGE_COUNT} × ${FULL_LARGE_MIB} MiB, Content-MD5`,
    ),
  };
};

/** The import container: files of 1 KiB, 200 per directory, a hdi_isfolder stub per directory. */
const importBlobs = (): { blobs: SinkBlobSpec[]; files: number; directories: number } => {
  const { files, directories } = filesIn(IMPORT_COUNT, 200, 1024);
  const meta = { ...sampleMetadata() };
  const dirMeta = { ...meta, permissions: "0755", hdi_isfolder: "true" };
  return {
    blobs: [
      ...directories.map((name) => ({ name, size: 0, metadata: dirMeta })),
      ...files.map((f) => ({ ...f, metadata: meta })),
    ],
    files: files.length,
    directories: directories.length,
  };
};

/** Released stubs of `set` under `root` (made afresh): what an import --mode namespace leaves. */
const makeStubs = async (root: string, set: DataSet): Promise<number> => {
  const t0 = performance.now();
  await rm(root, { recursive: true, force: true });
  await mkdir(root, { recursive: true });
  for (const d of set.directories) await mkdir(join(root, d));
  const hsm = hsmAtAbsolutePaths(new HsmEmulation({ xattr: HSM_XATTR }));
  await forEachLimit(set.files, 64, async (f) => {
    const path = Buffer.from(join(root, f.name));
    await (await open(path, "wx", 0o644)).close();
    await hsm.importReleased(path, f.size, ARCHIVE_ID);
    await setXattr(path, ARCHIVE_XATTR, Buffer.from(`${set.container}/${f.name}`, "utf8"));
  });
  return seconds(t0);
};

/**
 * Releases the files of `set` under `root` again, as `lfs hsm_release` would: data dropped
 * (ftruncate to 0, then to the size: sparse), state 0xd released exists archived. The archive
 * location stays. Far cheaper than making the files again (file creation costs ~1 ms of kernel
 * time per file on this VM's ext4).
 */
const releaseStubs = async (root: string, set: DataSet): Promise<number> => {
  const t0 = performance.now();
  const hsm = hsmAtAbsolutePaths(new HsmEmulation({ xattr: HSM_XATTR }));
  const released = {
    compat: HSM_COMPAT,
    flags: RELEASED_STUB_FLAGS,
    archiveId: BigInt(ARCHIVE_ID),
    archiveVersion: 0n,
  };
  await forEachLimit(set.files, 64, async (f) => {
    const path = Buffer.from(join(root, f.name));
    const fh = await open(path, constants.O_WRONLY | constants.O_NOFOLLOW);
    try {
      await fh.truncate(0);
      await fh.truncate(f.size);
    } finally {
      await fh.close();
    }
    await hsm.setState(path, released);
  });
  return seconds(t0);
};

/** The case's stub tree: made the first time, released again every later time. */
const stubRoots = new Map<string, string>();
const prepareStubs = async (base: string, key: string, set: DataSet): Promise<string> => {
  const root = join(base, `stubs-${key}`);
  if (stubRoots.has(key)) await releaseStubs(root, set);
  else {
    const s = await makeStubs(root, set);
    log(`    made ${int(set.files.length)} released stubs in ${s.toFixed(1)} s`);
    stubRoots.set(key, root);
  }
  return root;
};

/** Every file restored: state 0x9 (exists archived), its size, and the sink's content. */
const verifyRestored = async (root: string, set: DataSet): Promise<void> => {
  const hsm = hsmAtAbsolutePaths(new HsmEmulation({ xattr: HSM_XATTR }));
  await forEachLimit(set.files, 16, async (f) => {
    const path = Buffer.from(join(root, f.name));
    const st = await hsm.state(path);
    if (st === undefined || (st.flags & HsmFlag.Released) !== 0 || (st.flags & 0x9) !== 0x9)
      throw new Error(`${f.name}: HSM state ${st?.flags ?? "none"} after the restore`);
    const fh = await open(path, "r");
    try {
      const h = createHash("md5");
      const expect = createHash("md5");
      const buf = Buffer.allocUnsafe(Math.min(f.size, 8 * MiB) || 1);
      let at = 0;
      for (;;) {
        const { bytesRead } = await fh.read(buf, 0, buf.length, at);
        if (bytesRead === 0) break;
        h.update(buf.subarray(0, bytesRead));
        expect.update(sinkContent(f.name, at, bytesRead));
        at += bytesRead;
      }
      if (at !== f.size) throw new Error(`${f.name}: ${at} bytes, expected ${f.size}`);
      if (!h.digest().equals(expect.digest()))
        throw new Error(`${f.name}: content differs from the blob`);
    } finally {
      await fh.close();
    }
  });
};

// ---------------------------------------------------------------------------------------------
// Worker processes

interface StandaloneWorker {
  child: ChildProcess;
  pid: number;
  stderr: LineTail;
}

const startWorker = async (
  natsUrl: string,
  storage: string,
  profDir: string | undefined,
): Promise<StandaloneWorker> => {
  const child = spawnTracked(
    process.execPath,
    [
      ...(profDir ? ["--cpu-prof", `--cpu-prof-dir=${profDir}`] : []),
      CLI_BIN,
      "--nats",
      natsUrl,
      "--storage",
      storage,
      "worker",
    ],
    { stdio: ["ignore", "ignore", "pipe"], env: { ...process.env, HSMFLEET_LOG_LEVEL: "warn" } },
  );
  const stderr = new LineTail(child.stderr);
  const ready = stderr.next((line) => line.includes('"msg":"worker started"'));
  const outcome = await Promise.race([
    ready.then(() => "ready" as const),
    closed(child).then(() => "exited" as const),
    sleep(30_000, undefined, { ref: false }).then(() => "timeout" as const),
  ]);
  if (outcome !== "ready" || child.pid === undefined) {
    await stopChild(child, 1000);
    throw new Error(`standalone worker did not start (${outcome}):\n${stderr.text()}`);
  }
  return { child, pid: child.pid, stderr };
};

const stopWorker = async (w: StandaloneWorker): Promise<void> => {
  const exit = await stopChild(w.child, 40_000);
  if (exit.code !== 0)
    log(`  worker ${w.pid} exited with ${exit.code ?? exit.signal}:\n${w.stderr.text()}`);
};

// ---------------------------------------------------------------------------------------------
// Runs

interface Run {
  /** files/s (small), MiB/s (large), blobs/s (import). */
  rate: number;
  filesPerSecond: number;
  mibPerSecond: number;
  seconds: number;
  /**
   * CPU seconds during the run: this process (coordinator, or raw client), workers, sink, nats;
   * and of those, kernel (system) time of this process and of the workers.
   */
  cpu: {
    self: number;
    workers: number;
    sink: number;
    nats: number;
    selfSystem: number;
    workersSystem: number;
  };
}

interface Ctx {
  nats: NatsServerFixture;
  nc: NatsConnection;
  sink: BlobSinkProcess;
  raw: RawBlobClient;
  workers: StandaloneWorker[];
  base: string;
}

/** System (kernel) CPU seconds of a live process, 0 when it is gone. */
const systemSeconds = (pid: number): number => {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    const stime = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[12]);
    return Number.isFinite(stime) ? stime / 100 : 0; // USER_HZ is 100 on Linux
  } catch {
    return 0;
  }
};

class Meter {
  readonly #self = process.cpuUsage();
  readonly #workers: number;
  readonly #workersSystem: number;
  readonly #sink: number;
  readonly #nats: number;
  constructor(private readonly ctx: Ctx) {
    this.#workers = this.#workerCpu();
    this.#workersSystem = this.#workerSystem();
    this.#sink = cpuSeconds(ctx.sink.pid) ?? 0;
    this.#nats = cpuSeconds(ctx.nats.pid) ?? 0;
  }
  #workerCpu(): number {
    return this.ctx.workers.reduce((s, w) => s + (cpuSeconds(w.pid) ?? 0), 0);
  }
  #workerSystem(): number {
    return this.ctx.workers.reduce((s, w) => s + systemSeconds(w.pid), 0);
  }
  read(): Run["cpu"] {
    const c = process.cpuUsage(this.#self);
    return {
      self: (c.user + c.system) / 1e6,
      selfSystem: c.system / 1e6,
      workersSystem: this.#workerSystem() - this.#workersSystem,
      workers: this.#workerCpu() - this.#workers,
      sink: (cpuSeconds(this.ctx.sink.pid) ?? 0) - this.#sink,
      nats: (cpuSeconds(this.ctx.nats.pid) ?? 0) - this.#nats,
    };
  }
}

const restoreRun = (set: DataSet, s: number, cpu: Run["cpu"], kind: "small" | "large"): Run => {
  const filesPerSecond = set.files.length / s;
  const mibPerSecond = set.bytes / MiB / s;
  return {
    rate: kind === "small" ? filesPerSecond : mibPerSecond,
    filesPerSecond,
    mibPerSecond,
    seconds: s,
    cpu,
  };
};

const kindOf = (c: string): "small" | "large" =>
  c === "large" || c === "large-md5" ? "large" : "small";

const runRawRestore = async (
  ctx: Ctx,
  name: RestoreCase,
  set: DataSet,
  into: "file" | "discard",
): Promise<Run> => {
  const root = into === "file" ? await prepareStubs(ctx.base, name, set) : "/nonexistent";
  const meter = new Meter(ctx);
  const t0 = performance.now();
  const bytes = await rawRestore(ctx.raw, {
    container: set.container,
    files: set.files.map((f) => ({ ...f, path: join(root, f.name) })),
    rangeSize: RANGE_SIZE,
    ...RAW_SHAPE,
    into,
  });
  const s = seconds(t0);
  const cpu = meter.read();
  if (bytes !== set.bytes) throw new Error(`raw client received ${bytes}, expected ${set.bytes}`);
  return restoreRun(set, s, cpu, kindOf(name));
};

const runHsmRestore = async (
  ctx: Ctx,
  name: string,
  set: DataSet,
  verify: boolean,
): Promise<Run & { summary: RestoreSummary }> => {
  const root = await prepareStubs(ctx.base, name, set);
  await ctx.sink.reset();
  const meter = new Meter(ctx);
  const summary = await runRestoreJob({ nc: ctx.nc, path: root, checkpointIntervalMs: 1000 });
  const cpu = meter.read();
  if (
    summary.state !== "succeeded" ||
    summary.errors !== 0 ||
    summary.filesRestored !== set.files.length ||
    summary.bytesRestored !== set.bytes
  )
    throw new Error(`the restore did not restore everything: ${JSON.stringify(summary)}`);
  if (verify) {
    const t0 = performance.now();
    await verifyRestored(root, set);
    log(
      `    verified ${int(set.files.length)} files (state, size, content) in ${seconds(t0).toFixed(1)} s`,
    );
  }
  return { ...restoreRun(set, summary.elapsedSeconds, cpu, kindOf(name)), summary };
};

const runHsmImport = async (
  ctx: Ctx,
  container: string,
  expect: { files: number; directories: number },
  run: number,
): Promise<Run & { summary: ImportSummary }> => {
  const target = join(ctx.base, `import-${ctx.workers.length}w-${run}`);
  await rm(target, { recursive: true, force: true });
  await mkdir(target, { recursive: true });
  const storage = parseStorageTarget(ctx.sink.connectionString);
  if (!storage) throw new Error("no storage target");
  const meter = new Meter(ctx);
  const summary = await runImportJob({
    nc: ctx.nc,
    target,
    container,
    storage,
    mode: "namespace",
    checkpointIntervalMs: 1000,
  });
  const cpu = meter.read();
  if (
    summary.state !== "succeeded" ||
    summary.totalErrors !== 0 ||
    summary.importedFiles !== expect.files ||
    summary.importedDirectories !== expect.directories
  )
    throw new Error(`the import did not import everything: ${JSON.stringify(summary)}`);
  // Spot check: a stub is released with its size.
  const probe = Buffer.from(join(target, filesIn(IMPORT_COUNT, 200, 1024).files[0]!.name));
  const st = await hsmAtAbsolutePaths(new HsmEmulation({ xattr: HSM_XATTR })).state(probe);
  if (st?.flags !== 0xd)
    throw new Error(`${probe.toString()}: state ${st?.flags ?? "none"}, expected 0xd`);
  await rm(target, { recursive: true, force: true });
  const blobsPerSecond = summary.totalBlobsWalked / summary.elapsedSeconds;
  return {
    rate: blobsPerSecond,
    filesPerSecond: summary.importedFiles / summary.elapsedSeconds,
    mibPerSecond: 0,
    seconds: summary.elapsedSeconds,
    cpu,
    summary,
  };
};

/** Receive buffer of one listing page (5,000 blobs with metadata are ~3 MiB). */
const LISTING_BUFFER = 16 * MiB;

/** The raw client lists every level of the import container (paged, with metadata). */
const runRawListing = async (ctx: Ctx, container: string, blobs: number): Promise<Run> => {
  const meter = new Meter(ctx);
  const t0 = performance.now();
  let seen = 0;
  const queue = [""];
  const lanes = WORKER_DEFAULTS.concurrency;
  let active = 0;
  await new Promise<void>((resolveAll, reject) => {
    const pump = (): void => {
      while (active < lanes && queue.length > 0) {
        const prefix = queue.shift()!;
        active++;
        void listAll(prefix)
          .then(() => {
            active--;
            if (active === 0 && queue.length === 0) resolveAll();
            else pump();
          })
          .catch(reject);
      }
    };
    const listAll = async (prefix: string): Promise<void> => {
      let marker = "";
      for (;;) {
        const query: Array<[string, string]> = [
          ["restype", "container"],
          ["comp", "list"],
          ["delimiter", "/"],
          ["include", "metadata"],
        ];
        if (prefix !== "") query.push(["prefix", prefix]);
        if (marker !== "") query.push(["marker", marker]);
        // send() keeps 64 KiB of a body; a page with metadata is larger: receive it whole.
        const buf = Buffer.allocUnsafe(LISTING_BUFFER);
        const r = await ctx.raw.sendInto("GET", container, query, {}, buf);
        if (r.status !== 200) throw new Error(`list ${prefix}: HTTP ${r.status}`);
        if (r.length > buf.length)
          throw new Error(`list ${prefix}: page larger than ${LISTING_BUFFER}`);
        const body = buf.toString("utf8", 0, r.length);
        seen += (body.match(/<Blob>/g) ?? []).length;
        for (const m of body.matchAll(/<BlobPrefix><Name>([^<]*)<\/Name>/g)) queue.push(m[1]!);
        marker = /<NextMarker>([^<]*)<\/NextMarker>/.exec(body)?.[1] ?? "";
        if (marker === "") return;
      }
    };
    pump();
  });
  const s = seconds(t0);
  if (seen !== blobs) throw new Error(`raw listing saw ${seen} blobs, expected ${blobs}`);
  return {
    rate: blobs / s,
    filesPerSecond: blobs / s,
    mibPerSecond: 0,
    seconds: s,
    cpu: meter.read(),
  };
};

// ---------------------------------------------------------------------------------------------
// import --mode full: one-shot CLI runs beside the peer (rclone) and the raw ceiling

/** Every file of `set` under `root`: its size and the sink's content (MD5 compared). */
const verifyContent = async (root: string, set: DataSet): Promise<void> => {
  await forEachLimit(set.files, 16, async (f) => {
    const fh = await open(join(root, f.name), "r");
    try {
      const h = createHash("md5");
      const buf = Buffer.allocUnsafe(Math.min(f.size, 8 * MiB) || 1);
      let at = 0;
      for (;;) {
        const { bytesRead } = await fh.read(buf, 0, buf.length, at);
        if (bytesRead === 0) break;
        h.update(buf.subarray(0, bytesRead));
        at += bytesRead;
      }
      if (at !== f.size) throw new Error(`${f.name}: ${at} bytes, expected ${f.size}`);
      const expect = createHash("md5");
      for (let o = 0; o < f.size; o += 8 * MiB)
        expect.update(sinkContent(f.name, o, Math.min(8 * MiB, f.size - o)));
      if (!h.digest().equals(expect.digest()))
        throw new Error(`${f.name}: content differs from the blob`);
    } finally {
      await fh.close();
    }
  });
};

/** Numbers the full-* runs' target directories. */
let fullRunSeq = 0;

const freshDir = async (dir: string): Promise<string> => {
  await rm(dir, { recursive: true, force: true });
  await mkdir(dir, { recursive: true });
  return dir;
};

const timedToRun = (set: DataSet, r: TimedRun, kind: "small" | "large", sink: number): Run => ({
  ...restoreRun(
    set,
    r.seconds,
    {
      self: r.cpuUser + r.cpuSystem,
      selfSystem: r.cpuSystem,
      workers: 0,
      workersSystem: 0,
      sink,
      nats: 0,
    },
    kind,
  ),
});

type FullSide = `hsmfleet-${FullNats}` | "rclone" | "raw" | "raw-socket";

/**
 * One run of `side` for an import --mode full of `set` into a fresh directory, timed as a user
 * sees it (the whole command, start to exit). hsmfleet: `hsmfleet import --mode full --backend
 * posix` (plain files, as rclone writes; MD5 of every file checked), with its embedded NATS
 * (the default) or `--nats` to the bench's running server; rclone: `rclone copy` tuned
 * (peer.ts); raw: the raw client's ranged GETs into new files at one worker's concurrency,
 * sizes known from the listing (no HEAD, as rclone), no checksum.
 */
const runFull = async (
  ctx: Ctx,
  peer: Peer | undefined,
  name: FullCase,
  set: DataSet,
  side: FullSide,
  verify: boolean,
): Promise<Run> => {
  const kind = name === "full-small" ? "small" : "large";
  // Each run writes into a new directory: small-file runs are moved aside, not deleted, until the
  // end of the bench (deleting thousands of files just before the next side creates as many makes
  // ext4 without a journal scan its recently deleted inodes on every create — up to 30 % of that
  // side's CPU, paid by whichever side runs next).
  const target = await freshDir(join(ctx.base, `full-${side}-${++fullRunSeq}`));
  const sink0 = cpuSeconds(ctx.sink.pid) ?? 0;
  const sinkCpu = (): number => (cpuSeconds(ctx.sink.pid) ?? 0) - sink0;
  let run: Run;
  if (side === "raw-socket") {
    const meter = new Meter({ ...ctx, workers: [] });
    const client = new SocketRangeClient(ctx.sink.blobEndpoint);
    const t0 = performance.now();
    let bytes: number;
    try {
      for (const d of set.directories) await mkdir(join(target, d), { recursive: true });
      bytes = await socketRestoreNew(client, {
        container: set.container,
        files: set.files.map((f) => ({ ...f, path: join(target, f.name) })),
        rangeSize: RANGE_SIZE,
        fileConcurrency: RAW_SHAPE.fileConcurrency,
        rangeConcurrency: RAW_SHAPE.rangeConcurrency,
      });
    } finally {
      client.close();
    }
    const s = seconds(t0);
    if (bytes !== set.bytes)
      throw new Error(`socket client received ${bytes}, expected ${set.bytes}`);
    run = restoreRun(set, s, meter.read(), kind);
  } else if (side === "raw") {
    const meter = new Meter({ ...ctx, workers: [] });
    const t0 = performance.now();
    for (const d of set.directories) await mkdir(join(target, d), { recursive: true });
    const bytes = await rawRestore(ctx.raw, {
      container: set.container,
      files: set.files.map((f) => ({ ...f, path: join(target, f.name) })),
      rangeSize: RANGE_SIZE,
      ...RAW_SHAPE,
      into: "new-file",
      knownSizes: true,
    });
    const s = seconds(t0);
    if (bytes !== set.bytes) throw new Error(`raw client received ${bytes}, expected ${set.bytes}`);
    run = restoreRun(set, s, meter.read(), kind);
  } else if (side === "rclone") {
    const r = await rcloneCopy(peer!, rcloneRemote(ctx.sink.blobEndpoint, set.container), target);
    run = timedToRun(set, r, kind, sinkCpu());
  } else {
    const r = await timedRun(
      [
        process.execPath,
        // HSMFLEET_BENCH_CPU_PROF profiles the one-shot CLI too (<dir>/cli-<side>/).
        ...(CPU_PROF_DIR
          ? ["--cpu-prof", `--cpu-prof-dir=${join(CPU_PROF_DIR, `cli-${side}`)}`]
          : []),
        CLI_BIN,
        "--state-dir",
        join(ctx.base, "cli-state"),
        ...(side !== "hsmfleet-embedded" ? ["--nats", ctx.nats.url] : []),
        "--storage",
        ctx.sink.connectionString,
        "import",
        "--mode",
        "full",
        "--backend",
        "posix",
        "--container",
        set.container,
        "--quiet",
        target,
      ],
      {
        ...process.env,
        HSMFLEET_LOG_LEVEL: "warn",
        ...(side === "hsmfleet-running-nodehttp" ? { HSMFLEET_DIRECT_GET_SOCKET: "0" } : {}),
        ...(side === "hsmfleet-running-md5" ? { HSMFLEET_RANGE_CRC64: "0" } : {}),
        ...(side === "hsmfleet-running-stepwise" ? { HSMFLEET_SMALL_FILE_JOB: "0" } : {}),
        ...(side === "hsmfleet-running-nostream" ? { HSMFLEET_STREAM_PIECE_BYTES: "0" } : {}),
      },
    );
    if (r.code !== 0)
      throw new Error(`hsmfleet import --mode full failed (${r.code}): ${r.stderrTail}`);
    run = timedToRun(set, r, kind, sinkCpu());
  }
  if (verify) {
    const t0 = performance.now();
    await verifyContent(target, set);
    log(
      `    ${side}: verified ${int(set.files.length)} files (size, content) in ${seconds(t0).toFixed(1)} s`,
    );
  }
  if (kind === "small") {
    await mkdir(join(ctx.base, "trash"), { recursive: true });
    await rename(target, join(ctx.base, "trash", basename(target)));
  } else await rm(target, { recursive: true, force: true });
  return run;
};

// ---------------------------------------------------------------------------------------------
// Results

interface Side {
  runs: Run[];
  best: number;
  median: number;
}

const side = (runs: Run[]): Side => ({
  runs,
  best: best(runs.map((r) => r.rate)),
  median: median(runs.map((r) => r.rate)),
});

interface CaseResult {
  name: CaseName;
  dataSet: string;
  unit: string;
  files: number;
  bytes: number;
  /** Raw ceiling, writing into files (all phases pooled). */
  raw?: Side;
  rawDiscard?: Side;
  /** Import only: the raw client listing every level; the bench making the stubs directly. */
  rawListing?: Side;
  directStubs?: Side;
  /** By worker count. */
  hsmfleet: Record<number, Side>;
  /** import --mode full: the one-shot CLI (by NATS: embedded, running) and the peer (rclone). */
  cli?: Partial<Record<FullNats, Side>>;
  peer?: Side;
  peerLabel?: string;
  /** full-*: the node:http raw client (the ceiling `raw` is the socket client there). */
  rawHttp?: Side;
}

const describeRun = (r: Run, unit: string): string =>
  `${int(r.rate)} ${unit} (${r.seconds.toFixed(2)} s; ${int(r.filesPerSecond)} files/s` +
  `${r.mibPerSecond > 0 ? `, ${int(r.mibPerSecond)} MiB/s` : ""}), CPU s: self ${r.cpu.self.toFixed(2)} (kernel ${r.cpu.selfSystem.toFixed(2)}), ` +
  `workers ${r.cpu.workers.toFixed(2)} (kernel ${r.cpu.workersSystem.toFixed(2)}), sink ${r.cpu.sink.toFixed(2)}, nats ${r.cpu.nats.toFixed(2)}`;

// ---------------------------------------------------------------------------------------------
// Main

const ownedDirs: string[] = [];

const onSignal = (signal: NodeJS.Signals): void => {
  process.stderr.write(`\n${signal}: stopping, removing ${ownedDirs.join(", ")} …\n`);
  for (const dir of ownedDirs) rmSync(dir, { recursive: true, force: true });
  process.exit(130); // the workers, the sink and nats-server are killed by their exit hooks
};

const main = async (): Promise<void> => {
  process.once("SIGINT", onSignal);
  process.once("SIGTERM", onSignal);
  process.once("SIGHUP", onSignal);
  let dir: TempDir | undefined;
  let nats: NatsServerFixture | undefined;
  let nc: NatsConnection | undefined;
  let sink: BlobSinkProcess | undefined;
  let raw: RawBlobClient | undefined;
  const workers: StandaloneWorker[] = [];
  try {
    requireBundle(CLI_BIN);
    let base: string;
    if (BENCH_DIR) {
      base = resolve(BENCH_DIR, `restore-bench-${process.pid}`);
      await mkdir(base, { recursive: true });
      ownedDirs.push(base);
    } else {
      dir = await tempDir("hsmfleet-restore-bench-");
      base = dir.path;
      ownedDirs.push(base);
    }
    if (CPU_PROF_DIR) await mkdir(CPU_PROF_DIR, { recursive: true });

    nats = await startNatsServer();
    nc = await connectBus({ servers: nats.url, reconnectForever: false });
    sink = await spawnBlobSink();
    log(
      `nats-server ${nats.url} (pid ${nats.pid}); blob sink ${sink.blobEndpoint} (pid ${sink.pid})`,
    );
    raw = new RawBlobClient({
      blobEndpoint: sink.blobEndpoint,
      accountName: SINK_ACCOUNT_NAME,
      accountKey: SINK_ACCOUNT_KEY,
    });

    const sets = restoreSets();
    // The warm-up restores the first 400 files of the small set (registered in any case).
    const warmSet: DataSet = {
      ...sets.small,
      files: sets.small.files.slice(0, 400),
      bytes: sets.small.files.slice(0, 400).reduce((n, f) => n + f.size, 0),
    };
    const restoreCases = CASES.filter((c): c is RestoreCase => isRestoreCase(c));
    for (const c of new Set<RestoreCase>(["small", ...restoreCases])) {
      const set = sets[c];
      const t0 = performance.now();
      const r = await sink.register({ container: set.container, blobs: set.files, md5: set.md5 });
      log(
        `registered ${c}: ${int(r.blobs)} blobs, ${int(r.bytes / MiB)} MiB (${seconds(t0).toFixed(1)} s)`,
      );
    }
    const fulls = fullSets();
    for (const c of CASES.filter(isFullCase)) {
      const set = fulls[c];
      const t0 = performance.now();
      const r = await sink.register({ container: set.container, blobs: set.files, md5: true });
      log(
        `registered ${c}: ${int(r.blobs)} blobs, ${int(r.bytes / MiB)} MiB, with MD5 (${seconds(t0).toFixed(1)} s)`,
      );
    }
    const importSet = CASES.includes("import") ? importBlobs() : undefined;
    const IMPORT_CONTAINER = "bench-import-ns";
    if (importSet) {
      const r = await sink.register({ container: IMPORT_CONTAINER, blobs: importSet.blobs });
      log(
        `registered import: ${int(r.blobs)} blobs (${int(importSet.files)} files, ${int(importSet.directories)} directory stubs)`,
      );
    }

    const results = new Map<CaseName, CaseResult>();
    for (const c of CASES) {
      const set = c === "import" ? undefined : isFullCase(c) ? fulls[c] : sets[c];
      results.set(c, {
        name: c,
        dataSet:
          set?.describe ??
          `${int(importSet!.blobs.length)} blobs (${int(importSet!.files)} files in ${int(importSet!.directories)} dirs)`,
        unit:
          c === "small" || c === "full-small" ? "files/s" : c === "import" ? "blobs/s" : "MiB/s",
        files: set?.files.length ?? importSet!.files,
        bytes: set?.bytes ?? 0,
        hsmfleet: {},
      });
    }
    const rawRuns = new Map<CaseName, Run[]>();
    const rawDiscardRuns = new Map<CaseName, Run[]>();
    const listingRuns: Run[] = [];
    const stubRuns: Run[] = [];
    const loadAtStart = loadavg()[0] ?? Number.NaN;

    // import --mode full: one-shot CLI runs (the command a user runs, with the one worker it
    // starts in its own process) beside rclone and the raw ceiling, alternating, same endpoint.
    const fullCases = CASES.filter(isFullCase);
    let peer: Peer | undefined;
    if (fullCases.length > 0) {
      const found = ensureRclone(log);
      if ("missing" in found) log(`peer column left out: ${found.missing}`);
      else {
        peer = found;
        log(`peer: ${peer.version} (${peer.path}), rclone copy ${rcloneFlags().join(" ")}`);
      }
    }
    for (const c of fullCases) {
      const set = fulls[c];
      const result = results.get(c)!;
      const ctx: Ctx = { nats, nc, sink, raw, workers: [], base };
      log(`import --mode full ${c}: ${set.describe} (uptime load ${loadavg()[0]?.toFixed(1)})`);
      const sides: FullSide[] = [
        ...FULL_NATS.map((n) => `hsmfleet-${n}` as FullSide),
        ...(peer ? (["rclone"] as const) : []),
        "raw",
        "raw-socket",
      ];
      const runs = new Map<FullSide, Run[]>();
      // One unmeasured run of the ceiling first: on a VM the first writes into memory the guest has
      // not touched lately cost far more (the host maps it in), and only whichever side ran first
      // paid it (hsmfleet's first large-file run: 3.0 s of system time against 0.9–1.2).
      await awaitFreedInodes(base, log);
      settleWrites();
      const warm = await runFull(ctx, peer, c, set, "raw-socket", false);
      log(`  warm-up raw-socket ${describeRun(warm, result.unit)} (not counted)`);
      for (let i = 0; i < RUNS; i++) {
        // Alternate the order so no side always runs first (page cache, load swings).
        const order = i % 2 === 0 ? sides : [...sides].reverse();
        for (const sd of order) {
          settleWrites(); // the run before must not make this one write back its pages
          const r = await runFull(ctx, peer, c, set, sd, i === 0 && !sd.startsWith("raw"));
          (runs.get(sd) ?? runs.set(sd, []).get(sd)!).push(r);
          log(`  run ${i + 1} ${pad(sd, 18)} ${describeRun(r, result.unit)}`);
        }
      }
      result.cli = {};
      for (const n of FULL_NATS) result.cli[n] = side(runs.get(`hsmfleet-${n}`)!);
      if (runs.has("rclone")) {
        result.peer = side(runs.get("rclone")!);
        result.peerLabel = `rclone copy ${rcloneFlags().join(" ")}`;
      }
      result.raw = side(runs.get("raw-socket")!);
      result.rawHttp = side(runs.get("raw")!);
    }

    // Standalone workers only for the cases that use them (not the one-shot full-* runs).
    const workerCounts = CASES.some((c) => !isFullCase(c)) ? WORKER_COUNTS : [];
    for (const count of workerCounts) {
      while (workers.length < count) {
        const profDir = CPU_PROF_DIR ? join(CPU_PROF_DIR, `workers-${count}`) : undefined;
        workers.push(await startWorker(nats.url, sink.connectionString, profDir));
      }
      const ctx: Ctx = { nats, nc, sink, raw, workers, base };
      log(
        `--- ${count} worker process${count > 1 ? "es" : ""} (pids ${workers.map((w) => w.pid).join(", ")})`,
      );
      // Warm-up (not measured): the workers load the Azure SDK and open connections.
      const w = await runHsmRestore(ctx, `warm-${count}`, warmSet, false);
      log(
        `  warm-up restore of ${int(warmSet.files.length)} small files: ${int(w.filesPerSecond)} files/s`,
      );
      for (const c of CASES) {
        if (isFullCase(c)) continue;
        const result = results.get(c)!;
        const hsmRuns: Run[] = [];
        if (c === "import") {
          log(`import --mode namespace: ${result.dataSet}`);
          if (count === WORKER_COUNTS[0]) {
            for (let i = 0; i < RUNS; i++) {
              const l = await runRawListing(ctx, IMPORT_CONTAINER, importSet!.blobs.length);
              listingRuns.push(l);
              log(`  run ${i + 1} raw listing: ${describeRun(l, result.unit)}`);
            }
            {
              const stubSet: DataSet = {
                container: IMPORT_CONTAINER,
                ...filesIn(IMPORT_COUNT, 200, 1024),
                bytes: 0,
                md5: false,
                describe: "",
              };
              const meter = new Meter(ctx);
              const s = await makeStubs(join(base, "direct-stubs"), stubSet);
              const cpu = meter.read();
              const n = importSet!.blobs.length;
              stubRuns.push({
                rate: n / s,
                filesPerSecond: n / s,
                mibPerSecond: 0,
                seconds: s,
                cpu,
              });
              log(`  direct stubs: ${int(n / s)} entries/s (${s.toFixed(2)} s)`);
              await rm(join(base, "direct-stubs"), { recursive: true, force: true });
            }
          }
          for (let i = 0; i < RUNS; i++) {
            const r = await runHsmImport(ctx, IMPORT_CONTAINER, importSet!, i + 1);
            hsmRuns.push(r);
            log(`  run ${i + 1} hsmfleet: ${describeRun(r, result.unit)}`);
          }
        } else {
          const set = sets[c];
          log(`restore ${c}: ${set.describe}`);
          for (let i = 0; i < RUNS; i++) {
            const order = i % 2 === 0 ? (["raw", "hsm"] as const) : (["hsm", "raw"] as const);
            for (const which of order) {
              if (which === "raw") {
                const r = await runRawRestore(ctx, c, set, "file");
                (rawRuns.get(c) ?? rawRuns.set(c, []).get(c)!).push(r);
                log(`  run ${i + 1} raw (into files): ${describeRun(r, result.unit)}`);
                if (count === WORKER_COUNTS[0]) {
                  const d = await runRawRestore(ctx, c, set, "discard");
                  (rawDiscardRuns.get(c) ?? rawDiscardRuns.set(c, []).get(c)!).push(d);
                  log(`  run ${i + 1} raw (discard):    ${describeRun(d, result.unit)}`);
                }
              } else {
                // The first run of each case and worker count is checked file by file.
                const r = await runHsmRestore(ctx, c, set, i === 0);
                hsmRuns.push(r);
                log(`  run ${i + 1} hsmfleet:         ${describeRun(r, result.unit)}`);
              }
            }
          }
        }
        result.hsmfleet[count] = side(hsmRuns);
      }
    }
    for (const w of workers.splice(0)) await stopWorker(w);
    const loadAtEnd = loadavg()[0] ?? Number.NaN;
    for (const [c, runs] of rawRuns) results.get(c)!.raw = side(runs);
    for (const [c, runs] of rawDiscardRuns) results.get(c)!.rawDiscard = side(runs);
    if (results.has("import")) {
      results.get("import")!.rawListing = side(listingRuns);
      results.get("import")!.directStubs = side(stubRuns);
    }

    // ------------------------------------------------------------------------------------------
    // Table
    const nCpus = availableParallelism();
    const all = [...results.values()];
    const lines = [
      "",
      `restore and import benchmark — standalone worker processes (transferConcurrency ${WORKER_DEFAULTS.transferConcurrency}, ` +
        `fileConcurrency ${WORKER_DEFAULTS.fileConcurrency}, blockConcurrency ${WORKER_DEFAULTS.blockConcurrency}, 8 MiB ranges), ` +
        `coordinator in this process, loopback blob sink, ${nCpus} CPUs, ${RUNS} runs each, load average ${loadAtStart.toFixed(1)} → ${loadAtEnd.toFixed(1)}`,
      `${pad("case", 11)}${pad("data set", 38)}${pad("configuration", 34)}${pad("best / median", 26)}${pad("files/s, MiB/s (median run)", 30)}${pad("CPU s (median)", 16)}${pad("to ceiling", 12)}to rclone (wall; CPU)`,
    ];
    const medianRun = (sd: Side): Run =>
      [...sd.runs].sort((a, b) => a.rate - b.rate)[(sd.runs.length - 1) >> 1]!;
    // What the client side cost: this process or the command, its workers, nats-server.
    const cpuTotal = (x: Run): number => x.cpu.self + x.cpu.workers + x.cpu.nats;
    const medianCpu = (sd: Side): number => median(sd.runs.map(cpuTotal));
    const row = (
      r: CaseResult,
      label: string,
      sd: Side,
      ceiling: Side | undefined,
      peerSide?: Side,
    ): string => {
      const m = medianRun(sd);
      const extra =
        r.name === "import"
          ? `${int(m.filesPerSecond)} files/s`
          : `${int(m.filesPerSecond)} files/s, ${int(m.mibPerSecond)} MiB/s`;
      return (
        `${pad(r.name, 11)}${pad(r.dataSet, 38)}${pad(label, 34)}` +
        `${pad(`${int(sd.best)} / ${int(sd.median)} ${r.unit}`, 26)}${pad(extra, 30)}` +
        `${pad(medianCpu(sd).toFixed(2), 16)}` +
        `${pad(ceiling ? (sd.median / ceiling.median).toFixed(2) : "—", 12)}` +
        (peerSide
          ? `${(sd.median / peerSide.median).toFixed(2)}; ${(medianCpu(peerSide) / medianCpu(sd)).toFixed(2)}`
          : "—")
      );
    };
    for (const r of all) {
      if (r.cli) {
        if (r.peer) lines.push(row(r, "rclone copy (peer)", r.peer, r.raw, r.peer));
        for (const [n, sd] of Object.entries(r.cli))
          lines.push(row(r, `hsmfleet CLI, ${n} NATS`, sd, r.raw, r.peer));
        if (r.rawHttp) lines.push(row(r, "raw node:http, new files", r.rawHttp, r.raw, r.peer));
        if (r.raw) lines.push(row(r, "raw sockets, new files (ceiling)", r.raw, undefined, r.peer));
        continue;
      }
      if (r.raw) lines.push(row(r, "raw HTTP into files (ceiling)", r.raw, undefined));
      if (r.rawDiscard) lines.push(row(r, "raw HTTP, discard", r.rawDiscard, r.raw));
      if (r.rawListing) lines.push(row(r, "raw HTTP listing only", r.rawListing, undefined));
      if (r.directStubs)
        lines.push(row(r, "stubs made directly (fs only)", r.directStubs, undefined));
      for (const [n, sd] of Object.entries(r.hsmfleet))
        lines.push(row(r, `hsmfleet, ${n} worker process${n === "1" ? "" : "es"}`, sd, r.raw));
    }
    lines.push(
      "",
      `anchors: AMLFS auto-import ~${int(ANCHORS.amlfsAutoImportBlobsPerSecond)} blobs/s; AMLFS documented batch restore ${ANCHORS.amlfsBatchRestoreFilesPerSecond} files/s`,
      "median CPU seconds per run: self (coordinator or raw client) / workers / sink / nats-server:",
    );
    const cpuOf = (sd: Side): string => {
      const m = (k: keyof Run["cpu"]) => median(sd.runs.map((x) => x.cpu[k])).toFixed(2);
      return `${m("self")} (kernel ${m("selfSystem")}) / ${m("workers")} (kernel ${m("workersSystem")}) / ${m("sink")} / ${m("nats")}`;
    };
    for (const r of all) {
      const parts: string[] = [];
      if (r.raw) parts.push(`raw ${cpuOf(r.raw)}`);
      for (const [n, sd] of Object.entries(r.hsmfleet)) parts.push(`${n}w ${cpuOf(sd)}`);
      lines.push(`  ${pad(r.name, 10)}${parts.join("  |  ")}`);
    }
    lines.push(
      "hsmfleet rates use the job's own clock (restore: walk + restore; import: walk and stub creation).",
      "full-*: import --mode full --backend posix as ONE-SHOT CLI runs (start to exit, wall clock; CPU s = the command and its children: the CLI, its worker, an embedded nats-server), " +
        "beside `rclone copy` (account SAS URL, same sink, same run; rclone skips the MD5 of files it fetches with several streams, hsmfleet checks every file's MD5) " +
        "and two raw clients (ranged GETs written at offsets into new files, no checksum): node:http, and the ceiling, plain keep-alive sockets whose reads land in the range buffer (raw-socket.ts). to rclone = hsmfleet rate / rclone rate (wall); rclone CPU s / hsmfleet CPU s.",
      "ratio = median hsmfleet / median raw ceiling (raw at one worker's concurrency, writing into the same stub files).",
    );
    if (Math.max(loadAtStart, loadAtEnd) > nCpus)
      lines.push(
        `warning: load average above the CPU count (${nCpus}): other processes competed for the CPUs; numbers are noisy`,
      );
    process.stdout.write(`${lines.join("\n")}\n`);

    let profiles: Record<string, unknown> | undefined;
    if (CPU_PROF_DIR) {
      profiles = {};
      for (const count of WORKER_COUNTS) {
        const d = join(CPU_PROF_DIR, `workers-${count}`);
        if (!existsSync(d)) continue;
        for (const f of readdirSync(d).filter((x) => x.endsWith(".cpuprofile"))) {
          const p = summarizeProfile(
            JSON.parse(await readFile(join(d, f), "utf8")) as Profiler.Profile,
          );
          profiles[join(d, f)] = p;
          log(`CPU profile ${join(d, f)} (${p.totalMs.toFixed(0)} ms):`);
          for (const c of p.categories)
            log(`  ${(c.share * 100).toFixed(1).padStart(5)}%  ${c.name}`);
          for (const l of p.top.slice(0, 15))
            log(`  ${(l.share * 100).toFixed(1).padStart(5)}%  ${l.name}  ${l.where}`);
        }
      }
    }

    await mkdir(join(REPO_ROOT, "bench", "results"), { recursive: true });
    await writeFile(
      RESULTS_FILE,
      `${JSON.stringify(
        {
          benchmark: "restore",
          date: new Date().toISOString(),
          node: process.version,
          cpus: nCpus,
          cpuModel: cpus()[0]?.model ?? "unknown",
          runsPerSide: RUNS,
          loadAverage: { start: loadAtStart, end: loadAtEnd },
          worker: WORKER_DEFAULTS,
          rawShape: { rangeSize: RANGE_SIZE, ...RAW_SHAPE },
          anchors: ANCHORS,
          cases: all,
          ...(profiles ? { profiles } : {}),
        },
        null,
        2,
      )}\n`,
    );
    log(`results written to ${RESULTS_FILE}`);
  } finally {
    for (const w of workers) await stopWorker(w).catch(() => undefined);
    raw?.close();
    await nc?.close().catch(() => undefined);
    await sink?.stop().catch(() => undefined);
    await nats?.stop().catch(() => undefined);
    // The bench's trees (stubs, import targets) go to the bench trash (retireTree): deleted at
    // once, their inodes would make the next bench's creates scan on a journal-less ext4.
    for (const d of ownedDirs) await retireTree(d);
    if (dir) await dir.cleanup();
  }
};

try {
  await main();
} catch (err) {
  process.stderr.write(
    `restore benchmark failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`,
  );
  process.exitCode = 1;
}
