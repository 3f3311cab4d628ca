/**
 * The two core-NATS broadcasts that carry no work item of their own: `hsmfleet.hsmcancel` (cancel
 * HSM actions on some FIDs) and `hsmfleet.hbping` (ask every worker for a heartbeat). Anyone who
 * can publish on NATS can send them (docs/security.md threat model): a forged cancel must cancel
 * nothing, and a flood of forged pings must not turn into a flood of heartbeats.
 */
import { mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";

import test from "ava";
import { connectBus } from "@hsmfleet/bus";
import { headers } from "@nats-io/transport-node";
import { HSM_COMPAT, HsmFlag, encodeHsmAttrs } from "@hsmfleet/core";
import { runHsmJob } from "@hsmfleet/coordinator";
import { HsmEmulationBackend, hsmAtAbsolutePaths, setXattr } from "@hsmfleet/fs";
import { decodeWorkerHeartbeat, encodeHsmCancel, subjects } from "@hsmfleet/protocol";
import { tempDir } from "@hsmfleet/testkit";
import { PING_BURST, PING_REFILL_MS, Worker } from "@hsmfleet/worker";

import { startBus, waitFor } from "./helpers.js";

const XATTR = "user.hsm";
const { Exists: E, Archived: A, Released: R } = HsmFlag;

test.serial(
  "a forged hsmcancel (no seal of a job) cancels nothing: the release it names still runs",
  async (t) => {
    t.timeout(120_000);
    const dir = await tempDir();
    t.teardown(() => dir.cleanup());
    const root = join(dir.path, "fs");
    await mkdir(root);
    const file = join(root, "f");
    await writeFile(file, "data to release\n");
    await setXattr(
      Buffer.from(file),
      XATTR,
      encodeHsmAttrs({ compat: HSM_COMPAT, flags: E | A, archiveId: 1n, archiveVersion: 0n }),
    );
    const hsm = hsmAtAbsolutePaths(new HsmEmulationBackend({ xattr: XATTR }));
    const fid = await hsm.fid(Buffer.from(file));
    const { server, nc } = await startBus(t);
    const wnc = await connectBus({ servers: server.url, reconnectForever: false });
    const worker = await Worker.create({ nc: wnc, workerId: "w1" });
    const running = worker.run();
    t.teardown(async () => {
      await worker.shutdown();
      await running.catch(() => undefined);
      await wnc.close();
    });
    // The worker is up once it answers a ping.
    const beats: string[] = [];
    const sub = nc.subscribe(subjects.heartbeat("w1"), {
      callback: (_e, m) => {
        beats.push(decodeWorkerHeartbeat(m.data).workerId);
      },
    });
    t.teardown(() => sub.unsubscribe());
    await waitFor("the worker's first heartbeat", () => beats.length > 0);

    // Forged: the largest cookie (everything before it cancelled), the file's FID, no seal. One
    // old-style message without a job, one naming a job that does not exist, one with a made-up
    // seal header.
    const forged = encodeHsmCancel({ fids: [fid], cookie: 2n ** 63n, jobId: "" });
    nc.publish(subjects.hsmCancel, forged);
    nc.publish(
      subjects.hsmCancel,
      encodeHsmCancel({ fids: [fid], cookie: 2n ** 63n, jobId: "hsm-20260101-000000-ffff" }),
    );
    const h = headers();
    h.set("Hsmfleet-Seal", "AAAAAAAAAAAAAAAAAAAAAA");
    nc.publish(subjects.hsmCancel, forged, { headers: h });
    // Core NATS keeps one publisher's order: once the worker answers a ping sent after the forged
    // cancels, it has handled them.
    const before = beats.length;
    nc.publish(subjects.heartbeatPing);
    await waitFor(
      "the heartbeat answering the ping after the forged cancels",
      () => beats.length > before,
    );

    const summary = await runHsmJob({
      nc,
      request: "release",
      root,
      paths: [Buffer.from(file)],
      backend: "hsm-emulation",
      hsmXattr: XATTR,
      container: "archive",
      partitions: 1,
    });
    t.like(summary, { state: "succeeded", items: 1, done: 1, cancelled: 0, failed: 0 });
    t.is((await hsm.state(Buffer.from(file)))?.flags, E | A | R, "released");
  },
);

test.serial(
  "a flood of forged hbpings is answered with a bounded number of heartbeats",
  async (t) => {
    t.timeout(60_000);
    const { server, nc } = await startBus(t);
    const wnc = await connectBus({ servers: server.url, reconnectForever: false });
    // A long regular interval, so that the heartbeats counted are ping answers.
    const worker = await Worker.create({ nc: wnc, workerId: "w1", heartbeatIntervalMs: 60_000 });
    const running = worker.run();
    t.teardown(async () => {
      await worker.shutdown();
      await running.catch(() => undefined);
      await wnc.close();
    });
    let beats = 0;
    const sub = nc.subscribe(subjects.heartbeat("w1"), {
      callback: () => {
        beats++;
      },
    });
    t.teardown(() => sub.unsubscribe());
    await waitFor("the worker's first heartbeat", () => beats > 0);
    await new Promise((r) => setTimeout(r, 500));
    const start = beats;
    // 3 s of forged pings, one every millisecond or so.
    const until = Date.now() + 3000;
    let sent = 0;
    while (Date.now() < until) {
      for (let i = 0; i < 20; i++) nc.publish(subjects.heartbeatPing);
      sent += 20;
      await new Promise((r) => setTimeout(r, 10));
    }
    await nc.flush();
    await new Promise((r) => setTimeout(r, 500));
    const answers = beats - start;
    t.log(`${sent} forged pings in 3 s: ${answers} heartbeats`);
    // At most a burst of PING_BURST answers and one per PING_REFILL_MS after it (3.5 s counted):
    // 3 + 14. Without the bound the answers followed the pings, one per ping spread (28–31 here).
    t.true(answers >= 1, "pings are still answered");
    t.true(
      answers <= PING_BURST + Math.ceil(3500 / PING_REFILL_MS) + 1,
      `${answers} heartbeats for ${sent} pings`,
    );
  },
);
