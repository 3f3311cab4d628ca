import { createHash } from "node:crypto";
import {
  appendFile,
  chown,
  mkdir,
  readFile,
  stat,
  unlink,
  utimes,
  writeFile,
} from "node:fs/promises";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";

import test from "ava";
import { openContainer, parseStorageTarget } from "@hsmfleet/blob";
import { HsmFlag } from "@hsmfleet/core";
import {
  ensureChangesStream,
  fileSystemUsage,
  parsePolicyText,
  readPolicyPanel,
  runHsmJob,
  servePolicies,
} from "@hsmfleet/coordinator";
import type { PolicyRunSummary } from "@hsmfleet/coordinator";
import { HsmEmulationBackend, hsmAtAbsolutePaths } from "@hsmfleet/fs";
import { changesSubject, encodeChangeRecord } from "@hsmfleet/protocol";
import { jetstream } from "@hsmfleet/bus";
import { tempDir } from "@hsmfleet/testkit";

import { TEST_TOPOLOGY, startBus, startStorage, startWorkers, waitFor } from "./helpers.js";
import { mountSmallFs } from "./policy-fs.js";

const XATTR = "trusted.hsm";
const hsm = hsmAtAbsolutePaths(new HsmEmulationBackend({ xattr: XATTR }));
const { Exists: E, Archived: A, Released: R, NoRelease: NR } = HsmFlag;
const MiB = 1 << 20;
const md5 = (b: Buffer) => createHash("md5").update(b).digest("hex");
const flagsOf = async (p: string) => (await hsm.state(Buffer.from(p)))?.flags ?? 0;

test.serial(
  "watermarks end to end: policy serve archives what the rules allow and releases LRU files until under the low watermark; no dirty or NORELEASE file released; released files restore byte-identical",
  async (t) => {
    t.timeout(300_000);
    const fs = await mountSmallFs(t, 64);
    if ("skip" in fs) {
      t.log(`SKIPPED: ${fs.skip}`);
      t.pass();
      return;
    }
    t.log(`file system: ${fs.kind}, 64 MiB`);
    const root = fs.path;
    const azurite = await startStorage(t);
    const storage = parseStorageTarget(azurite.connectionString)!;
    const { server, nc } = await startBus(t, TEST_TOPOLOGY);
    await startWorkers(t, server.url, 2, undefined, { storage });
    const now = Date.now() / 1000;
    // 54 files of 1 MiB, last written 2 h ago, accessed i hours ago (f00 the least recently).
    const sums = new Map<string, string>();
    const names: string[] = [];
    for (let i = 0; i < 54; i++) {
      const name = `d${i % 4}/f${String(i).padStart(2, "0")}`;
      const p = join(root, name);
      await mkdir(join(p, ".."), { recursive: true });
      const data = Buffer.alloc(MiB, `${name} `);
      await writeFile(p, data);
      await utimes(p, now - (100 - i) * 3600, now - 7200);
      sums.set(name, md5(data));
      names.push(name);
    }
    // The least recently accessed of all, but never to be released: NORELEASE (archived by
    // hand), and a file written again after its archive (dirty: its data version changed).
    const norel = join(root, "d0/norelease");
    await writeFile(norel, Buffer.alloc(MiB, 1));
    await utimes(norel, now - 900 * 3600, now - 7200);
    await hsm.setState(Buffer.from(norel), {
      compat: 1,
      flags: E | A | NR,
      archiveId: 1n,
      archiveVersion: 0n,
    });
    const dirty = join(root, "d1/dirty");
    await writeFile(dirty, Buffer.alloc(MiB, 2));
    const common = {
      nc,
      root,
      backend: "hsm-emulation" as const,
      hsmXattr: XATTR,
      container: "archive",
    };
    const pre = await runHsmJob({ ...common, request: "archive", paths: [Buffer.from(dirty)] });
    t.is(pre.done, 1);
    await appendFile(dirty, "written again");
    await utimes(dirty, now - 900 * 3600, now - 60); // just written: too young to archive again
    const before = await fileSystemUsage(root);
    t.log(`before: ${before.percent.toFixed(1)} % used`);
    t.true(before.percent > 85, `${before.percent} % > the high watermark`);

    const file = parsePolicyText(`
settings: { backend: hsm-emulation, hsm_xattr: ${XATTR}, container: archive }
fileclasses:
  small: { size_max: 64KiB }
  large: { size_min: 65537 }
policies:
  archive-new:
    action: archive
    root: ${root}
    rules: [{ last_mod: 30min }]
    triggers: { periodic: 1h }
  release-lru:
    action: release
    root: ${root}
    rules:
      - { classes: [small], last_access: 1y }
      - { classes: [large], last_access: 1h }
    triggers:
      usage: { of: filesystem, high: 85%, low: 60% }
      check_every: 1s
`);
    const runs: { trigger: string; summary: PolicyRunSummary }[] = [];
    const abort = new AbortController();
    const serving = servePolicies({
      nc,
      file,
      signal: abort.signal,
      tickMs: 250,
      onRun: (trigger, summary) => runs.push({ trigger, summary }),
    });
    try {
      await waitFor(
        "a release run",
        () => runs.some((r) => r.summary.policy === "release-lru"),
        120_000,
      );
    } finally {
      abort.abort();
      await serving;
    }
    const archive = runs.find((r) => r.summary.policy === "archive-new")!.summary;
    const release = runs.find((r) => r.summary.policy === "release-lru")!.summary;
    t.log(
      `archive: ${archive.done} done; release: ${release.done} done, ${release.bytesDone} bytes, stopped by ${release.stoppedBy}`,
    );
    t.is(archive.done, 54, "every file the rules allow was archived");
    const after = await fileSystemUsage(root);
    t.log(`after: ${after.percent.toFixed(1)} % used`);
    t.true(after.percent < 60, `${after.percent} % < the low watermark`);
    // What the dashboard shows: the watermark as last measured, and the last runs.
    const panel = await readPolicyPanel(nc);
    const mark = panel.watermarks.find((w) => w.policy === "release-lru")!;
    t.like(mark, { target: "filesystem", highPercent: 85, lowPercent: 60 });
    t.true(mark.percent < 60);
    t.true(panel.runs.some((r) => r.policy === "release-lru" && r.done === release.done));
    t.true(release.done < 54, "the run stopped at the low watermark, not at the end of the list");
    t.is(await flagsOf(norel), E | A | NR, "NORELEASE never released");
    t.is((await flagsOf(dirty)) & R, 0, "dirty never released");
    const released = [];
    for (const name of names) if ((await flagsOf(join(root, name))) & R) released.push(name);
    t.is(released.length, release.done);
    // LRU: the released files are exactly the least recently accessed ones.
    t.deepEqual(released, names.slice(0, released.length));
    for (const name of released)
      t.is((await stat(join(root, name))).blocks, 0, `${name} holds no data`);
    const restored = await runHsmJob({
      ...common,
      request: "restore",
      paths: released.map((n) => Buffer.from(join(root, n))),
    });
    t.is(restored.done, released.length);
    for (const name of released) t.is(md5(await readFile(join(root, name))), sums.get(name)!, name);
  },
);

test.serial(
  "remove: the archive copy of a deleted file goes after the delay, keyed by the record, across a restart of policy serve",
  async (t) => {
    t.timeout(120_000);
    const dir = await tempDir();
    t.teardown(() => dir.cleanup());
    const root = join(dir.path, "fs");
    await mkdir(join(root, "d"), { recursive: true });
    const azurite = await startStorage(t);
    const storage = parseStorageTarget(azurite.connectionString)!;
    const { server, nc } = await startBus(t, TEST_TOPOLOGY);
    await startWorkers(t, server.url, 1, undefined, { storage });
    const paths = ["d/gone", "d/kept"].map((n) => join(root, n));
    for (const p of paths) await writeFile(p, `data of ${p}`);
    const archived = await runHsmJob({
      nc,
      root,
      backend: "hsm-emulation",
      hsmXattr: "user.hsm",
      container: "archive",
      request: "archive",
      paths: paths.map((p) => Buffer.from(p)),
    });
    t.is(archived.done, 2);
    const container = openContainer(storage, "archive");
    const exists = async (blob: string) => (await container.getProperties(blob)) !== undefined;
    t.true(await exists("d/gone"));
    // The file goes away (its inode with it); sync publishes the UNLNK it applied.
    const ino = (await stat(paths[0]!)).ino;
    await unlink(paths[0]!);
    await ensureChangesStream(nc);
    const js = jetstream(nc);
    const deletedAt = Date.now();
    const record = (type: "UNLNK" | "CREAT", path: string, hsmExists: boolean, index: string) =>
      encodeChangeRecord({
        source: "posix",
        index,
        type,
        time: deletedAt,
        flags: 0,
        target: `ino:${ino}`,
        parent: "ino:1",
        name: path.split("/").pop()!,
        hsmExists,
        lastLink: true,
        path,
      });
    await js.publish(changesSubject("main"), record("UNLNK", "d/gone", true, "1"));
    await js.publish(changesSubject("main"), new TextEncoder().encode("not a record"));
    await js.publish(changesSubject("main"), record("UNLNK", "d/kept", false, "2"));
    const file = parsePolicyText(`
settings: { backend: hsm-emulation, container: archive }
policies:
  remove-deleted: { action: remove, delay: 3s, changes_from: main }
`);
    // First server: records the removal, then stops before it is due.
    const first = new AbortController();
    const serving = servePolicies({ nc, file, container, signal: first.signal, tickMs: 200 });
    await sleep(1500);
    first.abort();
    await serving;
    t.true(await exists("d/gone"), "not before the delay");
    // A new server (as after kill -9) resumes from KV and the durable consumer.
    const second = new AbortController();
    const again = servePolicies({ nc, file, container, signal: second.signal, tickMs: 200 });
    try {
      await waitFor("the removal", async () => !(await exists("d/gone")), 20_000);
    } finally {
      second.abort();
      await again;
    }
    t.true(Date.now() - deletedAt >= 3000, "not before the delay");
    t.false(await exists("d/gone"), "removed after the delay");
    t.true(await exists("d/kept"), "a record without an HSM copy removes nothing");
  },
);

test.serial(
  "user usage: an owner above high gets a run restricted to their files, LRU first, down to low; other owners untouched",
  async (t) => {
    t.timeout(120_000);
    const dir = await tempDir();
    t.teardown(() => dir.cleanup());
    const root = join(dir.path, "fs");
    await mkdir(join(root, "d"), { recursive: true });
    const now = Date.now() / 1000;
    const files: { p: string; uid: number; i: number }[] = [];
    for (const [uid, n] of [
      [1001, 5],
      [1002, 3],
    ] as const)
      for (let i = 0; i < n; i++) {
        const p = join(root, "d", `u${uid}-${i}`);
        await writeFile(p, Buffer.alloc(200 * 1024, i));
        await chown(p, uid, uid);
        await utimes(p, now - (100 - i) * 3600, now - 7200);
        await hsm.setState(Buffer.from(p), {
          compat: 1,
          flags: E | A,
          archiveId: 1n,
          archiveVersion: 0n,
        });
        files.push({ p, uid, i });
      }
    const { server, nc } = await startBus(t, TEST_TOPOLOGY);
    await startWorkers(t, server.url, 1);
    const file = parsePolicyText(`
settings: { hsm_xattr: ${XATTR} }
policies:
  per-user:
    action: release
    root: ${root}
    rules: [{ last_access: 1h }]
    triggers:
      user_usage: { high: 600KiB, low: 250KiB }
      check_every: 1h
`);
    const runs: { trigger: string; summary: PolicyRunSummary }[] = [];
    const abort = new AbortController();
    const serving = servePolicies({
      nc,
      file,
      signal: abort.signal,
      tickMs: 200,
      onRun: (trigger, summary) => runs.push({ trigger, summary }),
    });
    try {
      await waitFor("a per-user run", () => runs.length > 0, 60_000);
      await sleep(1000);
    } finally {
      abort.abort();
      await serving;
    }
    t.is(runs.length, 1, runs.map((r) => r.trigger).join("; "));
    t.is(runs[0]!.trigger, "user 1001 above 614400 bytes");
    t.is(runs[0]!.summary.done, 4, "1000 KiB down to at most 250 KiB: 4 files of 200 KiB");
    for (const f of files) {
      const released = ((await flagsOf(f.p)) & R) !== 0;
      t.is(released, f.uid === 1001 && f.i < 4, `${f.p}`);
    }
  },
);
