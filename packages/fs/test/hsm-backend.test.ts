import {
  appendFileSync,
  mkdirSync,
  readFileSync,
  renameSync,
  statSync,
  symlinkSync,
  utimesSync,
  writeFileSync,
} from "node:fs";

import test from "ava";
import type { ExecutionContext } from "ava";

import { FsOperationError, HsmFlag, HsmRefusedError, formatHsmState } from "@hsmfleet/core";

import {
  HsmEmulationBackend,
  openHsmBackend,
  hsmAtAbsolutePaths,
  JobRoot,
  UnsafePathError,
  setOpenat2Disabled,
} from "../src/index.js";
import type { HsmAtAbsolutePaths } from "../src/index.js";
import { pathIn, tempDir } from "./helpers.js";

const XATTR = "user.hsm";
const { Exists: E, Dirty: D, Released: R, Archived: A, NoRelease, NoArchive, Lost } = HsmFlag;

const setup = async (t: ExecutionContext, content = "hello world\n") => {
  const dir = await tempDir(t, "hsmfleet-hsmb-");
  const hsm = hsmAtAbsolutePaths(new HsmEmulationBackend({ xattr: XATTR }));
  const path = pathIn(dir, "f");
  writeFileSync(path, content);
  // A past mtime: a later write in the same clock tick still changes it.
  utimesSync(path, 1_700_000_000, 1_700_000_000);
  return { dir, hsm, path };
};

const flags = async (hsm: HsmAtAbsolutePaths, path: Buffer) => (await hsm.state(path))?.flags ?? 0;

const refused = async (t: ExecutionContext, p: Promise<unknown>, message: RegExp | string) => {
  const err = await t.throwsAsync(p, { instanceOf: HsmRefusedError });
  if (typeof message === "string") t.is(err.message, message);
  else t.regex(err.message, message);
};

test("openHsmBackend gives the emulation backend with its xattr", (t) => {
  const b = openHsmBackend({ backend: "hsm-emulation", xattr: XATTR });
  t.is(b.kind, "hsm-emulation");
  t.is(b.xattr, XATTR);
  t.true(b instanceof HsmEmulationBackend);
  t.is(openHsmBackend({ backend: "lustre", lfsPath: "/x/lfs" }).kind, "lustre");
});

test("new -> archived -> released -> restored -> removed", async (t) => {
  const { hsm, path } = await setup(t);
  t.is(await hsm.state(path), undefined);
  await hsm.archive(path, { archiveId: 2 });
  const archived = await hsm.state(path);
  t.is(archived?.flags, E | A);
  t.is(archived?.archiveId, 2n);
  t.not(archived?.archiveVersion, 0n);
  t.is(formatHsmState("f", archived), "f: (0x00000009) exists archived, archive_id:2");

  const before = statSync(path);
  await hsm.release(path);
  t.is(await flags(hsm, path), E | A | R);
  const after = statSync(path);
  t.is(after.size, before.size, "size kept");
  t.is(after.blocks, 0, "data dropped");
  t.is(Math.floor(after.mtimeMs), Math.floor(before.mtimeMs), "mtime kept");
  t.is(await flags(hsm, path), E | A | R, "release's own truncate is not a write");
  await hsm.release(path); // released again: no-op
  t.is(await flags(hsm, path), E | A | R);
  t.true(await hsm.isReleased(path));

  await hsm.restore(path);
  t.is(await flags(hsm, path), E | A);
  await hsm.restore(path); // resident: no-op
  t.is(await flags(hsm, path), E | A);

  await hsm.remove(path);
  t.is(await flags(hsm, path), E);
  // Removed from the archive: may be archived again.
  await hsm.archive(path);
  t.is(await flags(hsm, path), E | A);
});

test("a write to an archived file marks it dirty at the next state read", async (t) => {
  const { hsm, path } = await setup(t);
  await hsm.archive(path);
  appendFileSync(path, "more\n");
  t.is(await flags(hsm, path), E | D | A);
  // Persisted: the xattr says dirty even if mtime is put back.
  utimesSync(path, 1_700_000_000, 1_700_000_000);
  t.is(await flags(hsm, path), E | D | A);
  await refused(
    t,
    hsm.release(path),
    `release of ${path.toString()} refused: file is dirty (0xb exists dirty archived); archive it first`,
  );
  await hsm.archive(path);
  t.is(await flags(hsm, path), E | A, "archiving again clears dirty");
  await hsm.release(path);
  t.is(await flags(hsm, path), E | A | R);
});

test("a same-size rewrite with a new mtime is a write", async (t) => {
  const { hsm, path } = await setup(t);
  await hsm.archive(path);
  writeFileSync(path, "HELLO WORLD\n");
  t.is(await flags(hsm, path), E | D | A);
});

test("a write to a released stub leaves it dirty and no longer released", async (t) => {
  const { hsm, path } = await setup(t);
  await hsm.archive(path);
  await hsm.release(path);
  writeFileSync(path, "local\n");
  t.is(await flags(hsm, path), E | D | A);
});

test("every refusal names the operation, the path, the state and why", async (t) => {
  const { hsm, path } = await setup(t);
  const p = path.toString();
  await refused(
    t,
    hsm.release(path),
    `release of ${p} refused: file is not archived (0x0 new); archive it first`,
  );
  await hsm.archive(path);
  await refused(
    t,
    hsm.archive(path),
    `archive of ${p} refused: file is already archived and not dirty (0x9 exists archived)`,
  );
  await hsm.release(path);
  await refused(t, hsm.archive(path), /archive of .* refused: file is released/);
  await refused(
    t,
    hsm.remove(path),
    `remove of ${p} refused: file is released: removing the archive copy would lose its data (0xd released exists archived); restore it first`,
  );
});

test("remove of a new file is a no-op", async (t) => {
  const { hsm, path } = await setup(t);
  await hsm.remove(path);
  t.is(await hsm.state(path), undefined);
});

test("NORELEASE, NOARCHIVE and LOST are honoured", async (t) => {
  const { hsm, path } = await setup(t);
  await hsm.setFlags(path, NoArchive, 0);
  await refused(
    t,
    hsm.archive(path),
    /archive of .* refused: file is marked never_archive \(0x20 never_archive\)/,
  );
  await hsm.setFlags(path, 0, NoArchive);
  await hsm.setFlags(path, NoRelease, 0);
  await hsm.archive(path);
  t.is(await flags(hsm, path), E | A | NoRelease, "policy bits survive an archive");
  await refused(t, hsm.release(path), /release of .* refused: file is marked never_release/);
  await hsm.setFlags(path, 0, NoRelease);
  await hsm.release(path);
  await hsm.setFlags(path, Lost, 0);
  await refused(t, hsm.restore(path), /restore of .* refused: archive copy is lost_from_hsm/);
  await hsm.setFlags(path, 0, Lost);
  await hsm.restore(path);
  await hsm.setFlags(path, Lost, 0);
  await refused(t, hsm.release(path), /lost_from_hsm/);
  await refused(t, hsm.archive(path), /lost_from_hsm/);
  await hsm.remove(path);
  t.is(await flags(hsm, path), E, "remove clears LOST with the archive copy");
});

test("setFlags sets the archive id like lfs hsm_set --archive-id", async (t) => {
  const { hsm, path } = await setup(t);
  await hsm.setFlags(path, E | A, 0, 4);
  const s = await hsm.state(path);
  t.is(s?.flags, E | A);
  t.is(s?.archiveId, 4n);
  t.is(s?.archiveVersion, 0n, "no data version recorded: trusted as clean");
  appendFileSync(path, "x");
  t.is(await flags(hsm, path), E | A);
});

test("two-phase archive: a file changed during the copy stays not archived", async (t) => {
  const { hsm, path } = await setup(t);
  const snap = await hsm.beginArchive(path);
  t.is(await flags(hsm, path), E, "archive started: exists");
  appendFileSync(path, "changed during upload\n");
  const err = await t.throwsAsync(hsm.completeArchive(path, 1, snap), {
    instanceOf: HsmRefusedError,
  });
  t.regex(err.message, /file changed while it was copied/);
  t.is(await flags(hsm, path), E);
  // An unchanged copy completes.
  const again = await hsm.beginArchive(path);
  await hsm.completeArchive(path, 1, again);
  t.is(await flags(hsm, path), E | A);
});

test("two-phase restore: begin says whether data is needed; complete records the version", async (t) => {
  const { hsm, path } = await setup(t);
  await hsm.archive(path);
  t.false(await hsm.beginRestore(path));
  await hsm.release(path);
  t.true(await hsm.beginRestore(path));
  writeFileSync(path, "hello world\n"); // the copytool writes the data back
  await hsm.completeRestore(path);
  t.is(await flags(hsm, path), E | A);
  appendFileSync(path, "!");
  t.is(await flags(hsm, path), E | D | A, "writes after a restore are detected");
});

test("FIDs are stable across renames and distinct per file", async (t) => {
  const { dir, hsm, path } = await setup(t);
  const fid = await hsm.fid(path);
  t.regex(fid, /^\[0x[0-9a-f]+:0x[0-9a-f]+:0x0\]$/);
  const moved = pathIn(dir, "g");
  renameSync(path, moved);
  t.is(await hsm.fid(moved), fid);
  const other = pathIn(dir, "h");
  writeFileSync(other, "");
  t.not(await hsm.fid(other), fid);
  await t.throwsAsync(hsm.fid(pathIn(dir, "missing")), {
    instanceOf: FsOperationError,
    code: "ENOENT",
  });
});

test("symlinks and directories are refused, never followed", async (t) => {
  const { dir, hsm, path } = await setup(t);
  symlinkSync(path, pathIn(dir, "link"));
  const err = await t.throwsAsync(hsm.archive(pathIn(dir, "link")), {
    instanceOf: UnsafePathError,
  });
  t.regex(
    err.message,
    /^archive of .*link refused: unsafe path .*link: is a symlink \(not followed/,
  );
  await t.throwsAsync(hsm.archive(Buffer.from(dir)), { code: "EINVAL" });
  t.is(await hsm.state(path), undefined);
});

test("the HsmEmulation API stays: importReleased, markArchived, isReleased", async (t) => {
  const { dir, hsm } = await setup(t);
  const stub = pathIn(dir, "stub");
  writeFileSync(stub, "");
  await hsm.importReleased(stub, 4096, 1);
  t.is(await flags(hsm, stub), E | A | R);
  t.true(await hsm.isReleased(stub));
  await hsm.restore(stub);
  t.is(await flags(hsm, stub), E | A);
  await hsm.markArchived(stub, 3);
  t.is((await hsm.state(stub))?.archiveId, 3n);
});

for (const fallback of [false, true]) {
  test.serial(
    `every operation through a directory swapped for a symlink is refused by name; the file outside never changes${fallback ? " (openat fallback)" : ""}`,
    async (t) => {
      setOpenat2Disabled(fallback);
      t.teardown(() => setOpenat2Disabled(false));
      const dir = await tempDir(t, "hsmfleet-hsmb-");
      const hsm = new HsmEmulationBackend({ xattr: XATTR });
      const outside = hsmAtAbsolutePaths(hsm);
      mkdirSync(`${dir}/root/alice`, { recursive: true });
      mkdirSync(`${dir}/outside`);
      const victim = pathIn(dir, "outside/f");
      writeFileSync(victim, "OUTSIDE: must never change\n");
      await outside.setFlags(victim, E | A, 0, 1);
      const empty = pathIn(dir, "outside/empty");
      writeFileSync(empty, "");
      symlinkSync(`${dir}/outside`, `${dir}/root/alice/x`);
      const root = await JobRoot.open(`${dir}/root`);
      t.teardown(() => root.close());
      const rel = Buffer.from("alice/x/f");
      const ops: Array<[string, () => Promise<unknown>]> = [
        ["hsm_state", () => hsm.state(root, rel)],
        ["path2fid", () => hsm.fid(root, rel)],
        ["hsm_set", () => hsm.setFlags(root, rel, NoRelease, 0)],
        ["hsm_set", () => hsm.markArchived(root, rel, 2)],
        ["hsm_import", () => hsm.importReleased(root, Buffer.from("alice/x/empty"), 4096, 1)],
        ["archive", () => hsm.archive(root, rel)],
        ["archive", () => hsm.beginArchive(root, rel)],
        ["release", () => hsm.release(root, rel)],
        ["restore", () => hsm.restore(root, rel)],
        ["remove", () => hsm.remove(root, rel)],
        ["cancel", () => hsm.cancel(root, rel)],
      ];
      for (const [op, run] of ops) {
        const err = await t.throwsAsync(run, { instanceOf: UnsafePathError }, op);
        t.regex(
          err.message,
          new RegExp(
            `^${op} of .*root/alice/x/\\w+ refused: unsafe path .*root/alice/x: is a symlink \\(not followed`,
          ),
          op,
        );
      }
      const [fid] = await hsm.fids(root, [rel]);
      t.true(fid instanceof UnsafePathError, "fids");
      const [released] = await hsm.releaseMany(root, [rel]);
      t.regex(
        String((released as Error).message),
        /^release of .*alice\/x\/f refused: unsafe path/,
      );
      t.is(readFileSync(victim, "utf8"), "OUTSIDE: must never change\n");
      t.is(await flags(outside, victim), E | A);
      t.is(statSync(empty).size, 0);
      t.is(await outside.state(empty), undefined);
    },
  );
}
