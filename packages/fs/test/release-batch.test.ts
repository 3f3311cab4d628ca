import {
  appendFileSync,
  lstatSync,
  mkdirSync,
  readFileSync,
  symlinkSync,
  utimesSync,
  writeFileSync,
} from "node:fs";

import test from "ava";

import {
  FsOperationError,
  HSM_COMPAT,
  HsmFlag,
  HsmRefusedError,
  encodeHsmAttrs,
} from "@hsmfleet/core";

import {
  HsmEmulationBackend,
  dataVersion,
  releaseBatch,
  setXattr,
  hsmAtAbsolutePaths,
  JobRoot,
  UnsafePathError,
} from "../src/index.js";
import type { HsmAtAbsolutePaths } from "../src/index.js";
import { pathIn, tempDir } from "./helpers.js";

const XATTR = "user.hsm";
const { Exists: E, Dirty: D, Released: R, Archived: A, NoRelease, Lost } = HsmFlag;

const flagsOf = async (hsm: HsmAtAbsolutePaths, path: Buffer) =>
  (await hsm.state(path))?.flags ?? 0;

/** An archived (clean) file of `size` bytes with a past mtime carrying nanoseconds. */
const archivedFile = async (hsm: HsmAtAbsolutePaths, dir: string, name: string, size: number) => {
  const path = pathIn(dir, name);
  writeFileSync(path, Buffer.alloc(size, 0x61));
  utimesSync(path, 1_700_000_000.123456, 1_700_000_000.987654);
  await hsm.archive(path);
  return path;
};

test("native release drops the data of many files, keeping size, mtime (to the ns) and a clean state", async (t) => {
  const dir = await tempDir(t, "hsmfleet-relb-");
  const hsm = hsmAtAbsolutePaths(new HsmEmulationBackend({ xattr: XATTR }));
  const sizes = [0, 1, 4096, 5000, 3 * 1024 * 1024 + 7];
  const paths = await Promise.all(sizes.map((s, i) => archivedFile(hsm, dir, `f${i}`, s)));
  const before = paths.map((p) => lstatSync(p, { bigint: true }));

  t.deepEqual(await hsm.releaseMany(paths), [true, true, true, true, true]);
  for (const [i, p] of paths.entries()) {
    const st = lstatSync(p, { bigint: true });
    t.is(st.size, before[i]!.size, "size kept");
    t.is(st.blocks, 0n, "no data blocks left");
    t.is(st.mtimeNs, before[i]!.mtimeNs, "mtime kept to the nanosecond");
    t.true(
      readFileSync(p).every((b) => b === 0),
      "the data reads as zeros",
    );
    const attrs = await hsm.state(p);
    t.is(attrs?.flags, E | A | R, "released, and release's own change is not a write");
    t.is(attrs?.archiveVersion, dataVersion(st.size, st.mtimeNs), "data version recorded");
  }
  t.deepEqual(await hsm.releaseMany(paths), [false, false, false, false, false], "already");
});

test("native release applies every rule per file and says why, in order", async (t) => {
  const dir = await tempDir(t, "hsmfleet-relb-");
  const hsm = hsmAtAbsolutePaths(new HsmEmulationBackend({ xattr: XATTR }));
  const clean = await archivedFile(hsm, dir, "clean", 100);
  const dirty = await archivedFile(hsm, dir, "dirty", 100);
  appendFileSync(dirty, "written after the archive\n");
  const dirtyStub = await archivedFile(hsm, dir, "stub", 100);
  await hsm.release(dirtyStub);
  appendFileSync(dirtyStub, "written to a released stub\n");
  const noRelease = await archivedFile(hsm, dir, "norelease", 100);
  await hsm.setFlags(noRelease, NoRelease, 0);
  const lost = await archivedFile(hsm, dir, "lost", 100);
  await hsm.setFlags(lost, Lost, 0);
  const fresh = pathIn(dir, "new");
  writeFileSync(fresh, "never archived");
  const missing = pathIn(dir, "missing");
  const link = pathIn(dir, "link");
  symlinkSync(clean, link);
  const sub = pathIn(dir, "sub");
  mkdirSync(sub);
  await setXattr(
    sub,
    XATTR,
    encodeHsmAttrs({ compat: HSM_COMPAT, flags: E | A, archiveId: 1n, archiveVersion: 0n }),
  );
  const short = pathIn(dir, "short");
  writeFileSync(short, "x");
  await setXattr(short, XATTR, Buffer.alloc(10));

  const r = await hsm.releaseMany([
    clean,
    dirty,
    dirtyStub,
    noRelease,
    lost,
    fresh,
    missing,
    link,
    sub,
    short,
  ]);
  const msg = (x: boolean | Error | undefined) => (x instanceof Error ? x.message : String(x));
  t.is(r[0], true);
  t.true(r[1] instanceof HsmRefusedError);
  t.is(
    msg(r[1]),
    `release of ${dirty.toString()} refused: file is dirty (0xb exists dirty archived); archive it first`,
  );
  t.is(await flagsOf(hsm, dirty), E | D | A, "the write found is persisted as DIRTY");
  t.regex(msg(r[2]), /release of .*stub refused: file is dirty \(0xb exists dirty archived\)/);
  t.is(await flagsOf(hsm, dirtyStub), E | D | A, "a written stub is no longer released");
  t.regex(msg(r[3]), /release of .*norelease refused: file is marked never_release/);
  t.regex(msg(r[4]), /release of .*lost refused: archive copy is lost_from_hsm/);
  t.is(
    msg(r[5]),
    `release of ${fresh.toString()} refused: file is not archived (0x0 new); archive it first`,
  );
  t.true(r[6] instanceof FsOperationError);
  t.like(r[6], { operation: "release (open)", code: "ENOENT" });
  t.regex(msg(r[6]), /release \(open\) .*missing: ENOENT \(open: no such file or directory\)/);
  t.like(r[7], { operation: "release", code: "EINVAL" }, "a symlink is never followed");
  t.regex(msg(r[7]), /release .*link: EINVAL \(not a regular file\)/);
  t.is(readFileSync(clean).length, 100);
  t.like(r[8], { operation: "release", code: "EINVAL" });
  t.like(r[9], { operation: "getxattr", code: "EINVAL" }, "a short hsm_attrs value names its size");
  t.regex(msg(r[9]), /10 bytes/);
});

test("releaseBatch keeps the order across chunks and refuses NUL bytes in paths", async (t) => {
  const dir = await tempDir(t, "hsmfleet-relb-");
  const hsm = hsmAtAbsolutePaths(new HsmEmulationBackend({ xattr: XATTR }));
  const paths: Buffer[] = [];
  for (let i = 0; i < 10; i++) {
    paths.push(
      i % 3 === 0 ? pathIn(dir, `gone${i}`) : await archivedFile(hsm, dir, `f${i}`, 10 + i),
    );
  }
  const root = await JobRoot.open(dir);
  t.teardown(() => root.close());
  const rels = paths.map((p) => p.subarray(Buffer.byteLength(dir) + 1));
  const records = await releaseBatch(root, rels, XATTR, 3);
  t.deepEqual(
    records.map((r) => r.outcome),
    paths.map((_, i) => (i % 3 === 0 ? "error" : "released")),
  );
  for (const [i, r] of records.entries()) {
    if (r.outcome === "error") t.true(r.error.message.includes(`gone${i}`));
  }
  await t.throwsAsync(releaseBatch(root, [Buffer.from("a\0b")], XATTR), {
    instanceOf: UnsafePathError,
  });
  await t.throwsAsync(releaseBatch(root, [Buffer.from("/tmp/a")], XATTR), {
    instanceOf: UnsafePathError,
  });
  t.deepEqual(await releaseBatch(root, [], XATTR), []);
});
