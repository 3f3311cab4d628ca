/**
 * A 3-node JetStream cluster on loopback with R3 streams and KV: one node is killed during an
 * export; the job completes; a new job (verify) started with the node still down works; the node
 * is restarted, rejoins, and a verify passes again.
 */
import { join } from "node:path";
import test from "ava";
import { jetstreamManager } from "@nats-io/jetstream";
import { parseStorageTarget } from "@hsmfleet/blob";
import { connectBus, ensureTopology, jetStreamRetryCount } from "@hsmfleet/bus";
import type { NatsConnection, TopologyOptions } from "@hsmfleet/bus";
import { runExportJob, runVerifyJob } from "@hsmfleet/coordinator";
import { RESULTS_STREAM, WORK_STREAM } from "@hsmfleet/protocol";
import { generateTree, startNatsCluster, tempDir } from "@hsmfleet/testkit";
import { Worker } from "@hsmfleet/worker";
import { startStorage, waitFor } from "./helpers.js";

const R3: TopologyOptions = { replicas: 3, ackWaitMs: 2000, maxDeliver: 20, update: true };

/**
 * Opt-in (HSMFLEET_TEST_CLUSTER=1). It passed 5 runs in a row and one clean-clone CI run, then
 * timed out (240 s) in the next CI run, the node killed at 84 files; until that hang is understood
 * it would make CI flaky (docs/reliability.md).
 */
const clusterTest = process.env["HSMFLEET_TEST_CLUSTER"] === "1" ? test : test.skip;

clusterTest(
  "3-node JetStream cluster (R3 streams and KV): a node killed mid-export; the job completes, verify passes with the node down and after it rejoins",
  async (t) => {
    t.timeout(240_000);
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
    const cluster = await startNatsCluster({ size: 3 });
    t.teardown(() => cluster.stop());

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
    const workers: Worker[] = [];
    for (let i = 0; i < 2; i++) {
      const wnc = await connect();
      conns.push(wnc);
      const worker = await Worker.create({
        nc: wnc,
        storage,
        workerId: `cluster-worker-${i}`,
        shutdownGraceMs: 2000,
        topology: R3,
      });
      workers.push(worker);
      const running = worker.run();
      t.teardown(async () => {
        await worker.shutdown();
        await running.catch(() => undefined);
        await wnc.close();
      });
    }

    let killed = "";
    const victim = cluster.nodes[1]!;
    const summary = await runExportJob({
      nc,
      root,
      container: "clustered",
      storage,
      batchMaxEntries: 10,
      topology: R3,
      onProgress: (p) => {
        if (killed === "" && p.filesDone >= 30) {
          killed = `${victim.url} (pid ${victim.pid}) at ${p.filesDone} files`;
          victim.kill("SIGKILL");
          t.log(`killed ${killed}`);
        }
      },
    });
    t.log(
      `killed ${killed}; ${summary.filesExported} files in ${summary.elapsedSeconds.toFixed(1)} s`,
    );
    t.not(killed, "", "a node was killed during the job");
    t.like(summary, { state: "succeeded", errors: 0 });
    t.is(summary.filesExported, manifest.files);
    // A new job while the node is still down: its consumers (results, job-record watch) may be
    // placed on the dead node; the coordinator retries their creation (bus jetstream-retry.ts).
    const retriesBefore = jetStreamRetryCount();
    const down = await runVerifyJob({ nc, root, container: "clustered", storage, topology: R3 });
    t.log(
      `verify with the node down: ${down.elapsedSeconds.toFixed(1)} s, ` +
        `${jetStreamRetryCount() - retriesBefore} JetStream calls retried`,
    );
    t.like(down, { identical: true, differences: 0, errors: 0 }, "verify with a node down");

    // The node comes back on the same port and store, catches up, and the cluster is whole again.
    await victim.restart();
    await waitFor(
      "the restarted node to be current in every R3 stream",
      async () => {
        try {
          for (const stream of [WORK_STREAM, RESULTS_STREAM, "KV_hsmfleet-jobs"]) {
            const c = (await jsm.streams.info(stream)).cluster;
            const peers = [
              c?.leader,
              ...(c?.replicas ?? []).filter((r) => r.current).map((r) => r.name),
            ];
            if (peers.filter((p) => p !== undefined).length < 3) return false;
          }
          return true;
        } catch {
          return false;
        }
      },
      60_000,
    );
    t.log("the killed node restarted and is current in every stream");
    const rejoined = await runVerifyJob({
      nc,
      root,
      container: "clustered",
      storage,
      topology: R3,
    });
    t.like(
      rejoined,
      { identical: true, differences: 0, errors: 0 },
      "verify after the node rejoined",
    );
  },
);
