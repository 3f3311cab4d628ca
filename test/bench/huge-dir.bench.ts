/**
 * Huge-directory benchmark (issue 22): one directory of N real entries on tmpfs (/dev/shm), made
 * here and removed after, exported by one worker process into the null target (the walk, the
 * transfer batches and the results are real; no storage request), at 200,000 and 2,000,000
 * entries by default. Prints the worker's and the coordinator's peak RSS at each size: flat means
 * the walk of one directory holds a bounded number of entries. (The compare against an existing
 * listing holds one window of `listingWindowEntries` blobs; export-huge-dir.test.ts checks that
 * bound with the counter the worker exposes.)
 *
 * Environment: HSMFLEET_HUGE_SIZES (default "200000,2000000"), HSMFLEET_HUGE_DIR (default
 * /dev/shm). Writes bench/results/huge-dir.json.
 */
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { startNatsServer } from "@hsmfleet/testkit";
import { spawnBlobSink } from "./blob-sink.js";
import { LineTail, ProcSampler, closed, int, mib, spawnTracked, stopChild } from "./proc.js";

const REPO_ROOT = fileURLToPath(new URL("../../../", import.meta.url));
const PEER = fileURLToPath(new URL("./control-plane-peer.js", import.meta.url));
const SIZES = (process.env["HSMFLEET_HUGE_SIZES"] || "200000,2000000").split(",").map(Number);
const BASE = process.env["HSMFLEET_HUGE_DIR"] || "/dev/shm";

const log = (line: string): void => void process.stderr.write(`${line}\n`);

interface HugeRun {
  entries: number;
  createSeconds: number;
  exportSeconds: number;
  entriesPerSecond: number;
  workerPeakRssBytes: number;
  coordinatorPeakRssBytes: number;
}

const runSize = async (entries: number): Promise<HugeRun> => {
  const root = await mkdtemp(join(BASE, "hsmfleet-huge-"));
  const nats = await startNatsServer();
  const sink = await spawnBlobSink();
  try {
    const dir = join(root, "huge");
    await mkdir(dir);
    const t0 = performance.now();
    for (let i = 0; i < entries; i += 1000) {
      const writes: Array<Promise<void>> = [];
      for (let k = i; k < Math.min(entries, i + 1000); k++)
        writes.push(writeFile(join(dir, `file-${k}`), ""));
      await Promise.all(writes);
    }
    const createSeconds = (performance.now() - t0) / 1000;
    const env = {
      ...process.env,
      HSMFLEET_LOG_LEVEL: "warn",
      CP_NATS: nats.url,
      CP_STORAGE: sink.connectionString,
      CP_TREE: "posix",
      CP_ROOT: root,
      CP_BATCH_ENTRIES: "1000",
    };
    const worker = spawnTracked(process.execPath, [PEER, "worker"], {
      stdio: ["ignore", "pipe", "pipe"],
      env,
    });
    const wout = new LineTail(worker.stdout);
    const werr = new LineTail(worker.stderr);
    await Promise.race([
      wout.next((l) => l === "ready"),
      closed(worker).then(() => {
        throw new Error(`worker exited:\n${werr.text()}`);
      }),
    ]);
    const wSampler = new ProcSampler(worker.pid!, 100);
    const t1 = performance.now();
    const coordinator = spawnTracked(process.execPath, [PEER, "coordinator"], {
      stdio: ["ignore", "pipe", "pipe"],
      env,
    });
    const cSampler = new ProcSampler(coordinator.pid!, 100);
    const cout = new LineTail(coordinator.stdout);
    const cerr = new LineTail(coordinator.stderr);
    const exit = await closed(coordinator);
    const exportSeconds = (performance.now() - t1) / 1000;
    const c = cSampler.stop();
    const w = wSampler.stop();
    await stopChild(worker, 15_000);
    const summary = JSON.parse(cout.lines.find((l) => l.startsWith("{")) ?? "{}") as {
      state?: string;
      filesExported?: number;
    };
    if (exit.code !== 0 || summary.state !== "succeeded" || summary.filesExported !== entries)
      throw new Error(`export of ${entries} entries: ${JSON.stringify(summary)}\n${cerr.text()}`);
    return {
      entries,
      createSeconds,
      exportSeconds,
      entriesPerSecond: entries / exportSeconds,
      workerPeakRssBytes: w.peakRssBytes,
      coordinatorPeakRssBytes: c.peakRssBytes,
    };
  } finally {
    await sink.stop();
    await nats.stop();
    await rm(root, { recursive: true, force: true });
  }
};

const runs: HugeRun[] = [];
for (const n of SIZES) {
  log(`- one directory of ${int(n)} entries on ${BASE} …`);
  const r = await runSize(n);
  log(
    `  made in ${r.createSeconds.toFixed(0)} s; exported in ${r.exportSeconds.toFixed(1)} s (${int(r.entriesPerSecond)}/s); worker peak RSS ${mib(r.workerPeakRssBytes)}, coordinator ${mib(r.coordinatorPeakRssBytes)}`,
  );
  runs.push(r);
}
process.stdout.write(
  [
    "| entries in one directory | export s | entries/s | worker peak RSS | coordinator peak RSS |",
    "| ---: | ---: | ---: | ---: | ---: |",
    ...runs.map(
      (r) =>
        `| ${int(r.entries)} | ${r.exportSeconds.toFixed(1)} | ${int(r.entriesPerSecond)} | ${mib(r.workerPeakRssBytes)} | ${mib(r.coordinatorPeakRssBytes)} |`,
    ),
  ].join("\n") + "\n",
);
await mkdir(join(REPO_ROOT, "bench", "results"), { recursive: true });
await writeFile(
  join(REPO_ROOT, "bench", "results", "huge-dir.json"),
  `${JSON.stringify({ runs }, null, 2)}\n`,
);
