/**
 * A/B of the one-shot `hsmfleet import --mode full` (and rclone beside it) with the loopback blob
 * sink and a running nats-server kept up between runs, so configurations of the CLI (V8 flags,
 * environment variables) can be compared in alternating pairs on the same data.
 *
 * HSMFLEET_AB_SIDES: JSON array of { "name", "node"?: string[] (Node/V8 flags), "env"?: {...},
 *   "prefix"?: string[] (a command the CLI runs under, e.g. `perf stat -e minor-faults -o F --append`) };
 *   a side named "rclone" runs `rclone copy` instead. Default: the CLI as it is, and rclone.
 * HSMFLEET_AB_ROUNDS (default 4): rounds; every round runs each side once, the order reversed on
 *   odd rounds. Each CLI side runs once first, unmeasured, to write its own code cache.
 * HSMFLEET_BENCH_FULL_SMALL (default 10000x4): files × KiB (4x524288: four files of 512 MiB).
 * HSMFLEET_AB_ARGS: JSON array of the command's arguments after `--nats URL --storage SINK`, in
 *   place of `import --mode full ...` ("{target}" is the run's new directory), e.g. a scan:
 *   '["scan","/tmp/tree-200k","--json","--quiet"]'.
 *
 * The V8 code cache of the bundle does not name the flags it was made under, and V8 rejects a cache
 * made under other flags (then the launcher writes a new one). Each side keeps its own copy of the
 * cache here (swapped in before its runs), so no measured run compiles the bundle afresh; a run
 * whose cache was rewritten anyway is marked `cache-rewritten`.
 *
 * Run under the bench lock: `flock /tmp/bench.lock node test/dist/bench/cli-ab.bench.js`.
 */
import "./threadpool.js";
import { copyFileSync, mkdirSync, readFileSync, readdirSync, rmSync, statSync } from "node:fs";
import { mkdir, rename, rm } from "node:fs/promises";
import { loadavg, tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { startNatsServer } from "@hsmfleet/testkit";
import { spawnBlobSink } from "./blob-sink.js";
import { ensureRclone, rcloneCopy, rcloneRemote, timedRun } from "./peer.js";
import type { TimedRun } from "./peer.js";
import {
  awaitFreedInodes,
  cpuSeconds,
  median,
  requireBundle,
  retireTree,
  settleWrites,
} from "./proc.js";

interface AbSide {
  name: string;
  node?: string[];
  env?: Record<string, string>;
  /** Keep the command's stdout and count V8's optimizing compiles in it (run with --trace-opt). */
  traceOpt?: boolean;
  /**
   * A command the CLI runs under, e.g. `["perf", "stat", "-e", "minor-faults", "-o",
   * "/tmp/faults.txt", "--append"]` (its own cost is measured with it).
   */
  prefix?: string[];
}

/** TurboFan compiles in --trace-opt output: how many, and their summed time (ms). */
const optimizedIn = (text: string): { compiles: number; ms: number } => {
  let compiles = 0;
  let ms = 0;
  for (const m of text.matchAll(
    /\[completed (?:compiling|optimizing) [^\n]*?took ([\d.]+), ([\d.]+), ([\d.]+) ms\]/g,
  )) {
    compiles++;
    ms += Number(m[1]) + Number(m[2]) + Number(m[3]);
  }
  return { compiles, ms };
};

const CLI_BIN = fileURLToPath(
  new URL("../../bin/hsmfleet.js", import.meta.resolve("@hsmfleet/cli")),
);
const CACHE_DIR = join(dirname(CLI_BIN), "..", "dist", "v8-cache");
const SIDES: AbSide[] = JSON.parse(
  process.env["HSMFLEET_AB_SIDES"] ?? '[{"name":"default"},{"name":"rclone"}]',
) as AbSide[];
const ROUNDS = Number(process.env["HSMFLEET_AB_ROUNDS"] ?? 4);
const [COUNT, KIB] = (process.env["HSMFLEET_BENCH_FULL_SMALL"] ?? "10000x4")
  .split("x")
  .map(Number) as [number, number];
const CONTAINER = process.env["HSMFLEET_AB_CONTAINER"] ?? "ab-full-small";
const ARGS: string[] = JSON.parse(
  process.env["HSMFLEET_AB_ARGS"] ??
    JSON.stringify([
      "import",
      "--mode",
      "full",
      "--backend",
      "posix",
      "--container",
      CONTAINER,
      "--quiet",
      "{target}",
    ]),
) as string[];

const log = (line: string): void => void process.stdout.write(`${line}\n`);

const files = (): Array<{ name: string; size: number }> => {
  const perDir = 200;
  const dirs = Math.ceil(COUNT / perDir);
  const width = String(Math.max(0, dirs - 1)).length;
  const out: Array<{ name: string; size: number }> = [];
  for (let i = 0; i < COUNT; i++) {
    const dir = dirs > 1 ? `d${String(Math.floor(i / perDir)).padStart(width, "0")}` : "";
    const name = `f${String(i).padStart(String(COUNT - 1).length, "0")}`;
    out.push({ name: dir ? `${dir}/${name}` : name, size: KIB * 1024 });
  }
  return out;
};

/** The import caches in the launcher's folder: name -> mtime. */
const importCaches = (): Map<string, number> => {
  const m = new Map<string, number>();
  try {
    for (const f of readdirSync(CACHE_DIR))
      if (f.startsWith("import-") && f.endsWith(".bin"))
        m.set(f, statSync(join(CACHE_DIR, f)).mtimeMs);
  } catch {
    // No cache folder yet.
  }
  return m;
};

const main = async (): Promise<void> => {
  requireBundle(CLI_BIN);
  const base = join(process.env["HSMFLEET_BENCH_DIR"] ?? tmpdir(), `cli-ab-${process.pid}`);
  const saved = join(base, "caches");
  mkdirSync(saved, { recursive: true });
  const nats = await startNatsServer();
  const sink = await spawnBlobSink();
  const peer = SIDES.some((s) => s.name === "rclone") ? ensureRclone(log) : undefined;
  if (peer !== undefined && "missing" in peer) throw new Error(peer.missing);
  try {
    await sink.register({ container: CONTAINER, blobs: files(), md5: true });
    let seq = 0;
    const runSide = async (side: AbSide): Promise<TimedRun & { sink: number; note: string }> => {
      const target = join(base, `t${++seq}-${side.name}`);
      await mkdir(target, { recursive: true });
      const sink0 = cpuSeconds(sink.pid) ?? 0;
      let r: TimedRun;
      let note = "";
      if (side.name === "rclone") {
        r = await rcloneCopy(peer!, rcloneRemote(sink.blobEndpoint, CONTAINER), target);
      } else {
        // This side's own code cache in place, the others' out of the way.
        const mine = join(saved, side.name);
        for (const f of importCaches().keys()) rmSync(join(CACHE_DIR, f));
        mkdirSync(CACHE_DIR, { recursive: true });
        try {
          for (const f of readdirSync(mine)) copyFileSync(join(mine, f), join(CACHE_DIR, f));
        } catch {
          note = "first";
        }
        const before = importCaches();
        const out = join(base, `t${seq}-${side.name}.out`);
        r = await timedRun(
          [
            ...(side.traceOpt === true ? ["bash", "-c", `exec "$@" > ${out}`, "traced"] : []),
            ...(side.prefix ?? []),
            process.execPath,
            ...(side.traceOpt === true ? ["--trace-opt"] : []),
            ...(side.node ?? []),
            CLI_BIN,
            "--state-dir",
            join(base, "cli-state"),
            "--nats",
            nats.url,
            "--storage",
            sink.connectionString,
            ...ARGS.map((a) => (a === "{target}" ? target : a)),
          ],
          { ...process.env, HSMFLEET_LOG_LEVEL: "warn", ...(side.env ?? {}) },
        );
        if (r.code !== 0) throw new Error(`${side.name} failed (${r.code}): ${r.stderrTail}`);
        if (side.traceOpt === true) {
          const o = optimizedIn(readFileSync(out, "utf8"));
          note += ` turbofan ${o.compiles} compiles, ${o.ms.toFixed(0)} ms`;
        }
        const after = importCaches();
        if (note === "" && [...after].some(([f, t]) => before.get(f) !== t))
          note = "cache-rewritten";
        rmSync(mine, { recursive: true, force: true });
        mkdirSync(mine, { recursive: true });
        for (const f of after.keys()) copyFileSync(join(CACHE_DIR, f), join(mine, f));
      }
      const sinkCpu = (cpuSeconds(sink.pid) ?? 0) - sink0;
      // Moved aside, not deleted: deletes make ext4 scan recently deleted inodes on later creates
      // (large files are deleted: few inodes).
      if (KIB * 1024 >= 64 * 1024 * 1024) await rm(target, { recursive: true, force: true });
      else {
        await mkdir(join(base, "trash"), { recursive: true });
        await rename(target, join(base, "trash", `t${seq}`));
      }
      return { ...r, sink: sinkCpu, note };
    };
    await awaitFreedInodes(base, log);
    for (const s of SIDES) if (s.name !== "rclone") await runSide(s);
    const rows = new Map<string, Array<{ wall: number; cpu: number; sys: number }>>();
    for (let round = 0; round < ROUNDS; round++) {
      const order = round % 2 === 0 ? SIDES : [...SIDES].reverse();
      for (const s of order) {
        settleWrites(); // the run before must not make this one write back its pages
        const r = await runSide(s);
        const cpu = r.cpuUser + r.cpuSystem;
        log(
          `round ${round + 1} ${s.name.padEnd(24)} ${(COUNT / r.seconds).toFixed(0).padStart(6)} files/s  wall ${r.seconds.toFixed(2)}  cpu ${cpu.toFixed(2)} (user ${r.cpuUser.toFixed(2)}, sys ${r.cpuSystem.toFixed(2)})  sink ${r.sink.toFixed(2)}  load ${loadavg()[0]!.toFixed(1)} ${r.note}`,
        );
        const list = rows.get(s.name) ?? [];
        list.push({ wall: r.seconds, cpu, sys: r.cpuSystem });
        rows.set(s.name, list);
      }
    }
    log("medians:");
    for (const [name, list] of rows) {
      const wall = median(list.map((x) => x.wall));
      log(
        `  ${name.padEnd(24)} ${(COUNT / wall).toFixed(0).padStart(6)} files/s  wall ${wall.toFixed(2)}  cpu ${median(list.map((x) => x.cpu)).toFixed(2)}  sys ${median(list.map((x) => x.sys)).toFixed(2)}`,
      );
    }
  } finally {
    await sink.stop().catch(() => undefined);
    await nats.stop().catch(() => undefined);
    if (process.env["HSMFLEET_AB_KEEP"] !== "1") await retireTree(base);
  }
};

await main();
