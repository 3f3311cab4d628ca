/**
 * Fleet churn benchmark (`npm run bench:fleet-churn`, issue 22): worker processes join and leave
 * during one export job of a synthetic tree into the null target — a scale set scaling out from
 * HSMFLEET_CHURN_MIN to 16 and HSMFLEET_CHURN_MAX processes, then in again, the leavers alternately
 * stopped (SIGTERM: they finish what they hold) and killed (SIGKILL: what they held comes back after
 * the ack wait). Each file "takes" CP_FILE_MS (a stand-in for its transfer), so a worker has a
 * bounded rate and the job's rate can follow the worker count.
 *
 * It checks and prints: the job's exact counts (files, directory stubs, no error); redeliveries —
 * results the job's RESULTS stream holds from a delivery attempt > 1 (JetStream's num_delivered, as
 * the worker saw it), and the workers' own "item delivered again" log lines — against the bound:
 * the items held by killed workers (walk + transfer slots each: a worker prefetches nothing); and
 * the job's files/s in each phase beside the number of live workers.
 *
 * Environment: HSMFLEET_CHURN_FILES (default 1,000,000), HSMFLEET_CHURN_MIN (4), HSMFLEET_CHURN_MAX
 * (64), HSMFLEET_CHURN_STEPS (see SCHEDULE), CP_FILE_MS (5). Writes bench/results/fleet-churn.json.
 */
import { mkdtemp, mkdir, rm, writeFile } from "node:fs/promises";
import { loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { setTimeout as sleep } from "node:timers/promises";
import { connectBus, jetstream } from "@hsmfleet/bus";
import { decodeItemResult, RESULTS_STREAM, subjects } from "@hsmfleet/protocol";
import { spawnBlobSink } from "./blob-sink.js";
import { BusSampler, envInt, peerEnv, peerReady, startNats, startPeer } from "./cp-fixture.js";
import type { Peer } from "./cp-fixture.js";
import { closed, int, stopChild } from "./proc.js";

const REPO_ROOT = fileURLToPath(new URL("../../../", import.meta.url));
const RESULTS_FILE = join(REPO_ROOT, "bench", "results", "fleet-churn.json");

const FILES = envInt("HSMFLEET_CHURN_FILES", 1_000_000);
const MIN = envInt("HSMFLEET_CHURN_MIN", 4);
const MAX = envInt("HSMFLEET_CHURN_MAX", 64);
const FILE_MS = envInt("CP_FILE_MS", 5);
const WALK = 2;
const TRANSFER = 2;
/** What one worker holds at most: every item it can run at once (it prefetches nothing). */
const HELD_PER_WORKER = WALK + TRANSFER;
const TREE = { files: FILES, filesPerDirectory: 500, fanOut: 8, maxFileSize: 65_536 };
const JOB_TIMEOUT_MS = 30 * 60_000;

/**
 * The fleet's size from each fraction of the job's files done on; HSMFLEET_CHURN_STEPS overrides
 * the steps after the first as "fraction:workers,…" (e.g. "0.03:64,0.7:16,0.9:4").
 */
const SCHEDULE: Array<[number, number]> = [
  [0, MIN],
  ...(process.env["HSMFLEET_CHURN_STEPS"]
    ? process.env["HSMFLEET_CHURN_STEPS"].split(",").map((step): [number, number] => {
        const [f, w] = step.split(":").map(Number);
        if (!(f! >= 0 && f! < 1) || !Number.isSafeInteger(w) || w! < 1)
          throw new Error(`HSMFLEET_CHURN_STEPS: "${step}" is not fraction:workers`);
        return [f!, w!];
      })
    : ([
        [0.03, Math.min(16, MAX)],
        [0.1, MAX],
        [0.7, Math.min(16, MAX)],
        [0.9, MIN],
      ] as Array<[number, number]>)),
];

const log = (line: string): void => void process.stderr.write(`${line}\n`);

interface Phase {
  workers: number;
  fromSeconds: number;
  toSeconds: number;
  files: number;
  filesPerSecond: number;
}

/** Counts the job's results by delivery attempt (the worker reports msg.info.deliveryCount). */
const redeliveredResults = async (
  urls: string[],
  jobId: string,
): Promise<{ results: number; redelivered: number }> => {
  const nc = await connectBus({ servers: urls, name: "churn-results" });
  try {
    const js = jetstream(nc);
    const consumer = await js.consumers.get(RESULTS_STREAM, {
      filter_subjects: subjects.itemResult(jobId), // a string: servers before 2.10 too
    });
    let results = 0;
    let redelivered = 0;
    for (;;) {
      const batch = await consumer.fetch({ max_messages: 1000, expires: 2000 });
      let got = 0;
      for await (const m of batch) {
        got++;
        const r = decodeItemResult(m.data);
        results++;
        if (r.attempt > 1) redelivered++;
      }
      if (got === 0) break;
    }
    return { results, redelivered };
  } finally {
    await nc.close();
  }
};

const main = async (): Promise<void> => {
  log(
    `fleet churn: ${int(FILES)} synthetic files, ${FILE_MS} ms a file; workers ${SCHEDULE.map(([f, w]) => `${w} from ${f * 100} %`).join(", ")}`,
  );
  const fixture = await startNats(false);
  const sink = await spawnBlobSink();
  const root = await mkdtemp(join(tmpdir(), "hsmfleet-churn-root-"));
  const jobId = `churn-${Date.now().toString(36)}`;
  const env = peerEnv({
    urls: fixture.urls,
    storage: sink.connectionString,
    replicas: 1,
    root,
    tree: TREE,
    batch: 200,
    extra: {
      CP_JOB_ID: jobId,
      CP_WALK_CONCURRENCY: String(WALK),
      CP_TRANSFER_CONCURRENCY: String(TRANSFER),
      CP_FILE_CONCURRENCY: "2",
      CP_FILE_MS: String(FILE_MS),
    },
  });
  const peers: Peer[] = [];
  const alive = (): Peer[] =>
    peers.filter(
      (p) => p.child.exitCode === null && p.child.signalCode === null && !leaving.has(p),
    );
  const leaving = new Set<Peer>();
  const stops: Array<Promise<unknown>> = [];
  let killed = 0;
  let stopped = 0;
  let badStops = 0;
  const timeline: Array<{ atSeconds: number; workers: number }> = [];
  let sampler: BusSampler | undefined;
  const t0 = performance.now();
  const now = (): number => (performance.now() - t0) / 1000;
  const resize = async (want: number): Promise<void> => {
    const live = alive();
    if (want > live.length) {
      // Joiners start in groups of 8, a group once the last one pulls (a scale set adds VMs over
      // time; 48 node processes starting at once on 2 CPUs time out connecting).
      for (let i = live.length; i < want; i += 8) {
        const group: Peer[] = [];
        for (let k = i; k < Math.min(want, i + 8); k++)
          group.push(startPeer("worker", env, [], 2000));
        peers.push(...group);
        await Promise.all(group.map((p) => peerReady(p, closed(p.child))));
      }
    } else {
      // Leavers: the oldest first, alternately killed and stopped.
      for (const p of live.slice(0, live.length - want)) {
        leaving.add(p);
        if ((killed + stopped) % 2 === 0) {
          p.child.kill("SIGKILL");
          killed++;
        } else {
          p.child.kill("SIGTERM");
          stopped++;
          stops.push(
            closed(p.child).then((e) => {
              if (e.code !== 0) badStops++;
            }),
          );
        }
      }
    }
    timeline.push({ atSeconds: now(), workers: want });
    log(`  ${now().toFixed(1)} s: ${want} workers (${int(sampler?.filesDone ?? 0)} files done)`);
  };
  try {
    await resize(MIN);
    sampler = await BusSampler.start(fixture.urls, jobId, 500);
    const coordinator = startPeer("coordinator", env);
    const exit = closed(coordinator.child);
    let done = false;
    let jobEnd = 0;
    void exit.finally(() => {
      done = true;
      jobEnd = now();
    });
    const deadline = Date.now() + JOB_TIMEOUT_MS;
    for (const [fraction, workers] of SCHEDULE.slice(1)) {
      while (!done && sampler.filesDone < fraction * FILES && Date.now() < deadline)
        await sleep(200);
      if (done) break;
      if (workers !== timeline.at(-1)?.workers) await resize(workers);
    }
    const timer = setTimeout(() => coordinator.child.kill("SIGKILL"), deadline - Date.now());
    const e = await exit;
    clearTimeout(timer);
    if (e.code !== 0)
      throw new Error(`coordinator exited ${e.code ?? e.signal}:\n${coordinator.stderr.text()}`);
    const summary = JSON.parse(coordinator.stdout.lines.find((l) => l.startsWith("{")) ?? "{}") as {
      state?: string;
      filesExported?: number;
      directoriesExported?: number;
      errors?: number;
      elapsedSeconds?: number;
    };
    const wantDirs = Math.ceil(FILES / TREE.filesPerDirectory) - 1;
    const exact =
      summary.state === "succeeded" &&
      summary.filesExported === FILES &&
      summary.directoriesExported === wantDirs &&
      summary.errors === 0;
    await Promise.all(stops);
    await Promise.all(alive().map((p) => stopChild(p.child, 15_000)));
    const progress = sampler.progress;
    await sampler.stop();
    sampler = undefined;

    // Files/s per phase, from the job's checkpoints (the sampler's clock started ~with t0).
    const samplerOffset = timeline[0]?.atSeconds ?? 0;
    const at = (s: number): number => {
      let files = 0;
      for (const p of progress) if (p.atMs / 1000 + samplerOffset <= s) files = p.files;
      return files;
    };
    // Steps taken after the job ended (a scale-out still starting processes) are no phase.
    const steps = timeline.filter((step, i) => i === 0 || step.atSeconds < jobEnd);
    const phases: Phase[] = steps.map((step, i) => {
      const to = Math.min(steps[i + 1]?.atSeconds ?? jobEnd, jobEnd);
      const files = (i + 1 < steps.length ? at(to) : FILES) - at(step.atSeconds);
      return {
        workers: step.workers,
        fromSeconds: step.atSeconds,
        toSeconds: to,
        files,
        filesPerSecond: files / Math.max(0.001, to - step.atSeconds),
      };
    });
    const logged = peers
      .flatMap((p) => p.stderr.lines)
      .filter((l) => l.includes("item delivered again")).length;
    const { results, redelivered } = await redeliveredResults(fixture.urls, jobId);
    const bound = killed * HELD_PER_WORKER;
    const report = {
      files: FILES,
      fileMs: FILE_MS,
      workersStarted: peers.length,
      stopped,
      killed,
      stoppedNonZero: badStops,
      exact,
      summary,
      results,
      redeliveredResults: redelivered,
      redeliveriesLogged: logged,
      redeliveryBound: bound,
      phases,
      loadAverage: loadavg()[0] ?? 0,
    };
    await mkdir(join(REPO_ROOT, "bench", "results"), { recursive: true });
    await writeFile(RESULTS_FILE, `${JSON.stringify(report, null, 2)}\n`);
    process.stdout.write(
      [
        `| phase | workers | seconds | files | files/s |`,
        `| --- | ---: | --- | ---: | ---: |`,
        ...phases.map(
          (p, i) =>
            `| ${i + 1} | ${p.workers} | ${p.fromSeconds.toFixed(0)}–${p.toSeconds.toFixed(0)} | ${int(p.files)} | ${int(p.filesPerSecond)} |`,
        ),
        "",
        `${peers.length} worker processes started, ${stopped} stopped (SIGTERM; ${badStops} exited non-zero), ${killed} killed (SIGKILL)`,
        `job: ${summary.state}, ${int(summary.filesExported ?? 0)} of ${int(FILES)} files, ${int(summary.directoriesExported ?? 0)} of ${int(wantDirs)} directories, ${summary.errors} errors, ${summary.elapsedSeconds?.toFixed(1)} s — ${exact ? "exact" : "WRONG"}`,
        `redeliveries: ${redelivered} of ${int(results)} results came from a delivery attempt > 1; ${logged} "item delivered again" lines; bound: ${bound} (${killed} killed × ${HELD_PER_WORKER} items held) — ${redelivered <= bound && logged <= bound ? "within" : "OVER"}`,
        `load average ${(loadavg()[0] ?? 0).toFixed(1)}`,
        "",
      ].join("\n"),
    );
    if (!exact) throw new Error(`wrong job outcome: ${JSON.stringify(summary)}`);
    if (redelivered > bound || logged > bound)
      throw new Error(`redeliveries over the bound: ${redelivered} / ${logged} > ${bound}`);
  } finally {
    await sampler?.stop();
    await Promise.all(peers.map((p) => stopChild(p.child, 15_000)));
    await sink.stop();
    await fixture.stop();
    await rm(root, { recursive: true, force: true });
  }
};

await main();
