// The lustre backend's real code against an `lfs` STAND-IN (fixtures/lfs-standin.ts, over the
// emulation backend): no Lustre client can run here. What is checked is what hsmfleet sends to lfs
// (subcommands, options, file lists, batching, `<mount>/.lustre/fid/<FID>` names) and how it reads
// lfs's answers and errors. The "mount" is the test's directory (mountPoint).
import { existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";

import test from "ava";
import type { ExecutionContext } from "ava";

import { DependencyError, FsOperationError, HsmFlag, HsmRefusedError } from "@hsmfleet/core";

import {
  HsmEmulationBackend,
  LustreHsmBackend,
  UnsafePathError,
  fidPath,
  parseHsmStateLine,
  hsmAtAbsolutePaths,
  setOpenat2Disabled,
} from "../src/index.js";
import type { LustreHsmBackendOptions } from "../src/index.js";
import { lfsStandIn, pathIn, tempDir } from "./helpers.js";

const { Exists: E, Released: R, Archived: A, NoRelease, Dirty: D } = HsmFlag;

/** The lustre backend by absolute path, its "mount" at `mount`. */
const lustreAt = (mount: string, options: LustreHsmBackendOptions) =>
  hsmAtAbsolutePaths(new LustreHsmBackend({ xattr: "user.hsm", mountPoint: mount, ...options }));

const setup = async (
  t: ExecutionContext,
  options: { batchSize?: number; stateSource?: "xattr" | "lfs" } = {},
) => {
  const dir = await tempDir(t, "hsmfleet-lustre-");
  const fsDir = join(dir, "mnt");
  mkdirSync(fsDir);
  const log = join(dir, "lfs.log");
  process.env["LFS_STANDIN_LOG"] = log;
  process.env["LFS_STANDIN_XATTR"] = "user.hsm";
  const lfs = lustreAt(fsDir, { lfsPath: await lfsStandIn(dir), ...options });
  const emu = hsmAtAbsolutePaths(new HsmEmulationBackend({ xattr: "user.hsm" }));
  const calls = (): string[][] =>
    (existsSync(log) ? readFileSync(log, "utf8") : "")
      .split("\n")
      .filter((l) => l !== "")
      .map((l) => JSON.parse(l) as string[]);
  return { fsDir, lfs, emu, calls };
};

test.serial("parses lfs hsm_state lines, paths with ': (' included", (t) => {
  t.deepEqual(parseHsmStateLine("/mnt/a: (0x0000000d) released exists archived, archive_id:1"), {
    compat: 0,
    flags: 0xd,
    archiveId: 1n,
    archiveVersion: 0n,
  });
  t.is(parseHsmStateLine("/mnt/odd: (0x1) name: (0x00000000)").flags, 0);
  t.is(parseHsmStateLine("/mnt/b: (0x00000001) exists, archive_id:3").archiveId, 3n);
  t.throws(() => parseHsmStateLine("garbage"), { message: /unrecognised lfs hsm_state output/ });
});

test.serial("archive, release, restore, remove go to lfs and change the state", async (t) => {
  const { fsDir, lfs, emu, calls } = await setup(t);
  const f = pathIn(fsDir, "f");
  writeFileSync(f, "data\n");
  t.is(await lfs.state(f), undefined);
  await lfs.archive(f, { archiveId: 2 });
  t.is((await lfs.state(f))?.flags, E | A);
  t.is((await lfs.state(f))?.archiveId, 2n);
  await lfs.release(f);
  t.is((await emu.state(f))?.flags, E | A | R);
  t.is(statSync(f).size, 5);
  await lfs.restore(f);
  t.is((await lfs.state(f))?.flags, E | A);
  await lfs.remove(f);
  t.is((await lfs.state(f))?.flags, E);
  await lfs.cancel(f);
  const commands = calls().map((c) => c[0]);
  t.deepEqual(commands, ["hsm_archive", "hsm_release", "hsm_restore", "hsm_remove", "hsm_cancel"]);
  const archive = calls()[0]!;
  t.deepEqual(archive.slice(0, 4), ["hsm_archive", "--archive", "2", "--filelist"]);
});

test.serial("state falls back to lfs hsm_state when asked (no trusted.* access)", async (t) => {
  const { fsDir, lfs: _unused, emu } = await setup(t);
  const lfs = lustreAt(fsDir, { lfsPath: await lfsStandIn(join(fsDir, "..")), stateSource: "lfs" });
  const f = pathIn(fsDir, "f");
  writeFileSync(f, "data\n");
  t.is(await lfs.state(f), undefined);
  await emu.archive(f, { archiveId: 5 });
  await emu.release(f);
  const s = await lfs.state(f);
  t.is(s?.flags, 0xd);
  t.is(s?.archiveId, 5n);
});

test.serial("refusals read as on the emulation, before lfs is called", async (t) => {
  const { fsDir, lfs, emu, calls } = await setup(t);
  const f = pathIn(fsDir, "f");
  writeFileSync(f, "data\n");
  await emu.setFlags(f, E | A | D, 0, 1);
  const err = await t.throwsAsync(lfs.release(f), { instanceOf: HsmRefusedError });
  t.is(
    err.message,
    `release of ${f.toString()} refused: file is dirty (0xb exists dirty archived); archive it first`,
  );
  await emu.setFlags(f, NoRelease, D);
  await t.throwsAsync(lfs.release(f), { message: /never_release/ });
  t.deepEqual(calls(), []);
});

test.serial("bulk requests go in --filelist batches; lfs errors name the batch", async (t) => {
  const { fsDir, lfs: _unused, emu, calls } = await setup(t);
  const lfs = lustreAt(fsDir, { lfsPath: await lfsStandIn(join(fsDir, "..")), batchSize: 4 });
  const files: Buffer[] = [];
  for (let i = 0; i < 10; i++) {
    const f = pathIn(fsDir, `f${i}`);
    writeFileSync(f, `file ${i}\n`);
    files.push(f);
  }
  // A name with a newline goes in the file list as its FID name like any other.
  const nl = pathIn(fsDir, "new\nline");
  writeFileSync(nl, "x");
  files.push(nl);
  await lfs.requestMany("archive", files, { archiveId: 1 });
  for (const f of files) t.is((await emu.state(f))?.flags, E | A);
  const archives = calls();
  t.is(archives.length, 3, "11 paths in batches of 4");
  t.true(archives.every((c) => c[0] === "hsm_archive" && c.includes("--filelist")));
  t.false(existsSync(archives[2]!.at(-1)!), "the file list is removed once lfs is done");
  await lfs.requestRestore(files); // resident files: no-op, but accepted
  t.is(calls().length, 6);
  // A file that cannot be opened beneath the root never reaches lfs, and the error names it.
  const before = calls().length;
  const err = await t.throwsAsync(lfs.requestMany("remove", [pathIn(fsDir, "missing")]), {
    instanceOf: FsOperationError,
  });
  t.regex(err.message, /^hsm_remove of .*missing refused: path2fid .*missing: ENOENT/);
  t.is(calls().length, before);
  // lfs's own failures name the batch.
  const { unlinkSync } = await import("node:fs");
  const stale = pathIn(fsDir, "stale");
  writeFileSync(stale, "x");
  const plain = new LustreHsmBackend({
    lfsPath: await lfsStandIn(join(fsDir, "..")),
    xattr: "user.hsm",
    mountPoint: join(fsDir, "elsewhere"),
  });
  mkdirSync(join(fsDir, "elsewhere"));
  const lfsErr = await t.throwsAsync(hsmAtAbsolutePaths(plain).requestMany("remove", [stale]), {
    instanceOf: FsOperationError,
  });
  t.regex(lfsErr.message, /^lfs hsm_remove .*stale: exit 2 \(lfs hsm_remove: .*No such file/);
  unlinkSync(stale);
});

test.serial(
  "FIDs read from the file opened beneath the root; fid2path; hsm_set/hsm_clear by FID name; hsm_import through the parent's fd",
  async (t) => {
    const { fsDir, lfs, emu, calls } = await setup(t);
    mkdirSync(join(fsDir, "sub"));
    const f = pathIn(fsDir, "sub/f");
    writeFileSync(f, "data\n");
    const fid = await lfs.fid(f);
    t.is(fid, await emu.fid(f));
    const g = pathIn(fsDir, "g");
    writeFileSync(g, "");
    const many = await lfs.fids([f, g, pathIn(fsDir, "missing")]);
    t.deepEqual(many.slice(0, 2), [fid, await emu.fid(g)]);
    t.true(many[2] instanceof FsOperationError);
    t.regex((many[2] as Error).message, /missing/);
    t.deepEqual(await lfs.fids([f, g]), [fid, await emu.fid(g)]);
    t.false(
      calls().some((c) => c[0] === "path2fid"),
      "FIDs come from the open file (llapi_fd2fid's way), not from an lfs run",
    );
    const raw = new LustreHsmBackend({ lfsPath: await lfsStandIn(join(fsDir, "..")) });
    t.deepEqual(await raw.fidToPath(fsDir, fid), f);

    await lfs.setFlags(f, NoRelease | E | A, 0, 7);
    t.deepEqual(await emu.state(f), {
      compat: 1,
      flags: NoRelease | E | A,
      archiveId: 7n,
      archiveVersion: 0n,
    });
    await lfs.setFlags(f, 0, NoRelease);
    t.is((await emu.state(f))?.flags, E | A);
    t.deepEqual(calls().slice(-2), [
      [
        "hsm_set",
        "--exists",
        "--archived",
        "--norelease",
        "--archive-id",
        "7",
        fidPath(fsDir, fid),
      ],
      ["hsm_clear", "--norelease", fidPath(fsDir, fid)],
    ]);

    const stub = pathIn(fsDir, "stub");
    writeFileSync(stub, "", { mode: 0o640 });
    await lfs.importReleased(stub, 1 << 20, 3);
    const st = statSync(stub);
    t.is(st.size, 1 << 20);
    t.is(st.blocks, 0);
    t.is(st.mode & 0o777, 0o640);
    t.is((await emu.state(stub))?.flags, E | A | R);
    t.is(calls().at(-1)![0], "hsm_import");
    t.is(calls().at(-1)!.at(-1), "/proc/self/fd/3/stub", "created by name in the parent's fd");

    await lfs.markArchived(f, 2);
    t.is((await emu.state(f))?.flags, E | A);
  },
);

test.serial("a missing lfs binary is a DependencyError that says so", async (t) => {
  const dir = await tempDir(t, "hsmfleet-lustre-");
  writeFileSync(join(dir, "f"), "x");
  const lfs = lustreAt(dir, { lfsPath: "/nonexistent/lfs", stateSource: "lfs" });
  const err = await t.throwsAsync(lfs.state(pathIn(dir, "f")), { instanceOf: DependencyError });
  t.regex(
    err.message,
    /cannot run \/nonexistent\/lfs \(ENOENT\); install the Lustre client or pass --lfs/,
  );
});

test.serial(
  "non-UTF-8 names reach lfs as their FID names; hsm_import refuses them clearly",
  async (t) => {
    const { fsDir, lfs, emu } = await setup(t);
    const bad = pathIn(fsDir, Buffer.from([0x66, 0xff]));
    writeFileSync(bad, "");
    await lfs.archive(bad);
    t.is((await emu.state(bad))?.flags, E | A);
    await t.throwsAsync(lfs.importReleased(bad, 10, 1), {
      instanceOf: FsOperationError,
      message: /not valid UTF-8/,
    });
  },
);

for (const fallback of [false, true]) {
  test.serial(
    `a directory swapped for a symlink: no lfs call reaches the file outside${fallback ? " (openat fallback)" : ""}`,
    async (t) => {
      const { fsDir, lfs, emu, calls } = await setup(t);
      setOpenat2Disabled(fallback);
      t.teardown(() => setOpenat2Disabled(false));
      const outside = join(fsDir, "..", "outside");
      mkdirSync(outside);
      mkdirSync(join(fsDir, "alice"));
      const victim = pathIn(outside, "f");
      writeFileSync(victim, "OUTSIDE: must never change\n");
      await emu.setFlags(victim, E | A, 0, 1);
      const { symlinkSync } = await import("node:fs");
      symlinkSync(outside, join(fsDir, "alice", "x"));
      const f = pathIn(fsDir, "alice/x/f");
      const ops: Array<[string, () => Promise<unknown>]> = [
        ["release", () => lfs.release(f)],
        ["hsm_release", () => lfs.requestMany("release", [f])],
        ["hsm_archive", () => lfs.requestMany("archive", [f])],
        ["hsm_restore", () => lfs.requestRestore([f])],
        ["hsm_set", () => lfs.setFlags(f, NoRelease, 0)],
        ["hsm_set", () => lfs.markArchived(f, 1)],
        ["path2fid", () => lfs.fid(f)],
      ];
      for (const [op, run] of ops) {
        const err = await t.throwsAsync(run, { instanceOf: UnsafePathError }, op);
        t.regex(err.message, /alice\/x: is a symlink \(not followed; /, op);
        t.is(err.message.split(" refused: ").length, 2, `${op}: named once (${err.message})`);
        t.regex(err.message, new RegExp(`${op}|path2fid`), op);
      }
      t.is(readFileSync(victim, "utf8"), "OUTSIDE: must never change\n");
      t.is((await emu.state(victim))?.flags, E | A);
      t.deepEqual(calls(), [], "lfs never ran");
    },
  );
}
