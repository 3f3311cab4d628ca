/**
 * Process faults: worker processes killed with SIGKILL again and again during one export.
 */
import { mkdir, writeFile } from "node:fs/promises";
import type { ChildProcess } from "node:child_process";
import { join } from "node:path";
import test from "ava";
import { BlobServiceClient } from "@azure/storage-blob";
import { parseStorageTarget } from "@hsmfleet/blob";
import { runExportJob, runVerifyJob } from "@hsmfleet/coordinator";
import { connectBus } from "@hsmfleet/bus";
import { contentOf, generateTree, startFaultProxy, tempDir } from "@hsmfleet/testkit";
import {
  exitOf,
  runCli,
  spawnCli,
  startBus,
  startStorage,
  startWorkers,
  waitFor,
} from "./helpers.js";

/** Seeded delays, so a failing run can be replayed. */
const seeded = (seed: number) => {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = Math.imul(a ^ (a >>> 15), a | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
};

test("worker processes killed with SIGKILL at random points, at least 10 times over one export: the job completes, verify passes, no blob is ever seen partial", async (t) => {
  const dir = await tempDir();
  t.teardown(() => dir.cleanup());
  const root = join(dir.path, "tree");
  const manifest = await generateTree(root, {
    depth: 2,
    fanout: 4,
    filesPerDir: 20,
    symlinksPerDir: 1,
    sizes: [100, 20_000, 150_000],
  });
  await mkdir(join(root, "large"));
  const large = [0, 1, 2, 3].map((i) => contentOf(40 + i, Buffer.from(`L${i}`), 12 * 1024 * 1024));
  for (const [i, data] of large.entries()) await writeFile(join(root, "large", `l${i}.bin`), data);

  const azurite = await startStorage(t);
  const storage = parseStorageTarget(azurite.connectionString)!;
  // The job must still be running when the last kill comes, however fast this machine is: the
  // workers reach storage through a proxy that holds every request for one large blob until the
  // kills are done (a clock-free bound; the export cannot end before that blob is written).
  let openGate: () => void = () => undefined;
  const gate = new Promise<void>((resolve) => (openGate = resolve));
  const proxy = await startFaultProxy({
    target: azurite.blobEndpoint,
    hold: (req) =>
      req.method === "PUT" && (req.url ?? "").includes("/killed/large/l3.bin") ? gate : undefined,
  });
  t.teardown(async () => {
    openGate();
    await proxy.stop();
  });
  // Enough deliveries that a batch caught by several kills in a row is still not given up.
  const { server, nc } = await startBus(t, { ackWaitMs: 2000, maxDeliver: 30, update: true });
  const env = {
    AZURE_STORAGE_CONNECTION_STRING: proxy.rewriteConnectionString(azurite.connectionString),
  };
  const random = seeded(1234);
  const workers: ChildProcess[] = [];
  // What the workers warned about, shown when the test fails; and a bound on the test, so a job
  // that never ends fails it instead of holding the suite. A known defect (docs/reliability.md,
  // "A walk shard killed between its result and its children"): a kill in that window can leave
  // the job waiting for children that no attempt publishes.
  const warnings: string[] = [];
  const spawnWorker = (i: number) => {
    const w = spawnCli(
      ["--nats", server.url, "worker", "--vm-name", `victim-${i}`, "--concurrency", "4"],
      { env: { ...env, HSMFLEET_LOG_LEVEL: "warn" } },
    );
    w.stderr?.on("data", (d: Buffer) => {
      for (const line of d.toString().split("\n"))
        if (line.trim() !== "" && warnings.length < 200) warnings.push(`victim-${i}: ${line}`);
    });
    workers[i] = w;
  };
  t.teardown(() => {
    for (const w of workers) w.kill("SIGKILL");
    if (!t.passed) for (const line of warnings) process.stderr.write(`${line.slice(0, 400)}\n`);
  });
  t.timeout(5 * 60_000, "an export of 424 files with 12 kills takes well under a minute");
  spawnWorker(0);
  spawnWorker(1);

  const container = BlobServiceClient.fromConnectionString(
    azurite.connectionString,
  ).getContainerClient("killed");
  const partial: string[] = [];
  let kills = 0;
  let done = false;
  const killer = (async () => {
    // 12 kills every 150–600 ms, then the held blob is let through and the fleet is left alone
    // to finish (each kill costs an ack wait).
    while (!done && kills < 12) {
      await new Promise((r) => setTimeout(r, 150 + random() * 450));
      if (done) break;
      const i = random() < 0.5 ? 0 : 1;
      workers[i]!.kill("SIGKILL");
      kills++;
      spawnWorker(i);
      // Any large blob that is visible must be whole.
      for (const [j, data] of large.entries()) {
        const props = await container
          .getBlobClient(`large/l${j}.bin`)
          .getProperties()
          .catch(() => undefined);
        if (props && props.contentLength !== data.length)
          partial.push(`l${j}: ${props.contentLength}`);
      }
    }
    openGate();
  })();
  const summary = await runExportJob({
    nc,
    root,
    container: "killed",
    storage,
    blockSizeBytes: 4 * 1024 * 1024,
    batchMaxEntries: 20,
  });
  const killsDuringJob = kills;
  done = true;
  await killer;
  t.log(
    `kills during the job: ${killsDuringJob}, files ${summary.filesExported}, ${summary.elapsedSeconds.toFixed(1)} s`,
  );
  t.like(summary, { state: "succeeded", errors: 0 });
  t.is(summary.filesExported, manifest.files + large.length);
  t.is(killsDuringJob, 12, "every kill came while the job ran");
  t.deepEqual(partial, [], "no partial blob was ever visible");

  for (const w of workers) w.kill("SIGKILL");
  await startWorkers(t, server.url, 2, undefined, { storage });
  const verify = await runVerifyJob({ nc, root, container: "killed", storage, content: true });
  t.like(verify, { identical: true, differences: 0, errors: 0 });
});

test("the coordinator killed with SIGKILL mid-job: re-running the same command resumes it, verify passes, no file is uploaded twice", async (t) => {
  const dir = await tempDir();
  t.teardown(() => dir.cleanup());
  const root = join(dir.path, "tree");
  const manifest = await generateTree(root, {
    depth: 2,
    fanout: 3,
    filesPerDir: 8,
    sizes: [10, 5000],
  });
  const azurite = await startStorage(t);
  const storage = parseStorageTarget(azurite.connectionString)!;
  // The workers' storage traffic goes through the proxy, which only counts Put Blob per name.
  const puts = new Map<string, number>();
  const proxy = await startFaultProxy({
    target: azurite.blobEndpoint,
    eligible: (req) => {
      if (
        req.method === "PUT" &&
        !(req.url ?? "").includes("comp=") &&
        !(req.url ?? "").includes("restype=")
      ) {
        const name = decodeURIComponent(new URL(req.url ?? "/", "http://x").pathname);
        puts.set(name, (puts.get(name) ?? 0) + 1);
      }
      return false;
    },
  });
  t.teardown(() => proxy.stop());
  const { server } = await startBus(t);
  const env = { AZURE_STORAGE_CONNECTION_STRING: azurite.connectionString };
  const args = [
    "--nats",
    server.url,
    "--workers",
    "0",
    "export",
    root,
    "--container",
    "crash",
    "--json",
    "--quiet",
  ];
  const first = spawnCli(args, { env });
  t.teardown(() => {
    first.kill("SIGKILL");
  });
  await startWorkers(
    t,
    server.url,
    1,
    { beforeWalkShard: () => new Promise((r) => setTimeout(r, 300)) },
    {
      storage: parseStorageTarget(proxy.rewriteConnectionString(azurite.connectionString))!,
      fileConcurrency: 1,
    },
  );
  await waitFor("some uploads", () => [...puts.values()].reduce((a, b) => a + b, 0) > 5, 60_000);
  first.kill("SIGKILL");
  await exitOf(first);
  const uploadedAtKill = puts.size;

  // Refused while the dead coordinator's record looks fresh; the same command takes it over later.
  let again = await runCli(args, { env, timeoutMs: 120_000 });
  for (let i = 0; again.code === 2 && /another job/.test(again.stderr) && i < 10; i++) {
    await new Promise((r) => setTimeout(r, 4000));
    again = await runCli(args, { env, timeoutMs: 120_000 });
  }
  t.is(again.code, 0, again.stderr);
  const summary = JSON.parse(again.stdout) as {
    state: string;
    resumed: boolean;
    filesExported: number;
  };
  t.like(summary, { state: "succeeded", resumed: true, filesExported: manifest.files });
  const twice = [...puts.entries()].filter(([, n]) => n > 1);
  t.log(`${uploadedAtKill} blobs written before the kill; uploaded twice: ${twice.length}`);
  t.deepEqual(
    twice,
    [],
    "no file uploaded twice (the fleet kept working; the job was resumed, not restarted)",
  );
  const nc = await connectBus({ servers: server.url, reconnectForever: false });
  t.teardown(() => nc.close());
  const verify = await runVerifyJob({
    nc,
    root,
    container: "crash",
    storage,
  });
  t.like(verify, { identical: true, differences: 0 });
});
