import { mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";

import test from "ava";
import { parseStorageTarget } from "@hsmfleet/blob";
import { connectBus, JobStore, ensureTopology } from "@hsmfleet/bus";
import { runHsmJob, runRestoreJob } from "@hsmfleet/coordinator";
import { ThroughputTracker } from "@hsmfleet/dashboard";
import { tempDir } from "@hsmfleet/testkit";
import { Worker } from "@hsmfleet/worker";

import { runCli, startBus, startStorage } from "./helpers.js";

const XATTR = "user.hsm";

/**
 * Issue 16 item 6: HSM and restore jobs looked like scans (`status` printed `scan hsm-… of /` with
 * zeros, `jobs --json` gave them scan counters, the dashboard showed kind `job` and 0 B). Each kind
 * now shows its own counters in `status` (text and --json), `jobs --json` and the dashboard row.
 */
test.serial(
  "hsm and restore jobs show their own counters in status, jobs --json and the dashboard",
  async (t) => {
    const dir = await tempDir();
    t.teardown(() => dir.cleanup());
    const root = join(dir.path, "fs");
    await mkdir(root);
    const sizes = [1000, 2000, 3000];
    const paths = sizes.map((_, i) => Buffer.from(join(root, `f${i}`)));
    for (const [i, p] of paths.entries()) await writeFile(p, Buffer.alloc(sizes[i]!, 0x61 + i));
    const total = sizes.reduce((a, b) => a + b, 0);

    const azurite = await startStorage(t);
    const storage = parseStorageTarget(azurite.connectionString)!;
    const { server, nc } = await startBus(t);
    const wnc = await connectBus({ servers: server.url, reconnectForever: false });
    const worker = await Worker.create({ nc: wnc, workerId: "w1", storage, shutdownGraceMs: 2000 });
    const running = worker.run();
    t.teardown(async () => {
      await worker.shutdown();
      await running.catch(() => undefined);
      await wnc.close();
    });

    const common = {
      nc,
      root,
      backend: "hsm-emulation" as const,
      hsmXattr: XATTR,
      container: "reports",
    };
    const archived = await runHsmJob({ ...common, request: "archive", paths });
    t.like(archived, { state: "succeeded", done: 3, bytes: total });
    t.like(await runHsmJob({ ...common, request: "release", paths }), { done: 3 });
    const restored = await runRestoreJob({
      nc,
      path: root,
      hsmXattr: XATTR,
      container: "reports",
      fsRoot: root,
    });
    t.like(restored, { state: "succeeded", filesRestored: 3, bytesRestored: total });

    // status --json: the HSM job's own counters, not a scan's.
    const status = await runCli(["--nats", server.url, "status", "--json", archived.jobId]);
    t.is(status.code, 0, status.stderr);
    t.like(JSON.parse(status.stdout) as object, {
      jobId: archived.jobId,
      kind: "hsm",
      request: "archive",
      state: "succeeded",
      items: 3,
      done: 3,
      failed: 0,
      bytes: total,
    });
    // status: the HSM summary, not "scan hsm-… of /".
    const text = await runCli(["--nats", server.url, "status", archived.jobId]);
    t.is(text.code, 0, text.stderr);
    t.regex(text.stdout, new RegExp(`^hsm archive ${archived.jobId}: succeeded`));
    t.regex(text.stdout, /items 3 in \d+ action lists: 3 done/);
    t.notRegex(text.stdout, /^scan /);

    // jobs --json: each job with its kind's counters.
    const jobs = await runCli(["--nats", server.url, "jobs", "--json"]);
    t.is(jobs.code, 0, jobs.stderr);
    const listed = JSON.parse(jobs.stdout) as Array<Record<string, unknown>>;
    t.like(
      listed.find((j) => j["jobId"] === archived.jobId),
      { kind: "hsm", request: "archive", done: 3, bytes: total },
    );
    t.like(
      listed.find((j) => j["jobId"] === restored.jobId),
      { kind: "restore", filesRestored: 3, bytesRestored: total, filesFound: 3 },
    );
    // jobs: the restore's line shows what it restored.
    const table = await runCli(["--nats", server.url, "jobs"]);
    t.is(table.code, 0, table.stderr);
    const restoreLine = table.stdout.split("\n").find((l) => l.startsWith(restored.jobId)) ?? "";
    t.regex(restoreLine, /\brestore\b/);
    t.regex(restoreLine, /\b3\s+files\b/);

    // The dashboard's job rows.
    const { jobs: bucket } = await ensureTopology(nc);
    const tracker = new ThroughputTracker({ finishedJobsShown: 10 });
    tracker.jobs(await new JobStore(bucket).list());
    const rows = tracker.snapshot().jobs;
    t.like(
      rows.find((r) => r.jobId === archived.jobId),
      { kind: "hsm", bytesDone: total, filesDone: 3, filesFound: 3, errors: 0 },
    );
    t.like(
      rows.find((r) => r.jobId === restored.jobId),
      { kind: "restore", bytesDone: total, bytesFound: total, filesDone: 3, filesFound: 3 },
    );
  },
);
