/**
 * `npm run bench:ledger`: how wide a job's outstanding frontier (coordinator result-ledger.ts)
 * gets on a wide tree, and what its checkpoints cost: the peak of published − completed, the job
 * record's size, and the frontier's pages in the hsmfleet-ledger bucket (ledger-store.ts), sampled
 * from KV every 250 ms. Real nats-server, in-process workers, in-process coordinator.
 *
 *   scan   (default) HSMFLEET_BENCH_WIDTH empty directories under one root (default 100,000):
 *          one walk shard per 16 of them.
 *   export HSMFLEET_BENCH_WIDTH empty files in one directory (default 50,000) to a real Azurite,
 *          HSMFLEET_BENCH_BATCH files per transfer batch (default 4).
 *
 * Usage: node test/dist/bench/ledger-width.bench.js [scan|export]
 */
import { mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { parseStorageTarget } from "@hsmfleet/blob";
import { connectBus, ensureTopology } from "@hsmfleet/bus";
import type { KV } from "@hsmfleet/bus";
import { runExportJob, runScanJob } from "@hsmfleet/coordinator";
import { decodeJobStatus } from "@hsmfleet/protocol";
import { startAzurite, startNatsServer, tempDir } from "@hsmfleet/testkit";
import { Worker } from "@hsmfleet/worker";

const envInt = (name: string, fallback: number): number => {
  const raw = process.env[name];
  if (raw === undefined || raw === "") return fallback;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < 1) throw new Error(`${name} must be a positive integer`);
  return n;
};

const kind = process.argv[2] ?? "scan";
if (kind !== "scan" && kind !== "export") throw new Error(`unknown kind ${kind} (scan|export)`);
const WIDTH = envInt("HSMFLEET_BENCH_WIDTH", kind === "scan" ? 100_000 : 50_000);
const BATCH = envInt("HSMFLEET_BENCH_BATCH", 4);

interface Peak {
  outstanding: number;
  recordBytes: number;
  ledgerKeys: number;
  ledgerBytes: number;
}

/** Sum of the job's keys and value sizes in the ledger bucket. */
const ledgerSize = async (kv: KV, jobId: string) => {
  let keys = 0;
  let bytes = 0;
  for await (const k of await kv.keys(`${jobId}.>`)) {
    const e = await kv.get(k);
    if (e?.operation !== "PUT") continue;
    keys++;
    bytes += e.value.length;
  }
  return { keys, bytes };
};

const main = async () => {
  const dir = await tempDir();
  const server = await startNatsServer();
  const azurite = kind === "export" ? await startAzurite() : undefined;
  const nc = await connectBus({ servers: server.url, reconnectForever: false });
  const workerNc = await connectBus({ servers: server.url, reconnectForever: false });
  try {
    const root = join(dir.path, "wide");
    await mkdir(root);
    const made = Date.now();
    for (let i = 0; i < WIDTH; i += 1000) {
      const ops: Array<Promise<void>> = [];
      for (let j = i; j < Math.min(WIDTH, i + 1000); j++) {
        const p = join(root, `entry-${String(j).padStart(7, "0")}`);
        ops.push(kind === "scan" ? mkdir(p) : writeFile(p, ""));
      }
      await Promise.all(ops);
    }
    console.log(
      `${kind}: ${WIDTH} empty ${kind === "scan" ? "directories" : "files"} made in ${Date.now() - made} ms`,
    );
    const { jobs, ledger } = await ensureTopology(nc);
    const storage = azurite ? parseStorageTarget(azurite.connectionString)! : undefined;
    const worker = await Worker.create({ nc: workerNc, workerId: "bench-worker", storage });
    const running = worker.run();
    const jobId = `ledger-width-${kind}-${Date.now()}`;
    const peak: Peak = { outstanding: 0, recordBytes: 0, ledgerKeys: 0, ledgerBytes: 0 };
    let sampling = true;
    const sampler = (async () => {
      while (sampling) {
        const e = await jobs.get(jobId);
        if (e?.operation === "PUT" && e.value.length > 0) {
          const s = decodeJobStatus(e.value);
          const outstanding = s.published - s.completed;
          peak.recordBytes = Math.max(peak.recordBytes, e.value.length);
          if (outstanding >= peak.outstanding) {
            peak.outstanding = outstanding;
            const l = await ledgerSize(ledger, jobId);
            peak.ledgerKeys = Math.max(peak.ledgerKeys, l.keys);
            peak.ledgerBytes = Math.max(peak.ledgerBytes, l.bytes);
          }
        }
        await sleep(250);
      }
    })();
    const started = Date.now();
    const summary =
      kind === "scan"
        ? await runScanJob({ nc, root, jobId })
        : await runExportJob({
            nc,
            root,
            jobId,
            container: "wide",
            storage: storage!,
            batchMaxEntries: BATCH,
          });
    sampling = false;
    await sampler;
    const after = await ledgerSize(ledger, jobId);
    console.log(
      JSON.stringify({
        kind,
        width: WIDTH,
        ...(kind === "export" ? { batchFiles: BATCH } : {}),
        state: summary.state,
        seconds: (Date.now() - started) / 1000,
        peakOutstanding: peak.outstanding,
        peakRecordBytes: peak.recordBytes,
        peakLedgerKeys: peak.ledgerKeys,
        peakLedgerBytes: peak.ledgerBytes,
        ledgerKeysAfterEnd: after.keys,
      }),
    );
    await worker.shutdown();
    await running;
  } finally {
    await workerNc.close();
    await nc.close();
    await azurite?.stop();
    await server.stop();
    await dir.cleanup();
  }
};

await main();
