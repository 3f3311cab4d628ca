import { mkdir, utimes, writeFile } from "node:fs/promises";
import { join } from "node:path";

import test from "ava";
import type { ExecutionContext } from "ava";
import { parseStorageTarget } from "@hsmfleet/blob";
import { HsmFlag } from "@hsmfleet/core";
import { parsePolicyText, runPolicy } from "@hsmfleet/coordinator";
import { HsmEmulationBackend, hsmAtAbsolutePaths } from "@hsmfleet/fs";
import { tempDir } from "@hsmfleet/testkit";

import { TEST_TOPOLOGY, startBus, startStorage, startWorkers } from "./helpers.js";

const XATTR = "user.hsm";
const { Exists: E, Archived: A, Released: R, Dirty: D, NoRelease: NR, NoArchive: NA } = HsmFlag;
const hsm = hsmAtAbsolutePaths(new HsmEmulationBackend({ xattr: XATTR }));
const DAY_S = 86_400;

const tree = async (t: ExecutionContext): Promise<string> => {
  const dir = await tempDir();
  t.teardown(() => dir.cleanup());
  return join(dir.path, "fs");
};

/** Writes `name` under root with mtime and atime `ageS` seconds ago (atime: `atimeAgeS`). */
const file = async (root: string, name: string, ageS: number, atimeAgeS = ageS, size = 100) => {
  const p = join(root, name);
  await mkdir(join(p, ".."), { recursive: true });
  await writeFile(p, Buffer.alloc(size, name.length));
  const now = Date.now() / 1000;
  await utimes(p, now - atimeAgeS, now - ageS);
  return Buffer.from(p);
};

/** Sets a file's HSM flags as they are (archive id 1, no data version: trusted as clean). */
const setTo = (p: Buffer, flags: number) =>
  hsm.setState(p, { compat: 1, flags, archiveId: 1n, archiveVersion: 0n });

const flagsOf = async (p: Buffer) => (await hsm.state(p))?.flags ?? 0;

const policyFile = (root: string, body: string) =>
  parsePolicyText(`
settings: { backend: hsm-emulation, hsm_xattr: ${XATTR}, container: archive }
fileclasses:
  scratch: { path: "scratch/**", no_archive: true }
  pinned: { path: "*.pin", no_release: true }
  small: { size_max: 1KiB }
  large: { size_min: 1025 }
policies:
${body.replaceAll("ROOT", root)}
`);

test.serial(
  "archive policy: dry run changes nothing; execute archives new files past last_mod, oldest first, never no_archive or NOARCHIVE",
  async (t) => {
    t.timeout(120_000);
    const root = await tree(t);
    const old1 = await file(root, "a/old1", 3 * 3600);
    const old2 = await file(root, "b/c/old2", 2 * 3600);
    const young = await file(root, "a/young", 60);
    const scratch = await file(root, "scratch/old", 5 * 3600);
    const noarch = await file(root, "b/noarch", 5 * 3600);
    await setTo(noarch, NA);
    const azurite = await startStorage(t);
    const { server, nc } = await startBus(t, TEST_TOPOLOGY);
    await startWorkers(t, server.url, 2, undefined, {
      storage: parseStorageTarget(azurite.connectionString)!,
    });
    const f = policyFile(
      root,
      `  arch:
    action: archive
    root: ROOT
    rules: [{ last_mod: 30min }]`,
    );
    const dry = await runPolicy({ nc, file: f, name: "arch", execute: false });
    t.deepEqual(
      dry.sample.map((s) => s.path),
      ["a/old1", "b/c/old2"],
      "oldest modification first",
    );
    t.like(dry, { eligible: 2, selected: 2, done: 0, mode: "dry-run" });
    t.is(await flagsOf(old1), 0, "a dry run changes nothing");
    const run = await runPolicy({ nc, file: f, name: "arch", execute: true });
    t.like(run, { selected: 2, done: 2, failed: 0, suspended: false });
    t.is(await flagsOf(old1), E | A);
    t.is(await flagsOf(old2), E | A);
    t.is(await flagsOf(young), 0, "too young");
    t.is(await flagsOf(scratch), 0, "class no_archive");
    t.is(await flagsOf(noarch), NA, "NOARCHIVE");
  },
);

test.serial(
  "release policy: LRU top-K merged over shards; per-class ages; never dirty, NORELEASE or no_release",
  async (t) => {
    t.timeout(120_000);
    const root = await tree(t);
    const files: { p: Buffer; atimeAge: number }[] = [];
    // 60 small archived files in 6 directories (several shards), accessed 400..459 days ago.
    for (let i = 0; i < 60; i++) {
      const atimeAge = (400 + i) * DAY_S;
      const p = await file(root, `d${i % 6}/s${i}`, 500 * DAY_S, atimeAge);
      await hsm.markArchived(p, 1);
      files.push({ p, atimeAge });
    }
    // Older still, but never released: dirty, NORELEASE, a no_release class, a small file too young.
    const dirty = await file(root, "d0/dirty", 900 * DAY_S, 900 * DAY_S);
    await setTo(dirty, E | A | D);
    const norel = await file(root, "d1/norel", 900 * DAY_S, 900 * DAY_S);
    await setTo(norel, E | A | NR);
    const pinned = await file(root, "d2/x.pin", 900 * DAY_S, 900 * DAY_S);
    await hsm.markArchived(pinned, 1);
    const recentSmall = await file(root, "d3/recent", 500 * DAY_S, 100 * DAY_S);
    await hsm.markArchived(recentSmall, 1);
    // A large file unaccessed for 2 days: its class releases after a day.
    const large = await file(root, "d4/large", 10 * DAY_S, 2 * DAY_S, 4096);
    await hsm.markArchived(large, 1);
    const { server, nc } = await startBus(t, TEST_TOPOLOGY);
    await startWorkers(t, server.url, 2);
    const f = policyFile(
      root,
      `  lru:
    action: release
    root: ROOT
    rules:
      - { classes: [small], last_access: 1y }
      - { classes: [large], last_access: 1d }
    limits: { max_actions: 10 }`,
    );
    const run = await runPolicy({ nc, file: f, name: "lru", execute: true });
    t.like(run, { eligible: 61, selected: 10, done: 10, failed: 0 });
    // The 10 least recently accessed: s59..s50.
    const released = new Set(run.sample.map((s) => s.path));
    for (let i = 50; i < 60; i++) t.true(released.has(`d${i % 6}/s${i}`), `s${i}`);
    for (let i = 0; i < 60; i++) t.is(await flagsOf(files[i]!.p), i >= 50 ? E | A | R : E | A);
    t.is(await flagsOf(dirty), E | A | D);
    t.is(await flagsOf(norel), E | A | NR);
    t.is(await flagsOf(pinned), E | A);
    t.is(await flagsOf(recentSmall), E | A);
    t.is(await flagsOf(large), E | A, "eligible, but not among the 10 oldest");
  },
);

test.serial("rate limit: 300 releases at 100 files / 2 s take as long as they must", async (t) => {
  t.timeout(120_000);
  const root = await tree(t);
  const paths: Buffer[] = [];
  for (let i = 0; i < 300; i++) {
    const p = await file(root, `d${i % 3}/f${i}`, 3 * DAY_S);
    await hsm.markArchived(p, 1);
    paths.push(p);
  }
  const { server, nc } = await startBus(t, TEST_TOPOLOGY);
  await startWorkers(t, server.url, 2);
  const f = policyFile(
    root,
    `  lru:
    action: release
    root: ROOT
    rules: [{ last_access: 1d }]
    limits: { rate: { count: 100, period: 2s } }`,
  );
  const run = await runPolicy({ nc, file: f, name: "lru", execute: true });
  const actionsMs = run.elapsedMs - run.evaluationMs;
  t.log(
    `300 releases in ${actionsMs} ms after a ${run.evaluationMs} ms evaluation, ${run.hsmJobs.length} waves`,
  );
  t.like(run, { selected: 300, done: 300, failed: 0 });
  // A burst of 100, then 200 more at 50/s: at least 4 s.
  t.true(actionsMs >= 3_900, `${actionsMs} ms`);
  for (const p of paths) t.is(await flagsOf(p), E | A | R);
});

test.serial("error suspension: a run stops once its error rate passes the threshold", async (t) => {
  t.timeout(120_000);
  const root = await tree(t);
  const paths: Buffer[] = [];
  for (let i = 0; i < 200; i++) {
    const p = await file(
      root,
      `d${i % 4}/f${String(i).padStart(3, "0")}`,
      3 * DAY_S,
      (1000 - i) * DAY_S,
    );
    await hsm.markArchived(p, 1);
    paths.push(p);
  }
  const { server, nc } = await startBus(t, TEST_TOPOLOGY);
  await startWorkers(t, server.url, 2);
  const f = policyFile(
    root,
    `  lru:
    action: release
    root: ROOT
    rules: [{ last_access: 1d }]
    limits: { rate: { count: 20, period: 1s }, suspend_error_rate: 0.5, suspend_min_actions: 10 }`,
  );
  // Every file loses its archive copy between the evaluation and the actions (a lost archive):
  // every release is refused.
  const run = await runPolicy({
    nc,
    file: f,
    name: "lru",
    execute: true,
    onEvaluated: async () => {
      for (const p of paths) await setTo(p, E | A | HsmFlag.Lost);
    },
  });
  t.log(run.suspendReason);
  t.true(run.suspended);
  t.is(run.stoppedBy, "suspended");
  t.regex(run.suspendReason, /actions failed, more than suspend_error_rate 0.5/);
  t.true(run.failed >= 10 && run.failed <= 40, `${run.failed} failed before the suspension`);
  let untouched = 0;
  for (const p of paths) if ((await flagsOf(p)) === (E | A | HsmFlag.Lost)) untouched++;
  t.is(untouched, 200, "nothing was released");
});

test.serial(
  "a shard with more candidates than one message holds sends them in parts",
  async (t) => {
    t.timeout(120_000);
    const root = await tree(t);
    await mkdir(join(root, "one"), { recursive: true });
    const now = Date.now() / 1000;
    for (let i = 0; i < 6000; i += 500)
      await Promise.all(
        Array.from({ length: 500 }, async (_, k) => {
          const p = join(root, "one", `file-with-a-longish-name-${String(i + k).padStart(5, "0")}`);
          await writeFile(p, "x");
          await utimes(p, now - 3 * DAY_S, now - 3 * DAY_S);
          await setTo(Buffer.from(p), E | A);
        }),
      );
    const { server, nc } = await startBus(t, TEST_TOPOLOGY);
    await startWorkers(t, server.url, 1);
    const f = policyFile(
      root,
      `  lru:
    action: release
    root: ROOT
    rules: [{ last_access: 1d }]
    limits: { max_actions: 6000 }`,
    );
    const dry = await runPolicy({ nc, file: f, name: "lru", execute: false });
    t.like(dry, { walkErrors: 0, eligible: 6000, selected: 6000 });
  },
);
