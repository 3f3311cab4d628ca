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
 *   rclone copy (peer)                   `rclone copy` of the same empty tree to the sink
 *   node -e 0                            the floor: a bare Node process
 * Aims (issue 17): export of an empty tree ≤ 0.5 s with a running server, ≤ 1.0 s embedded.
 *
 * Environment:
 *   HSMFLEET_BENCH_RUNS   runs per side (default 5)
 */
import { mkdir, writeFile } from "node:fs/promises";
import { loadavg } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { startNatsServer, tempDir } from "@hsmfleet/testkit";
import type { NatsServerFixture, TempDir } from "@hsmfleet/testkit";
import { spawnBlobSink } from "./blob-sink.js";
import type { BlobSinkProcess } from "./blob-sink.js";
import { ensureRclone, rcloneCopy, rcloneRemote, timedRun } from "./peer.js";
import type { TimedRun } from "./peer.js";
import { median } from "./proc.js";

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
const AIMS: Record<string, number> = { "export, running NATS": 0.5, "export, embedded NATS": 1.0 };

const log = (line: string): void => void process.stderr.write(`${line}\n`);

const main = async (): Promise<void> => {
  let dir: TempDir | undefined;
  let nats: NatsServerFixture | undefined;
  let sink: BlobSinkProcess | undefined;
  try {
    dir = await tempDir("hsmfleet-startup-bench-");
    nats = await startNatsServer();
    sink = await spawnBlobSink();
    await sink.register({ container: "startup", blobs: [] });
    const tree = join(dir.path, "empty-tree");
    await mkdir(tree);
    const peer = ensureRclone(log);
    const cli = (extra: string[], stateDir: string): string[] => [
      process.execPath,
      CLI_BIN,
      "--state-dir",
      join(dir!.path, stateDir),
      ...extra,
      "--storage",
      sink!.connectionString,
      "export",
      "--container",
      "startup",
      "--quiet",
      tree,
    ];
    const sides: Array<{ label: string; run: () => Promise<TimedRun> }> = [
      { label: "node -e 0 (floor)", run: () => timedRun([process.execPath, "-e", "0"]) },
      { label: "hsmfleet --help", run: () => timedRun([process.execPath, CLI_BIN, "--help"]) },
      {
        label: "export, running NATS",
        run: () => timedRun(cli(["--nats", nats!.url], "state-running")),
      },
      { label: "export, embedded NATS", run: () => timedRun(cli([], "state-embedded")) },
      ...("missing" in peer
        ? []
        : [
            {
              label: "rclone copy (peer)",
              run: () => rcloneCopy(peer, tree, rcloneRemote(sink!.blobEndpoint, "startup")),
            },
          ]),
    ];
    if ("missing" in peer) log(`peer left out: ${peer.missing}`);
    const load0 = loadavg()[0] ?? Number.NaN;
    // One unmeasured run of each (page cache, the embedded server's store made).
    for (const s of sides) await s.run();
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
    const rows = sides.map((s) => {
      const rs = runs.get(s.label)!;
      return {
        label: s.label,
        wallSeconds: median(rs.map((r) => r.seconds)),
        cpuSeconds: median(rs.map((r) => r.cpuUser + r.cpuSystem)),
        runs: rs.map((r) => r.seconds),
        aimSeconds: AIMS[s.label],
      };
    });
    const pad = (s: string, n: number): string => s.padEnd(n);
    const lines = [
      "",
      `fixed cost of a command (export of an empty tree to the loopback blob sink), medians of ${RUNS}, load average ${load0.toFixed(1)} → ${load1.toFixed(1)}`,
      `${pad("command", 28)}${pad("wall s (median)", 18)}${pad("CPU s (median)", 18)}aim`,
      ...rows.map(
        (r) =>
          `${pad(r.label, 28)}${pad(r.wallSeconds.toFixed(2), 18)}${pad(r.cpuSeconds.toFixed(2), 18)}` +
          (r.aimSeconds !== undefined
            ? `≤ ${r.aimSeconds.toFixed(1)} s${r.wallSeconds <= r.aimSeconds ? " (met)" : " (not met)"}`
            : "—"),
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
