/**
 * A 3-node JetStream cluster on loopback with R3 streams and KV: the node the coordinator is
 * connected to is killed (SIGKILL) during an export; the job completes; a new job (verify) started
 * with the node still down works; the node is restarted, rejoins, and a verify passes again.
 *
 * Every stage has its own deadline, well inside the test's timeout: a stage that overruns fails
 * with a dump of every node's JetStream state (streams, consumers, pending and ack-pending counts,
 * from the monitoring endpoint) and the warnings the workers and the coordinator logged, so a hang
 * names where it stands.
 */
import { join } from "node:path";
import { Writable } from "node:stream";
import test from "ava";
import type { ExecutionContext } from "ava";
import { jetstreamManager } from "@nats-io/jetstream";
import { parseStorageTarget } from "@hsmfleet/blob";
import { connectBus, ensureTopology, jetStreamRetryCount } from "@hsmfleet/bus";
import type { NatsConnection, TopologyOptions } from "@hsmfleet/bus";
import { runExportJob, runVerifyJob } from "@hsmfleet/coordinator";
import { RESULTS_STREAM, WORK_STREAM } from "@hsmfleet/protocol";
import { createLogger } from "@hsmfleet/telemetry";
import { generateTree, startNatsCluster, tempDir } from "@hsmfleet/testkit";
import type { NatsClusterFixture } from "@hsmfleet/testkit";
import { Worker } from "@hsmfleet/worker";
import { consumersLedBy, dumpCluster } from "./jetstream-dump.js";
import { startStorage, waitFor } from "./helpers.js";

const R3: TopologyOptions = { replicas: 3, ackWaitMs: 2000, maxDeliver: 20, update: true };

/**
 * A stage fails when it has made no progress (files exported or compared) for STALL_MS — a hang
 * — or has run for STAGE_MS in all. A passing stage takes 1–20 s; on a 2-CPU machine at a load
 * of 40 (other tests, busy loops) an export took 155 s, with pauses of up to 20 s between files.
 */
const STALL_MS = 120_000;
const STAGE_MS = 360_000;

/** Warnings and errors of the workers and the coordinator, kept for a failure's dump. */
const captureLogs = () => {
  const lines: string[] = [];
  const destination = new Writable({
    write(chunk: Buffer, _encoding, done) {
      for (const line of chunk.toString("utf8").split("\n")) if (line) lines.push(line);
      if (lines.length > 5000) lines.splice(0, lines.length - 5000);
      done();
    },
  });
  return {
    lines,
    logger: (role: string) => createLogger({ role, level: "warn", destination }),
  };
};

/** Log lines counted by role and message (the first error text of each kind kept). */
const summarizeLogs = (lines: string[]): string => {
  const kinds = new Map<string, number>();
  for (const line of lines) {
    let key = line;
    try {
      const o = JSON.parse(line) as { role?: string; msg?: string; err?: unknown };
      const err =
        typeof o.err === "string" ? o.err : (o.err as { message?: string } | undefined)?.message;
      key = `${o.role ?? "?"}: ${o.msg ?? ""}${err ? ` (${err})` : ""}`;
    } catch {
      // not JSON: counted as is
    }
    kinds.set(key, (kinds.get(key) ?? 0) + 1);
  }
  return [...kinds].map(([k, n]) => `${n} × ${k}`).join("\n");
};

/**
 * Runs one stage; `run` reports progress (a count that grows). A stage that stalls or overruns
 * fails with the cluster's state and the recent warnings.
 */
const stage = async <T>(
  t: ExecutionContext,
  what: string,
  cluster: NatsClusterFixture,
  logs: string[],
  run: (progress: (count: number) => void) => Promise<T>,
): Promise<T> => {
  const started = Date.now();
  let count = 0;
  let lastProgress = Date.now();
  const progress = (n: number) => {
    if (n > count) [count, lastProgress] = [n, Date.now()];
  };
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setInterval(() => {
      const stalled = Date.now() - lastProgress > STALL_MS;
      if (!stalled && Date.now() - started < STAGE_MS) return;
      clearInterval(timer);
      const why = stalled
        ? `made no progress for ${STALL_MS / 1000} s (stuck at ${count})`
        : `did not finish in ${STAGE_MS / 1000} s (at ${count})`;
      void (async () => {
        const dump = await dumpCluster(cluster.nodes);
        reject(
          new Error(
            `${what} ${why}\n--- JetStream state per node ---\n${dump}\n` +
              `--- last warnings (workers, coordinator) ---\n${logs.slice(-60).join("\n")}`,
          ),
        );
      })();
    }, 1000);
  });
  try {
    return await Promise.race([run(progress), deadline]);
  } finally {
    clearInterval(timer);
    t.log(`${what}: ${((Date.now() - started) / 1000).toFixed(1)} s`);
  }
};

test("3-node JetStream cluster (R3 streams and KV): the coordinator's node killed mid-export; the job completes, verify passes with the node down and after it rejoins", async (t) => {
  // Setup (up to 150 s seen at a load of 40) and four stages, each bounded by STAGE_MS, though a
  // passing run takes about a minute.
  t.timeout(4 * STAGE_MS + 300_000);
  const testStarted = Date.now();
  const since = () => `+${((Date.now() - testStarted) / 1000).toFixed(1)} s`;
  const dir = await tempDir();
  t.teardown(() => dir.cleanup());
  const root = join(dir.path, "tree");
  const manifest = await generateTree(root, {
    depth: 2,
    fanout: 4,
    filesPerDir: 15,
    symlinksPerDir: 1,
    sizes: [100, 20_000, 120_000],
  });
  const azurite = await startStorage(t);
  const storage = parseStorageTarget(azurite.connectionString)!;
  const cluster = await startNatsCluster({ size: 3, monitoring: true });
  t.teardown(() => cluster.stop());
  const logs = captureLogs();
  t.teardown(() => {
    if (logs.lines.length > 0) t.log(`warnings logged:\n${summarizeLogs(logs.lines)}`);
  });

  const connect = () => connectBus({ servers: cluster.urls, reconnectForever: true });
  const nc = await connect();
  t.teardown(() => nc.close());
  // JetStream answers once the nodes have elected a meta leader.
  await waitFor(
    "the cluster's JetStream",
    async () => {
      try {
        await ensureTopology(nc, R3);
        return true;
      } catch {
        return false;
      }
    },
    60_000,
  );
  const jsm = await jetstreamManager(nc);
  for (const stream of [WORK_STREAM, RESULTS_STREAM, "KV_hsmfleet-jobs"]) {
    t.is((await jsm.streams.info(stream)).config.num_replicas, 3, `${stream} is R3`);
  }

  const conns: NatsConnection[] = [];
  for (let i = 0; i < 2; i++) {
    const wnc = await connect();
    conns.push(wnc);
    const worker = await Worker.create({
      nc: wnc,
      storage,
      workerId: `cluster-worker-${i}`,
      shutdownGraceMs: 2000,
      topology: R3,
      logger: logs.logger(`worker-${i}`),
    });
    const running = worker.run();
    t.teardown(async () => {
      await worker.shutdown();
      await running.catch(() => undefined);
      await wnc.close();
    });
  }

  // The hardest node to lose: the coordinator's own. It reconnects elsewhere, and its results
  // consumer (an R1 ordered consumer) may have been placed on that node too.
  const serverOf = (c: NatsConnection) => c.info?.server_name ?? "?";
  const port = nc.getServer().split(":").pop() ?? "";
  const victim = cluster.nodes.find((n) => n.url.endsWith(`:${port}`));
  if (victim === undefined)
    throw new Error(`the coordinator's server ${nc.getServer()} is no node`);
  t.log(
    `${since()} coordinator on ${serverOf(nc)}, workers on ${conns.map(serverOf).join(", ")}; ` +
      `the victim is ${victim.url}`,
  );
  let killed = "";
  let lastLog = 0;
  const summary = await stage(t, "export", cluster, logs.lines, (progress) =>
    runExportJob({
      nc,
      root,
      container: "clustered",
      storage,
      batchMaxEntries: 10,
      topology: R3,
      logger: logs.logger("coordinator"),
      onProgress: (p) => {
        progress(p.filesDone);
        if (Date.now() - lastLog >= 5000) {
          lastLog = Date.now();
          t.log(
            `${since()} export: ${p.filesDone} of ${p.filesFound} files found, ${p.errors} errors`,
          );
        }
        if (killed === "" && p.filesDone >= 30) {
          killed = `${victim.url} (pid ${victim.pid}) at ${p.filesDone} files`;
          // Which results consumers die with it (the coordinator's is an R1 ordered consumer).
          void consumersLedBy(victim, RESULTS_STREAM).then((led) => {
            victim.kill("SIGKILL");
            t.log(
              `${since()} killed ${killed}; it led ${led.length > 0 ? led.join(", ") : "no consumer"} of ${RESULTS_STREAM}`,
            );
          });
        }
      },
    }),
  );
  t.log(
    `${since()} killed ${killed}; ${summary.filesExported} files in ${summary.elapsedSeconds.toFixed(1)} s; ` +
      `coordinator now on ${serverOf(nc)}`,
  );
  t.not(killed, "", "a node was killed during the job");
  t.like(summary, { state: "succeeded", errors: 0 });
  t.is(summary.filesExported, manifest.files);
  // A new job while the node is still down: its consumers (results, job-record watch) may be
  // placed on the dead node; the coordinator retries their creation (bus jetstream-retry.ts).
  const retriesBefore = jetStreamRetryCount();
  const down = await stage(t, "verify with the node down", cluster, logs.lines, (progress) =>
    runVerifyJob({
      nc,
      root,
      container: "clustered",
      storage,
      topology: R3,
      onProgress: (p) => progress(p.filesCompared),
    }),
  );
  t.log(
    `${since()} verify with the node down: ${down.elapsedSeconds.toFixed(1)} s, ` +
      `${jetStreamRetryCount() - retriesBefore} JetStream calls retried`,
  );
  t.like(down, { identical: true, differences: 0, errors: 0 }, "verify with a node down");

  // The node comes back on the same port and store, catches up, and the cluster is whole again.
  await victim.restart();
  await stage(
    t,
    "the restarted node to be current in every R3 stream",
    cluster,
    logs.lines,
    (progress) =>
      waitFor(
        "the restarted node to be current in every R3 stream",
        async () => {
          try {
            // Progress: streams whose three peers are current.
            let whole = 0;
            for (const stream of [WORK_STREAM, RESULTS_STREAM, "KV_hsmfleet-jobs"]) {
              const c = (await jsm.streams.info(stream)).cluster;
              const peers = [
                c?.leader,
                ...(c?.replicas ?? []).filter((r) => r.current).map((r) => r.name),
              ];
              if (peers.filter((p) => p !== undefined).length >= 3) whole += 1;
            }
            progress(whole);
            return whole === 3;
          } catch {
            return false;
          }
        },
        STAGE_MS + 10_000,
      ),
  );
  t.log(`${since()} the killed node restarted and is current in every stream`);
  const rejoined = await stage(
    t,
    "verify after the node rejoined",
    cluster,
    logs.lines,
    (progress) =>
      runVerifyJob({
        nc,
        root,
        container: "clustered",
        storage,
        topology: R3,
        onProgress: (p) => progress(p.filesCompared),
      }),
  );
  t.like(
    rejoined,
    { identical: true, differences: 0, errors: 0 },
    "verify after the node rejoined",
  );
});
