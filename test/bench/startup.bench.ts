/**
 * `npm run bench:startup`: the FIXED COST of a command — what a user waits for before and after
 * any data moves, which dominates small jobs and incremental runs (issue 17). Timed as a user runs
 * it (the whole command, start to exit; CPU seconds of it and its children), medians of N, the
 * sides alternating in one run:
 *   hsmfleet --help                      process start and the CLI's module graph
 *   hsmfleet export, running NATS        `--nats` to the bench's nats-server: an export of an
 *                                        empty tree to the loopback blob sink (job record, walk,
 *                                        summary, job logs written to the container)
 *   hsmfleet export, embedded            the same with the default embedded nats-server (started
 *                                        and stopped by the command)
 *   export, running NATS, modules        the running-NATS export with HSMFLEET_BUNDLE=0: the
 *                                        compiled ES modules instead of the bundle (the "before")
 *   rclone copy (peer)                   `rclone copy` of the same empty tree to the sink
 *   re-export 4 large, unchanged         `hsmfleet export` (running NATS) of a tree of 4 large
 *                                        files exported before, nothing changed since
 *   rclone re-copy 4 large (peer)        `rclone copy` of the same files, copied before
 *   node -e 0                            the floor: a bare Node process
 * Aims (issue 17): export of an empty tree ≤ 0.5 s with a running server, ≤ 1.0 s embedded; the
 * nothing-changed re-export ≤ 1.5 × rclone's time.
 *
 * The hsmfleet sides run with HSMFLEET_STARTUP_TRACE=1 (see @hsmfleet/telemetry startup-trace.ts):
 * each prints where its time went, and the bench prints the medians per phase, wall and CPU.
 *
 * Environment:
 *   HSMFLEET_BENCH_RUNS         runs per side (default 5)
 *   HSMFLEET_BENCH_STARTUP_LARGE  files × MiB of the re-export tree (default 4x512; sparse files,
 *                               the sink keeps no data)
 */
import { mkdir, open, writeFile } from "node:fs/promises";
import { loadavg } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { startNatsServer, tempDir } from "@hsmfleet/testkit";
import type { NatsServerFixture, TempDir } from "@hsmfleet/testkit";
import { spawnBlobSink } from "./blob-sink.js";
import type { BlobSinkProcess } from "./blob-sink.js";
import { ensureRclone, rcloneCopy, rcloneRemote, timedRun } from "./peer.js";
import type { TimedRun } from "./peer.js";
import { median, requireBundle } from "./proc.js";
import { STARTUP_TRACE_PREFIX } from "@hsmfleet/telemetry";

const CLI_BIN = fileURLToPath(
  new URL("../../bin/hsmfleet.js", import.meta.resolve("@hsmfleet/cli")),
);
const REPO_ROOT = fileURLToPath(new URL("../../../", import.meta.url));
const RESULTS_FILE = join(REPO_ROOT, "bench", "results", "startup.json");
const RUNS = (() => {
  const n = Number(process.env["HSMFLEET_BENCH_RUNS"] || 5);
  if (!Number.isInteger(n) || n < 1) throw new Error("HSMFLEET_BENCH_RUNS: an integer ≥ 1");
  return n;
})();
const LARGE = (() => {
  const m = /^(\d+)x(\d+)$/.exec(process.env["HSMFLEET_BENCH_STARTUP_LARGE"] || "4x512");
  if (!m) throw new Error("HSMFLEET_BENCH_STARTUP_LARGE: FILESxMIB, e.g. 4x512");
  return { files: Number(m[1]), mib: Number(m[2]) };
})();
const AIMS: Record<string, number> = { "export, running NATS": 0.5, "export, embedded NATS": 1.0 };
/** Sides judged against a peer: aim ≤ ratio × the peer's median wall time. */
const PEER_AIMS: Record<string, { peer: string; ratio: number }> = {
  "re-export 4 large, unchanged": { peer: "rclone re-copy 4 large (peer)", ratio: 1.5 },
};
const TRACED = { ...process.env, HSMFLEET_STARTUP_TRACE: "1" };

/**
 * Phases of the startup trace, each from the previous boundary that the run has to this one
 * (a phase a command skips, e.g. nats-started with --nats, folds into the next).
 */
const PHASES: ReadonlyArray<{ label: string; until: readonly string[] }> = [
  { label: "node start", until: ["launcher"] },
  { label: "load CLI (bundle / modules)", until: ["loaded"] },
  { label: "parse, options", until: ["action"] },
  { label: "embedded nats-server start", until: ["nats-started"] },
  { label: "connect, workers", until: ["runtime"] },
  { label: "job: topology", until: ["job-topology"] },
  { label: "job: containers", until: ["job-containers"] },
  { label: "job: record, claim, publish", until: ["job-published"] },
  { label: "job: walk to last result", until: ["job-finished"] },
  { label: "job: summary, logs", until: ["job-done"] },
  { label: "close (workers, NATS, server)", until: ["closed"] },
  { label: "to exit", until: ["exit"] },
];

type Trace = Record<string, [number, number]>;

const traceOf = (stderr: string): Trace | undefined => {
  const line = stderr.split("\n").find((l) => l.startsWith(STARTUP_TRACE_PREFIX));
  return line ? (JSON.parse(line.slice(STARTUP_TRACE_PREFIX.length)) as Trace) : undefined;
};

/** One run's phases as [wall ms, CPU ms]; the process teardown after the exit mark as well. */
const phasesOf = (trace: Trace, totalSeconds: number): Map<string, [number, number]> => {
  const out = new Map<string, [number, number]>();
  let prev: [number, number] = [0, 0];
  for (const p of PHASES) {
    const at = p.until.map((k) => trace[k]).find((v) => v !== undefined);
    if (at === undefined) continue;
    out.set(p.label, [at[0] - prev[0], at[1] - prev[1]]);
    prev = at;
  }
  out.set("process teardown (after exit)", [totalSeconds * 1000 - prev[0], Number.NaN]);
  return out;
};

/** A sparse file of `bytes` (export reads zeros; the sink keeps only sizes and checksums). */
const sparseFile = async (path: string, bytes: number): Promise<void> => {
  const fh = await open(path, "w");
  try {
    await fh.truncate(bytes);
  } finally {
    await fh.close();
  }
};

const log = (line: string): void => void process.stderr.write(`${line}\n`);

const main = async (): Promise<void> => {
  let dir: TempDir | undefined;
  let nats: NatsServerFixture | undefined;
  let sink: BlobSinkProcess | undefined;
  try {
    requireBundle(CLI_BIN);
    dir = await tempDir("hsmfleet-startup-bench-");
    nats = await startNatsServer();
    sink = await spawnBlobSink();
    await sink.register({ container: "startup", blobs: [] });
    const tree = join(dir.path, "empty-tree");
    await mkdir(tree);
    const large = join(dir.path, "large-tree");
    await mkdir(large);
    for (let i = 0; i < LARGE.files; i++)
      await sparseFile(join(large, `large-${i}.bin`), LARGE.mib * 1024 * 1024);
    await sink.register({ container: "startup-large", blobs: [] });
    await sink.register({ container: "startup-large-rclone", blobs: [] });
    const peer = ensureRclone(log);
    const cli = (
      extra: string[],
      stateDir: string,
      source = tree,
      container = "startup",
    ): string[] => [
      process.execPath,
      CLI_BIN,
      "--state-dir",
      join(dir!.path, stateDir),
      ...extra,
      "--storage",
      sink!.connectionString,
      "export",
      "--container",
      container,
      "--quiet",
      source,
    ];
    const sides: Array<{ label: string; run: () => Promise<TimedRun> }> = [
      { label: "node -e 0 (floor)", run: () => timedRun([process.execPath, "-e", "0"]) },
      { label: "hsmfleet --help", run: () => timedRun([process.execPath, CLI_BIN, "--help"]) },
      {
        label: "export, running NATS",
        run: () => timedRun(cli(["--nats", nats!.url], "state-running"), TRACED),
      },
      { label: "export, embedded NATS", run: () => timedRun(cli([], "state-embedded"), TRACED) },
      {
        label: "export, running NATS, modules",
        run: () =>
          timedRun(cli(["--nats", nats!.url], "state-running"), {
            ...TRACED,
            HSMFLEET_BUNDLE: "0",
          }),
      },
      {
        label: "re-export 4 large, unchanged",
        run: () =>
          timedRun(cli(["--nats", nats!.url], "state-running", large, "startup-large"), TRACED),
      },
      ...("missing" in peer
        ? []
        : [
            {
              label: "rclone copy (peer)",
              run: () => rcloneCopy(peer, tree, rcloneRemote(sink!.blobEndpoint, "startup")),
            },
            {
              label: "rclone re-copy 4 large (peer)",
              run: () =>
                rcloneCopy(peer, large, rcloneRemote(sink!.blobEndpoint, "startup-large-rclone")),
            },
          ]),
    ];
    if ("missing" in peer) log(`peer left out: ${peer.missing}`);
    const load0 = loadavg()[0] ?? Number.NaN;
    // One unmeasured run of each (page cache, the embedded server's store made, the bundle's
    // code cache written, the large files copied once so that every measured run finds them).
    for (const s of sides) {
      const r = await s.run();
      if (r.code !== 0) throw new Error(`${s.label} failed (${r.code}): ${r.stderrTail}`);
    }
    const runs = new Map<string, TimedRun[]>(sides.map((s) => [s.label, []]));
    for (let i = 0; i < RUNS; i++) {
      const order = i % 2 === 0 ? sides : [...sides].reverse();
      for (const s of order) {
        const r = await s.run();
        if (r.code !== 0) throw new Error(`${s.label} failed (${r.code}): ${r.stderrTail}`);
        runs.get(s.label)!.push(r);
      }
    }
    const load1 = loadavg()[0] ?? Number.NaN;
    const medianWall = (label: string): number =>
      median((runs.get(label) ?? []).map((r) => r.seconds));
    const rows = sides.map((s) => {
      const rs = runs.get(s.label)!;
      const peerAim = PEER_AIMS[s.label];
      const traces = rs.flatMap((r) => {
        const trace = traceOf(r.stderrTail);
        return trace ? [phasesOf(trace, r.seconds)] : [];
      });
      const phases =
        traces.length === 0
          ? undefined
          : [...traces[0]!.keys()].map((phase) => ({
              phase,
              wallMs: median(traces.map((t) => t.get(phase)?.[0] ?? 0)),
              cpuMs: median(traces.map((t) => t.get(phase)?.[1] ?? 0)),
            }));
      return {
        label: s.label,
        wallSeconds: median(rs.map((r) => r.seconds)),
        cpuSeconds: median(rs.map((r) => r.cpuUser + r.cpuSystem)),
        runs: rs.map((r) => r.seconds),
        aimSeconds:
          AIMS[s.label] ??
          (peerAim && runs.has(peerAim.peer)
            ? peerAim.ratio * medianWall(peerAim.peer)
            : undefined),
        phases,
      };
    });
    const pad = (s: string, n: number): string => s.padEnd(n);
    const lines = [
      "",
      `fixed cost of a command (export of an empty tree / a nothing-changed re-export of ${LARGE.files} × ${LARGE.mib} MiB, loopback blob sink), medians of ${RUNS}, load average ${load0.toFixed(1)} → ${load1.toFixed(1)}`,
      `${pad("command", 34)}${pad("wall s (median)", 18)}${pad("CPU s (median)", 18)}aim`,
      ...rows.map(
        (r) =>
          `${pad(r.label, 34)}${pad(r.wallSeconds.toFixed(2), 18)}${pad(r.cpuSeconds.toFixed(2), 18)}` +
          (r.aimSeconds !== undefined
            ? `≤ ${r.aimSeconds.toFixed(2)} s${r.wallSeconds <= r.aimSeconds ? " (met)" : " (not met)"}`
            : "—"),
      ),
      "",
      "where the time goes (medians per phase, ms: wall / CPU of the command's own process)",
      ...rows.flatMap((r) =>
        r.phases === undefined
          ? []
          : [
              `  ${r.label}`,
              ...r.phases.map(
                (p) =>
                  `    ${pad(p.phase, 34)}${p.wallMs.toFixed(0).padStart(6)} /${(Number.isNaN(p.cpuMs) ? "—" : p.cpuMs.toFixed(0)).padStart(5)}`,
              ),
            ],
      ),
    ];
    process.stdout.write(`${lines.join("\n")}\n`);
    await mkdir(join(REPO_ROOT, "bench", "results"), { recursive: true });
    await writeFile(
      RESULTS_FILE,
      `${JSON.stringify({ date: new Date().toISOString(), runs: RUNS, loadAverage: [load0, load1], rows }, null, 2)}\n`,
    );
    log(`results written to ${RESULTS_FILE}`);
  } finally {
    await sink?.stop();
    await nats?.stop();
    await dir?.cleanup();
  }
};

await main();
