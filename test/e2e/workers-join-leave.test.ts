import { spawn } from "node:child_process";
import type { ChildProcess } from "node:child_process";
import { mkdir } from "node:fs/promises";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { fileURLToPath } from "node:url";
import test from "ava";
import { parseStorageTarget } from "@hsmfleet/blob";
import { runExportJob } from "@hsmfleet/coordinator";
import { subjects } from "@hsmfleet/protocol";
import { tempDir } from "@hsmfleet/testkit";
import { exitOf, startBus, startStorage } from "./helpers.js";

/** A worker process walking a synthetic tree into the null target (the control-plane bench's). */
const PEER = fileURLToPath(new URL("../bench/control-plane-peer.js", import.meta.url));
const TREE = { files: 12_000, filesPerDirectory: 400, fanOut: 4 };
const WALK_CONCURRENCY = 2;
const TRANSFER_CONCURRENCY = 2;
/** What one worker holds at most: every item it can run at once (it prefetches nothing). */
const HELD_PER_WORKER = WALK_CONCURRENCY + TRANSFER_CONCURRENCY;
const HEARTBEAT_MS = 5000;

interface Peer {
  child: ChildProcess;
  stderr: string[];
  ready: Promise<void>;
}

test("workers joining and leaving during a job: exact counts, nothing stuck, redeliveries only for items of killed workers, no heartbeat storm", async (t) => {
  const dir = await tempDir();
  t.teardown(() => dir.cleanup());
  const root = join(dir.path, "root");
  await mkdir(root);
  const azurite = await startStorage(t);
  const storage = parseStorageTarget(azurite.connectionString)!;
  const { server, nc } = await startBus(t);

  let heartbeats = 0;
  const hb = nc.subscribe(subjects.heartbeatAll, {
    callback: () => {
      heartbeats++;
    },
  });
  t.teardown(() => hb.unsubscribe());

  const env = {
    ...process.env,
    CP_NATS: server.url,
    CP_STORAGE: azurite.connectionString,
    CP_TREE: JSON.stringify(TREE),
    CP_WALK_CONCURRENCY: String(WALK_CONCURRENCY),
    CP_TRANSFER_CONCURRENCY: String(TRANSFER_CONCURRENCY),
    CP_FILE_CONCURRENCY: "4",
    // Each file "takes" 20 ms, so the job lasts long enough for the fleet to change under it.
    CP_FILE_MS: "20",
  };
  const peers: Peer[] = [];
  const lifetimes: number[] = [];
  const startPeer = (): Peer => {
    const child = spawn(process.execPath, [PEER, "worker"], {
      env,
      stdio: ["ignore", "pipe", "pipe"],
    });
    const stderr: string[] = [];
    let partial = "";
    child.stderr.on("data", (b: Buffer) => {
      const lines = (partial + b.toString()).split("\n");
      partial = lines.pop() ?? "";
      stderr.push(...lines);
    });
    const ready = new Promise<void>((resolve, reject) => {
      child.stdout.on("data", (b: Buffer) => {
        if (b.toString().includes("ready")) resolve();
      });
      child.once("exit", (code) =>
        reject(new Error(`worker exited ${code}: ${stderr.join("\n")}`)),
      );
    });
    ready.catch(() => undefined);
    const started = Date.now();
    child.once("exit", () => lifetimes.push(Date.now() - started));
    const peer = { child, stderr, ready };
    peers.push(peer);
    t.teardown(() => {
      if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
    });
    return peer;
  };
  const alive = () => peers.filter((p) => p.child.exitCode === null && p.child.signalCode === null);

  // Scale out from 3 to 12 processes while the job runs, and scale in: 3 stopped (SIGTERM: they
  // finish what they hold) and 3 killed (SIGKILL: what they hold comes back after the ack wait).
  await Promise.all([startPeer(), startPeer(), startPeer()].map((p) => p.ready));
  const job = runExportJob({ nc, root, container: "churn", storage, batchMaxEntries: 40 });
  let done = false;
  void job.finally(() => (done = true)).catch(() => undefined);
  let killed = 0;
  let stopped = 0;
  const stops: Array<Promise<unknown>> = [];
  for (let step = 0; step < 9 && !done; step++) {
    await startPeer().ready;
    await sleep(150);
    const victims = alive().slice(0, -2); // never the two newest
    if (step % 3 === 1 && victims[0]) {
      victims[0].child.kill("SIGKILL");
      killed++;
    } else if (step % 3 === 2 && victims[0]) {
      const v = victims[0];
      v.child.kill("SIGTERM");
      stops.push(exitOf(v.child).then((e) => t.is(e.code, 0, "a stopped worker exits 0")));
      stopped++;
    }
  }
  const summary = await job;
  t.log(`${peers.length} worker processes started, ${stopped} stopped, ${killed} killed`);
  const wantDirs = Math.ceil(TREE.files / TREE.filesPerDirectory) - 1;
  t.like(summary, {
    state: "succeeded",
    errors: 0,
    filesExported: TREE.files,
    directoriesExported: wantDirs,
  });
  await Promise.all(stops);
  for (const p of alive()) p.child.kill("SIGTERM");
  await Promise.all(peers.map((p) => exitOf(p.child)));

  // Every delivery after the first is logged (at warn) by the worker that gets it.
  const redeliveries = peers
    .flatMap((p) => p.stderr)
    .filter((l) => l.includes("item delivered again")).length;
  t.log(
    `${redeliveries} redeliveries; at most ${killed * HELD_PER_WORKER} items held by killed workers`,
  );
  t.true(redeliveries <= killed * HELD_PER_WORKER, `${redeliveries} redeliveries`);

  // Heartbeats: about one per worker per interval, plus the answers to each joiner's ping.
  const expected = lifetimes.reduce((s, ms) => s + ms / (HEARTBEAT_MS * 0.8) + 1, 0);
  const pings = peers.length * peers.length;
  t.log(
    `${heartbeats} heartbeats seen; ~${Math.round(expected)} periodic, ≤ ${pings} ping answers`,
  );
  t.true(heartbeats <= expected + pings, `${heartbeats} heartbeats`);
});
