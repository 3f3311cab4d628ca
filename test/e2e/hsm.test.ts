import { createHash } from "node:crypto";
import { mkdir, open, readFile, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

import test from "ava";
import type { ExecutionContext } from "ava";
import { BlobServiceClient } from "@azure/storage-blob";
import { parseStorageTarget } from "@hsmfleet/blob";
import type { StorageTarget } from "@hsmfleet/blob";
import { connectBus } from "@hsmfleet/bus";
import { HsmFlag } from "@hsmfleet/core";
import { runHsmJob } from "@hsmfleet/coordinator";
import type { HsmJobSummary } from "@hsmfleet/coordinator";
import { HsmEmulationBackend, hsmAtAbsolutePaths } from "@hsmfleet/fs";
import type { HsmAtAbsolutePaths } from "@hsmfleet/fs";
import { HsmItemStatus } from "@hsmfleet/protocol";
import { startAzurite, startMariaDb, tempDir } from "@hsmfleet/testkit";
import type { AzuriteFixture } from "@hsmfleet/testkit";
import { Worker } from "@hsmfleet/worker";

import { TEST_TOPOLOGY, runCli, startBus, startStorage, waitFor } from "./helpers.js";

const XATTR = "user.hsm";
const { Exists: E, Released: R, Archived: A } = HsmFlag;
const md5 = (b: Buffer) => createHash("md5").update(b).digest("hex");
/** HSMFLEET_BIG=1: the 100k-file variant. */
const FILES = process.env["HSMFLEET_BIG"] === "1" ? 100_000 : 2_000;

/**
 * Azurite for the pipeline test. Azurite's default metadata store scans every blob of the account
 * per request (puts slow from ~140/s at 5,000 blobs to ~20/s at 45,000), so 100,000 archives would
 * take hours: the 100k variant gives it a MariaDB metadata store (testkit startMariaDb; Debian's
 * mariadb-server), whose cost per request stays flat.
 */
const startArchiveStorage = async (t: ExecutionContext): Promise<AzuriteFixture> => {
  if (FILES <= 10_000) return startStorage(t);
  const db = await startMariaDb();
  t.teardown(() => db.stop());
  const azurite = await startAzurite({ metadataDb: db.url });
  t.teardown(() => azurite.stop());
  return azurite;
};

const startWorker = async (
  t: ExecutionContext,
  url: string,
  id: string,
  storage: StorageTarget,
  shutdownGraceMs = 2000,
): Promise<Worker> => {
  const nc = await connectBus({ servers: url, reconnectForever: false });
  const worker = await Worker.create({ nc, workerId: id, storage, shutdownGraceMs });
  const running = worker.run();
  t.teardown(async () => {
    await worker.shutdown();
    await running.catch(() => undefined);
    await nc.close();
  });
  return worker;
};

const contentFor = (i: number): Buffer =>
  Buffer.from(`file ${i} `.repeat(1 + (i % 37) * 11).slice(0, 1 + ((i * 131) % 4096)));

const states = async (hsm: HsmAtAbsolutePaths, paths: Buffer[]): Promise<Map<number, number>> => {
  const out = new Map<number, number>();
  for (let i = 0; i < paths.length; i += 256) {
    const chunk = await Promise.all(paths.slice(i, i + 256).map((p) => hsm.state(p)));
    for (const s of chunk) out.set(s?.flags ?? 0, (out.get(s?.flags ?? 0) ?? 0) + 1);
  }
  return out;
};

test.serial(
  `${FILES} files archived, released and restored through the action pipeline; a worker stopped abruptly mid-way changes nothing`,
  async (t) => {
    t.timeout(FILES > 10_000 ? 5_400_000 : 300_000);
    const t0 = Date.now();
    const phase = (name: string) => t.log(`${name}: ${((Date.now() - t0) / 1000).toFixed(1)} s`);
    const dir = await tempDir();
    t.teardown(() => dir.cleanup());
    const root = join(dir.path, "fs");
    const paths: Buffer[] = [];
    const sums: string[] = [];
    for (let d = 0; d < 20; d++) await mkdir(join(root, `d${d}`), { recursive: true });
    for (let i = 0; i < FILES; i += 500) {
      await Promise.all(
        Array.from({ length: Math.min(500, FILES - i) }, async (_, k) => {
          const n = i + k;
          const p = join(root, `d${n % 20}`, `f${n}`);
          const data = contentFor(n);
          await writeFile(p, data);
          paths[n] = Buffer.from(p);
          sums[n] = md5(data);
        }),
      );
    }
    phase("tree written");
    const azurite = await startArchiveStorage(t);
    const storage = parseStorageTarget(azurite.connectionString)!;
    // A longer ack wait than the other e2e tests: a busy machine must not redeliver lists still being
    // worked on (the victim's lists come back at once: a stopped worker naks them).
    const { server, nc } = await startBus(t, { ...TEST_TOPOLOGY, ackWaitMs: 15_000 });
    const victim = await startWorker(t, server.url, "victim", storage, 0);
    await startWorker(t, server.url, "w1", storage);
    await startWorker(t, server.url, "w2", storage);
    const hsm = hsmAtAbsolutePaths(new HsmEmulationBackend({ xattr: XATTR }));
    const common = {
      nc,
      root,
      backend: "hsm-emulation" as const,
      hsmXattr: XATTR,
      container: "archive",
      partitions: 16,
      listMaxItems: 64,
    };

    // Archive; the victim is shut down with no grace once a quarter of the items are done.
    let seen = 0;
    let stopped: Promise<void> | undefined;
    const archived = await runHsmJob({
      ...common,
      request: "archive",
      paths,
      onItem: () => {
        if (++seen === Math.floor(FILES / 4)) stopped = victim.shutdown();
      },
    });
    phase("archived");
    await stopped;
    t.truthy(stopped, "the victim was stopped mid-way");
    t.deepEqual(archived.errorSamples.slice(0, 3), []);
    t.like(archived, { state: "succeeded", items: FILES, failed: 0, cancelled: 0 });
    t.is(archived.done + archived.skipped, FILES);
    t.deepEqual([...(await states(hsm, paths))], [[E | A, FILES]]);
    const container = BlobServiceClient.fromConnectionString(
      azurite.connectionString,
    ).getContainerClient("archive");
    const blobs = new Map<string, string>();
    for await (const b of container.listBlobsFlat()) {
      blobs.set(b.name, Buffer.from(b.properties.contentMD5 ?? new Uint8Array()).toString("hex"));
    }
    t.is(blobs.size, FILES);
    t.is(blobs.get(`d7/f7`), sums[7]);
    t.true(
      paths.every((_, n) => blobs.get(`d${n % 20}/f${n}`) === sums[n]),
      "every blob holds its file's bytes",
    );

    // Release: data dropped, size kept.
    const released = await runHsmJob({ ...common, request: "release", paths });
    phase("released");
    t.deepEqual(released.errorSamples.slice(0, 2), []);
    t.like(released, { state: "succeeded", items: FILES, done: FILES, failed: 0 });
    t.deepEqual([...(await states(hsm, paths))], [[E | A | R, FILES]]);
    const st = await stat(paths[11]!);
    t.is(st.size, contentFor(11).length);
    t.is(st.blocks, 0);

    // Restore: the data comes back from the archive.
    const restored = await runHsmJob({ ...common, request: "restore", paths });
    phase("restored");
    t.deepEqual(restored.errorSamples.slice(0, 2), []);
    t.like(restored, { state: "succeeded", items: FILES, done: FILES, failed: 0 });
    t.deepEqual([...(await states(hsm, paths))], [[E | A, FILES]]);
    let same = 0;
    for (let i = 0; i < FILES; i += 256) {
      const chunk = await Promise.all(paths.slice(i, i + 256).map((p) => readFile(p)));
      chunk.forEach((b, k) => (same += md5(b) === sums[i + k] ? 1 : 0));
    }
    t.is(same, FILES, "every restored file is byte-identical");

    // Refusals come back per item: releasing dirty files says why.
    await writeFile(paths[0]!, "changed");
    const refused = await runHsmJob({
      ...common,
      request: "release",
      paths: [paths[0]!, paths[1]!],
    });
    t.like(refused, { state: "failed", done: 1, failed: 1 });
    t.regex(
      refused.errorSamples[0]!.error,
      /release of .*f0 refused: file is dirty \(0xb exists dirty archived\); archive it first/,
    );
  },
);

test.serial(
  "CANCEL of a large in-flight ARCHIVE stops it: no committed blob, the file not archived",
  async (t) => {
    t.timeout(120_000);
    const dir = await tempDir();
    t.teardown(() => dir.cleanup());
    const root = join(dir.path, "fs");
    await mkdir(root);
    const big = join(root, "big.bin");
    const fh = await open(big, "w");
    await fh.truncate(2 * 1024 * 1024 * 1024); // 2 GiB of zeros (sparse): far longer than the test
    await fh.close();
    const azurite = await startStorage(t);
    const storage = parseStorageTarget(azurite.connectionString)!;
    const { server, nc } = await startBus(t);
    await startWorker(t, server.url, "w1", storage);
    await startWorker(t, server.url, "w2", storage);
    const hsm = hsmAtAbsolutePaths(new HsmEmulationBackend({ xattr: XATTR }));
    const common = {
      nc,
      root,
      backend: "hsm-emulation" as const,
      hsmXattr: XATTR,
      container: "archive",
    };
    let bytesSeen = 0;
    const archiving: Promise<HsmJobSummary> = runHsmJob({
      ...common,
      request: "archive",
      paths: [Buffer.from(big)],
      onProgress: (p) => {
        for (const f of p.inFlight) bytesSeen = Math.max(bytesSeen, f.bytesDone);
      },
    });
    await Promise.race([
      waitFor("the archive to be moving bytes", () => bytesSeen > 0, 60_000),
      archiving.then((s) => {
        throw new Error(`archive ended before it could be cancelled: ${JSON.stringify(s)}`);
      }),
    ]);
    const cancel = await runHsmJob({ ...common, request: "cancel", paths: [Buffer.from(big)] });
    t.like(cancel, { state: "succeeded", done: 1 });
    const archive = await archiving;
    t.like(archive, { items: 1, cancelled: 1, done: 0 });
    const items = archive.errorSamples;
    t.deepEqual(items, []);
    t.true(bytesSeen < 2 * 1024 * 1024 * 1024, "stopped before the end");
    const blob = BlobServiceClient.fromConnectionString(azurite.connectionString)
      .getContainerClient("archive")
      .getBlockBlobClient("big.bin");
    t.false(await blob.exists(), "nothing committed");
    t.is((await hsm.state(Buffer.from(big)))?.flags, E, "exists, not archived");
    t.is(HsmItemStatus.Cancelled, 4);
  },
);

test.serial(
  "lustre backend through the fleet: workers run lfs batches (against the lfs STAND-IN: no Lustre client here)",
  async (t) => {
    const dir = await tempDir();
    t.teardown(() => dir.cleanup());
    const root = join(dir.path, "mnt");
    await mkdir(root);
    // fixtures/lfs-standin.ts over the emulation backend, run by node behind a one-line wrapper.
    const standIn = fileURLToPath(
      new URL("../../../packages/fs/dist/test/fixtures/lfs-standin.js", import.meta.url),
    );
    const lfs = join(dir.path, "lfs");
    await writeFile(lfs, `#!/bin/sh\nexec "${process.execPath}" "${standIn}" "$@"\n`, {
      mode: 0o755,
    });
    process.env["LFS_STANDIN_XATTR"] = XATTR;
    const hsm = hsmAtAbsolutePaths(new HsmEmulationBackend({ xattr: XATTR }));
    const paths: Buffer[] = [];
    for (let i = 0; i < 120; i++) {
      const p = Buffer.from(join(root, `f${i}`));
      await writeFile(p, `data ${i}\n`);
      await hsm.setFlags(p, E | A, 0, 1);
      paths.push(p);
    }
    await hsm.setFlags(paths[5]!, HsmFlag.NoRelease, 0);
    const { server, nc } = await startBus(t);
    for (const id of ["l1", "l2"]) {
      const wnc = await connectBus({ servers: server.url, reconnectForever: false });
      const worker = await Worker.create({ nc: wnc, workerId: id, lfsPath: lfs });
      const running = worker.run();
      t.teardown(async () => {
        await worker.shutdown();
        await running.catch(() => undefined);
        await wnc.close();
      });
    }
    const summary = await runHsmJob({
      nc,
      request: "release",
      root,
      paths,
      backend: "lustre",
      hsmXattr: XATTR,
      lfsPath: lfs,
      partitions: 4,
      listMaxItems: 20,
    });
    t.like(summary, { state: "failed", items: 120, done: 119, failed: 1 });
    t.regex(summary.errorSamples[0]!.error, /f5.*never_release/);
    const after = await states(hsm, paths);
    t.is(after.get(E | A | R), 119);
    t.is(after.get(E | A | HsmFlag.NoRelease), 1);
  },
);

test.serial(
  "hsmfleet hsm state prints lfs format; --from NUL lists; release --local names refusals",
  async (t) => {
    const dir = await tempDir();
    t.teardown(() => dir.cleanup());
    const hsm = hsmAtAbsolutePaths(new HsmEmulationBackend({ xattr: XATTR }));
    const a = join(dir.path, "a");
    const b = join(dir.path, "b\nc");
    await writeFile(a, "aaaa");
    await writeFile(b, "bbbb");
    await hsm.setFlags(Buffer.from(a), E | A, 0, 1);
    const list = join(dir.path, "list");
    await writeFile(list, `${a}\0${b}\0`);
    const state = await runCli(["hsm", "state", "--hsm-xattr", XATTR, "--from", list]);
    t.is(state.code, 0, state.stderr);
    t.is(
      state.stdout,
      `${a}: (0x00000009) exists archived, archive_id:1\n${dir.path}/b\\x0ac: (0x00000000)\n`,
    );
    const release = await runCli(["hsm", "release", "--local", "--hsm-xattr", XATTR, a, b]);
    t.is(release.code, 1);
    t.regex(
      release.stderr,
      /release of .*b\\x0ac refused: file is not archived \(0x0 new\); archive it first/,
    );
    t.regex(release.stderr, /hsm release: 1 done, 1 failed/);
    t.is((await hsm.state(Buffer.from(a)))?.flags, E | A | R);
    const usage = await runCli(["hsm", "archive", "--local", "--hsm-xattr", XATTR, a]);
    t.is(usage.code, 2);
    t.regex(usage.stderr, /would change the state without moving data/);
  },
);

test.serial(
  "REMOVE deletes the archive copy and clears ARCHIVED; a released file is refused",
  async (t) => {
    const dir = await tempDir();
    t.teardown(() => dir.cleanup());
    const root = join(dir.path, "fs");
    await mkdir(root);
    const paths = [0, 1, 2].map((i) => Buffer.from(join(root, `f${i}`)));
    for (const p of paths) await writeFile(p, `contents of ${p.toString()}\n`);
    const azurite = await startStorage(t);
    const storage = parseStorageTarget(azurite.connectionString)!;
    const { server, nc } = await startBus(t);
    await startWorker(t, server.url, "w1", storage);
    const hsm = hsmAtAbsolutePaths(new HsmEmulationBackend({ xattr: XATTR }));
    const common = {
      nc,
      root,
      backend: "hsm-emulation" as const,
      hsmXattr: XATTR,
      container: "rmtest",
    };
    t.like(await runHsmJob({ ...common, request: "archive", paths }), { done: 3 });
    t.like(await runHsmJob({ ...common, request: "release", paths: [paths[2]!] }), { done: 1 });
    const removed = await runHsmJob({ ...common, request: "remove", paths });
    t.like(removed, { done: 2, failed: 1 });
    t.regex(removed.errorSamples[0]!.error, /remove of .*f2 refused: file is released/);
    const container = BlobServiceClient.fromConnectionString(
      azurite.connectionString,
    ).getContainerClient("rmtest");
    const names: string[] = [];
    for await (const b of container.listBlobsFlat()) names.push(b.name);
    t.deepEqual(names, ["f2"]);
    t.is((await hsm.state(paths[0]!))?.flags, E);
    t.is((await hsm.state(paths[2]!))?.flags, E | A | R);
    await t.throwsAsync(runHsmJob({ ...common, container: "rm", request: "remove", paths }), {
      message: /invalid container name "rm"/,
    });
    // Removing again: nothing left to remove.
    t.like(await runHsmJob({ ...common, request: "remove", paths: [paths[0]!] }), { skipped: 1 });
  },
);

test.serial(
  "hsm state --json: one JSON array of states; hsm state with no paths is a usage error",
  async (t) => {
    const dir = await tempDir();
    t.teardown(() => dir.cleanup());
    const hsm = hsmAtAbsolutePaths(new HsmEmulationBackend({ xattr: XATTR }));
    const a = join(dir.path, "a");
    const b = join(dir.path, "b");
    await writeFile(a, "aaaa");
    await writeFile(b, "bbbb");
    await hsm.setFlags(Buffer.from(a), E | A, 0, 1);
    await hsm.release(Buffer.from(a));
    const missing = join(dir.path, "missing");
    const json = await runCli(["hsm", "state", "--json", "--hsm-xattr", XATTR, a, b, missing]);
    t.is(json.code, 1, "one path failed");
    t.regex(json.stderr, /missing/);
    t.deepEqual(JSON.parse(json.stdout), [
      {
        path: a,
        flags: E | A | R,
        hex: "0x0000000d",
        states: ["released", "exists", "archived"],
        archiveId: 1,
      },
      { path: b, flags: 0, hex: "0x00000000", states: [], archiveId: 0 },
    ]);
    const none = await runCli(["hsm", "state", "--hsm-xattr", XATTR]);
    t.is(none.code, 2);
    t.regex(none.stderr, /hsm state needs paths \(operands or --from FILE\)/);
    t.is(none.stdout, "");
  },
);

test.serial("hsm action names each running job's request and who started it", async (t) => {
  const dir = await tempDir();
  t.teardown(() => dir.cleanup());
  const f = join(dir.path, "f");
  await writeFile(f, "data");
  const { server, nc } = await startBus(t);
  // No worker: the archive stays queued, its job running, until cancelled.
  const abort = new AbortController();
  const job = runHsmJob({
    nc,
    request: "archive",
    root: dir.path,
    paths: [Buffer.from(f)],
    backend: "hsm-emulation",
    hsmXattr: XATTR,
    container: "archive",
    signal: abort.signal,
  });
  t.teardown(() => abort.abort());
  let shown: { jobs: Array<Record<string, unknown>> } = { jobs: [] };
  await waitFor("the HSM job to be listed", async () => {
    const run = await runCli(["--nats", server.url, "hsm", "action", "--json"]);
    shown = JSON.parse(run.stdout || '{"jobs":[]}') as typeof shown;
    return shown.jobs.length > 0;
  });
  t.like(shown.jobs[0], { request: "archive", backend: "hsm-emulation", root: dir.path });
  t.regex(String(shown.jobs[0]!["createdBy"]), /^[^?]+@/);
  const text = await runCli(["--nats", server.url, "hsm", "action"]);
  t.regex(
    text.stdout,
    new RegExp(`hsm-\\S+ running archive hsm-emulation ${dir.path} \\(by [^?]+@`),
  );
  abort.abort();
  t.is((await job).state, "cancelled");
});
