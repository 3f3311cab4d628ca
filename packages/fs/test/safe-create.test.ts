import {
  lstatSync,
  mkdirSync,
  readdirSync,
  readlinkSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";

import test from "ava";
import type { ExecutionContext } from "ava";

import { FsOperationError, pathForBlobName } from "@hsmfleet/core";
import { tempDir as makeTempDir } from "@hsmfleet/testkit";

import { TargetRoot, UnsafePathError } from "../src/index.js";

const tempDir = async (t: ExecutionContext): Promise<string> => {
  const dir = await makeTempDir("hsmfleet-safe-");
  t.teardown(() => dir.cleanup());
  return dir.path;
};

const b = (s: string): Buffer => Buffer.from(s);
const isRoot = process.getuid?.() === 0;

test("open: root must exist and be a directory", async (t) => {
  const dir = await tempDir(t);
  writeFileSync(`${dir}/file`, "x");
  await t.throwsAsync(TargetRoot.open(`${dir}/missing`), {
    instanceOf: FsOperationError,
    code: "ENOENT",
  });
  await t.throwsAsync(TargetRoot.open(`${dir}/file`), {
    instanceOf: FsOperationError,
    code: "ENOTDIR",
  });
  await t.throwsAsync(TargetRoot.open("relative/root"), { instanceOf: UnsafePathError });
  const root = await TargetRoot.open(`${dir}/`);
  t.teardown(() => root.close());
  t.is(root.absolute(b("a/b")).toString(), `${dir}/a/b`);
});

test("refuses malformed and escaping relative paths", async (t) => {
  const dir = await tempDir(t);
  const root = await TargetRoot.open(dir);
  t.teardown(() => root.close());
  const bad = [
    b("../x"),
    b("a/../../x"),
    b("/abs"),
    b("a/./b"),
    b("a//b"),
    b("a/"),
    b(""),
    b("."),
    b(".."),
    Buffer.from([0x61, 0x00, 0x62]),
  ];
  for (const rel of bad) {
    const what = JSON.stringify(rel.toString("latin1"));
    t.throws(() => root.absolute(rel), { instanceOf: UnsafePathError }, what);
    await t.throwsAsync(root.ensureParents(Buffer.concat([rel, b("/f")])), {
      instanceOf: UnsafePathError,
    });
    await t.throwsAsync(root.mkdir(rel, 0o755), { instanceOf: UnsafePathError }, what);
    await t.throwsAsync(root.createFile(rel, 0o644), { instanceOf: UnsafePathError }, what);
    await t.throwsAsync(root.symlink(rel, b("t")), { instanceOf: UnsafePathError }, what);
    await t.throwsAsync(root.lstat(rel), { instanceOf: UnsafePathError }, what);
    await t.throwsAsync(root.unlink(rel), { instanceOf: UnsafePathError }, what);
  }
  const err = t.throws(() => root.absolute(b("a/../../x")), { instanceOf: UnsafePathError });
  t.is(err.path, "a/../../x");
  t.regex(err.message, /'\.\.' segment/);
  // Names that merely contain dots are fine.
  t.is(root.absolute(b("...")).toString(), `${dir}/...`);
  t.is(root.absolute(b(".hidden/..x")).toString(), `${dir}/.hidden/..x`);
  t.deepEqual(readdirSync(dir), []);
});

test("refuses to create under a symlinked directory; nothing appears outside", async (t) => {
  const dir = await tempDir(t);
  const elsewhere = await tempDir(t);
  mkdirSync(`${dir}/target`);
  symlinkSync(elsewhere, `${dir}/target/link`);
  const root = await TargetRoot.open(`${dir}/target`);
  t.teardown(() => root.close());
  const rel = b("link/x");
  const linkPath = `${dir}/target/link`;
  for (const attempt of [
    () => root.mkdir(rel, 0o755),
    () => root.createFile(rel, 0o644),
    () => root.symlink(rel, b("anything")),
    () => root.ensureParents(b("link/x/y")),
    () => root.ensureParents(rel),
    () => root.lstat(rel),
    () => root.unlink(rel),
    () => root.setAttributes(rel, { uid: 0, gid: 0, mode: 0o644, mtimeSec: 1 }),
  ]) {
    const err = await t.throwsAsync(attempt(), { instanceOf: UnsafePathError });
    t.is(err.path, linkPath);
  }
  t.deepEqual(readdirSync(elsewhere), []);
  // A symlink deeper down is caught as well, also after the upper part was cached.
  mkdirSync(`${dir}/target/a/b`, { recursive: true });
  await root.ensureParents(b("a/b/f"));
  symlinkSync(elsewhere, `${dir}/target/a/b/c`);
  await t.throwsAsync(root.createFile(b("a/b/c/d"), 0o644), { instanceOf: UnsafePathError });
  await t.throwsAsync(root.ensureParents(b("a/b/c/d/e")), { instanceOf: UnsafePathError });
  t.deepEqual(readdirSync(elsewhere), []);
});

test("a regular file in the way of a parent is ENOTDIR", async (t) => {
  const dir = await tempDir(t);
  writeFileSync(`${dir}/f`, "x");
  const root = await TargetRoot.open(dir);
  t.teardown(() => root.close());
  await t.throwsAsync(root.ensureParents(b("f/x")), {
    instanceOf: FsOperationError,
    code: "ENOTDIR",
  });
  await t.throwsAsync(root.createFile(b("f/x"), 0o644), { code: "ENOTDIR" });
  // Missing parents: lstat says absent, creation says ENOENT (ensureParents first).
  t.is(await root.lstat(b("no/such/entry")), undefined);
  await t.throwsAsync(root.createFile(b("no/such"), 0o644), {
    instanceOf: FsOperationError,
    code: "ENOENT",
  });
});

test("mkdir: created, existed, refuses an existing symlink or file", async (t) => {
  const dir = await tempDir(t);
  const root = await TargetRoot.open(dir);
  t.teardown(() => root.close());
  t.is(await root.mkdir(b("d"), 0o750), "created");
  t.true(statSync(`${dir}/d`).isDirectory());
  t.is(await root.mkdir(b("d"), 0o750), "existed");
  symlinkSync("d", `${dir}/sl`);
  const err = await t.throwsAsync(root.mkdir(b("sl"), 0o755), { instanceOf: UnsafePathError });
  t.is(err.path, `${dir}/sl`);
  symlinkSync("/nonexistent", `${dir}/dangling`);
  await t.throwsAsync(root.mkdir(b("dangling"), 0o755), { instanceOf: UnsafePathError });
  writeFileSync(`${dir}/file`, "x");
  await t.throwsAsync(root.mkdir(b("file"), 0o755), {
    instanceOf: FsOperationError,
    code: "EEXIST",
  });
});

test("createFile and symlink refuse to replace an existing symlink", async (t) => {
  const dir = await tempDir(t);
  const outside = await tempDir(t);
  writeFileSync(`${outside}/victim`, "keep");
  symlinkSync(`${outside}/victim`, `${dir}/link`);
  symlinkSync(`${outside}/not-there`, `${dir}/dangling`);
  const root = await TargetRoot.open(dir);
  t.teardown(() => root.close());
  for (const name of ["link", "dangling"]) {
    await t.throwsAsync(root.createFile(b(name), 0o644), {
      instanceOf: FsOperationError,
      code: "EEXIST",
    });
    await t.throwsAsync(root.symlink(b(name), b("x")), {
      instanceOf: FsOperationError,
      code: "EEXIST",
    });
    t.true(lstatSync(`${dir}/${name}`).isSymbolicLink());
  }
  await t.throwsAsync(root.unlink(b("nothing")), { instanceOf: FsOperationError, code: "ENOENT" });
  t.deepEqual(readdirSync(outside), ["victim"]);
  // unlink removes the link itself, never its target.
  await root.unlink(b("link"));
  t.is(await root.lstat(b("link")), undefined);
  t.deepEqual(readdirSync(outside), ["victim"]);
  await root.mkdir(b("d"), 0o755);
  await t.throwsAsync(root.unlink(b("d")), { instanceOf: FsOperationError });
  t.true(statSync(`${dir}/d`).isDirectory());
});

test("createFile is exclusive and writes a regular file", async (t) => {
  const dir = await tempDir(t);
  const root = await TargetRoot.open(dir);
  t.teardown(() => root.close());
  const handle = await root.createFile(b("f"), 0o600);
  await handle.writeFile("data");
  await handle.close();
  t.is(statSync(`${dir}/f`).mode & 0o777, 0o600);
  const st = await root.lstat(b("f"));
  t.true(st?.isFile());
  t.is(st?.size, 4n);
  await t.throwsAsync(root.createFile(b("f"), 0o600), {
    instanceOf: FsOperationError,
    code: "EEXIST",
  });
});

test("symlink stores an outside-pointing target verbatim and follows nothing", async (t) => {
  const dir = await tempDir(t);
  const root = await TargetRoot.open(dir);
  t.teardown(() => root.close());
  await root.ensureParents(b("a/b/link"));
  await root.symlink(b("a/b/link"), b("../../etc/passwd"));
  t.is(readlinkSync(`${dir}/a/b/link`), "../../etc/passwd");
  const st = await root.lstat(b("a/b/link"));
  t.true(st?.isSymbolicLink());
  const raw = Buffer.from([0x2e, 0x2e, 0x2f, 0xff, 0xfe]);
  await root.symlink(b("a/raw"), raw);
  t.true(readlinkSync(Buffer.from(`${dir}/a/raw`), { encoding: "buffer" }).equals(raw));
  await t.throwsAsync(root.symlink(b("a/empty"), Buffer.alloc(0)), { code: "EINVAL" });
  await t.throwsAsync(root.symlink(b("a/nul"), Buffer.from("x\0y")), { code: "EINVAL" });
});

test("raw non-UTF-8 names work end to end", async (t) => {
  const dir = await tempDir(t);
  const root = await TargetRoot.open(dir);
  t.teardown(() => root.close());
  const dirName = Buffer.from([0xc3, 0x28, 0x20, 0x0a]);
  const fileName = Buffer.from([0x66, 0xff, 0x25, 0x5c]);
  const rel = Buffer.concat([dirName, b("/"), fileName]);
  await root.ensureParents(rel);
  const handle = await root.createFile(rel, 0o644);
  await handle.close();
  t.true((await root.lstat(rel))?.isFile());
  const names = readdirSync(Buffer.from(dir), { encoding: "buffer" });
  t.is(names.length, 1);
  t.true(names[0]?.equals(dirName));
  const inner = readdirSync(Buffer.concat([Buffer.from(`${dir}/`), dirName]), {
    encoding: "buffer",
  });
  t.true(inner[0]?.equals(fileName));
  t.true(root.absolute(rel).equals(Buffer.concat([Buffer.from(`${dir}/`), rel])));
  // pathForBlobName output is accepted as is.
  const fromBlob = pathForBlobName("pre/x/%FF.bin", "pre");
  await root.ensureParents(fromBlob);
  await (await root.createFile(fromBlob, 0o644)).close();
  t.true((await root.lstat(fromBlob))?.isFile());
});

test("setAttributes: owner, mode incl. sticky, mtime; symlink itself, not its target", async (t) => {
  const dir = await tempDir(t);
  const root = await TargetRoot.open(dir);
  t.teardown(() => root.close());
  const uid = isRoot ? 1234 : (process.getuid?.() ?? 0);
  const gid = isRoot ? 5678 : (process.getgid?.() ?? 0);
  await root.mkdir(b("sticky"), 0o755);
  await root.setAttributes(b("sticky"), { uid, gid, mode: 0o41777, mtimeSec: 1_000_000_000 });
  let st = lstatSync(`${dir}/sticky`);
  t.is(st.mode & 0o7777, 0o1777);
  t.is(st.uid, uid);
  t.is(st.gid, gid);
  t.is(st.mtimeMs, 1_000_000_000_000);
  t.is(st.atimeMs, 1_000_000_000_000);

  await (await root.createFile(b("f"), 0o600)).close();
  await root.setAttributes(b("f"), { uid, gid, mode: 0o640, mtimeSec: 1_500_000_000.25 });
  st = lstatSync(`${dir}/f`);
  t.is(st.mode & 0o7777, 0o640);
  t.is(st.mtimeMs, 1_500_000_000_250);

  writeFileSync(`${dir}/target`, "x");
  const before = lstatSync(`${dir}/target`);
  await root.symlink(b("link"), b("target"));
  await root.setAttributes(b("link"), { uid, gid, mode: 0o600, mtimeSec: 1_200_000_000 });
  const link = lstatSync(`${dir}/link`);
  t.is(link.uid, uid);
  t.is(link.gid, gid);
  t.is(link.mtimeMs, 1_200_000_000_000);
  const after = lstatSync(`${dir}/target`);
  t.is(after.mode, before.mode);
  t.is(after.mtimeMs, before.mtimeMs);
  t.is(after.uid, before.uid);

  await t.throwsAsync(root.setAttributes(b("missing"), { uid, gid, mode: 0o644, mtimeSec: 1 }), {
    instanceOf: FsOperationError,
    code: "ENOENT",
  });
});

test("setAttributes sets setuid after chown (chown would clear it)", async (t) => {
  if (!isRoot) {
    t.pass("needs root");
    return;
  }
  const dir = await tempDir(t);
  const root = await TargetRoot.open(dir);
  t.teardown(() => root.close());
  await (await root.createFile(b("suid"), 0o755)).close();
  await root.setAttributes(b("suid"), { uid: 42, gid: 42, mode: 0o4755, mtimeSec: 1 });
  const st = lstatSync(`${dir}/suid`);
  t.is(st.mode & 0o7777, 0o4755);
  t.is(st.uid, 42);
});

test("ensureParents creates missing directories and caches verified ones", async (t) => {
  const dir = await tempDir(t);
  const root = await TargetRoot.open(dir);
  t.teardown(() => root.close());
  await root.ensureParents(b("x/y/z/file"));
  t.true(statSync(`${dir}/x/y/z`).isDirectory());
  t.is(statSync(`${dir}/x/y/z`).mode & 0o777, 0o755);
  await t.notThrowsAsync(root.ensureParents(b("x/y/z/file"))); // idempotent
  await root.ensureParents(b("top-level-file")); // no parents: nothing to do

  const count = 1000;
  for (let i = 0; i < count; i++) {
    const rel = b(`many/sub/f${i}`);
    await root.ensureParents(rel);
    await (await root.createFile(rel, 0o644)).close();
  }
  t.is(readdirSync(`${dir}/many/sub`).length, count);

  // Concurrent ensureParents of the same new tree (EEXIST races) all succeed.
  await Promise.all(
    Array.from({ length: 20 }, (_, i) => root.ensureParents(b(`race/a/b/c/f${i}`))),
  );
  t.true(statSync(`${dir}/race/a/b/c`).isDirectory());
});
