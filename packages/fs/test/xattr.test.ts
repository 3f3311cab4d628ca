import { mkdirSync, symlinkSync, writeFileSync } from "node:fs";

import test from "ava";

import { FsOperationError, HSM_COMPAT, decodeHsmAttrs, encodeHsmAttrs } from "@hsmfleet/core";

import { getXattr, removeXattr, setXattr } from "../src/index.js";
import { pathIn, tempDir } from "./helpers.js";

const hsm = encodeHsmAttrs({ compat: HSM_COMPAT, flags: 0xd, archiveId: 1n, archiveVersion: 0n });

test("set, get and remove trusted.hsm and user.hsm", async (t) => {
  const dir = await tempDir(t);
  const file = pathIn(dir, "f");
  writeFileSync(file, "x");
  for (const name of ["trusted.hsm", "user.hsm"]) {
    t.is(await getXattr(file, name), undefined);
    await setXattr(file, name, hsm);
    const value = await getXattr(file, name);
    t.true(value?.equals(hsm), name);
    t.deepEqual(decodeHsmAttrs(value ?? Buffer.alloc(0)), {
      compat: HSM_COMPAT,
      flags: 0xd,
      archiveId: 1n,
      archiveVersion: 0n,
    });
    await setXattr(file, name, Buffer.from("replaced"));
    t.is((await getXattr(file, name))?.toString(), "replaced");
    await removeXattr(file, name);
    t.is(await getXattr(file, name), undefined);
    const err = await t.throwsAsync(removeXattr(file, name), {
      instanceOf: FsOperationError,
      code: "ENODATA",
    });
    t.is(err.operation, "removexattr");
  }
});

test("empty and multi-kilobyte values round-trip", async (t) => {
  const dir = await tempDir(t);
  const file = pathIn(dir, "f");
  writeFileSync(file, "x");
  await setXattr(file, "user.empty", Buffer.alloc(0));
  const empty = await getXattr(file, "user.empty");
  t.true(Buffer.isBuffer(empty));
  t.is(empty?.length, 0);
  const big = Buffer.alloc(3000);
  for (let i = 0; i < big.length; i++) big[i] = (i * 7) & 0xff;
  await setXattr(file, "user.big", big);
  t.true((await getXattr(file, "user.big"))?.equals(big));
});

test("raw paths: non-UTF-8 bytes, spaces, newline and %", async (t) => {
  const dir = await tempDir(t);
  const file = pathIn(dir, Buffer.from([0x66, 0xff, 0x20, 0x0a, 0x25, 0x73]));
  writeFileSync(file, "x");
  await setXattr(file, "trusted.hsm", hsm);
  t.true((await getXattr(file, "trusted.hsm"))?.equals(hsm));
});

test("symlinks are never followed", async (t) => {
  const dir = await tempDir(t);
  const target = pathIn(dir, "target");
  writeFileSync(target, "x");
  const link = pathIn(dir, "link");
  symlinkSync("target", link);
  await setXattr(link, "trusted.hsm", hsm); // on the link itself (root may set trusted.* on links)
  t.true((await getXattr(link, "trusted.hsm"))?.equals(hsm));
  t.is(await getXattr(target, "trusted.hsm"), undefined);
  await setXattr(target, "user.hsm", hsm);
  t.is(await getXattr(link, "user.hsm"), undefined);
  // user.* is not allowed on symlinks at all: the error proves lsetxattr did not follow the link.
  const err = await t.throwsAsync(setXattr(link, "user.hsm", hsm), {
    instanceOf: FsOperationError,
  });
  t.is(err.operation, "setxattr");
  t.is(err.code, "EPERM");
});

test("errors carry operation, display path and errno code", async (t) => {
  const dir = await tempDir(t);
  const missing = pathIn(dir, Buffer.from([0x6d, 0xff]));
  const get = await t.throwsAsync(getXattr(missing, "trusted.hsm"), {
    instanceOf: FsOperationError,
    code: "ENOENT",
  });
  t.is(get.operation, "getxattr");
  t.is(get.path, `${dir}/m\\xff`);
  t.regex(get.message, /^getxattr .*: ENOENT/);
  const set = await t.throwsAsync(setXattr(missing, "trusted.hsm", hsm), {
    instanceOf: FsOperationError,
    code: "ENOENT",
  });
  t.is(set.operation, "setxattr");
  const remove = await t.throwsAsync(removeXattr(missing, "trusted.hsm"), {
    instanceOf: FsOperationError,
    code: "ENOENT",
  });
  t.is(remove.operation, "removexattr");

  mkdirSync(pathIn(dir, "d"));
  await t.throwsAsync(getXattr(pathIn(dir, "d/x/y"), "user.hsm"), { code: "ENOENT" });
  writeFileSync(pathIn(dir, "file"), "x");
  await t.throwsAsync(getXattr(pathIn(dir, "file/below"), "user.hsm"), { code: "ENOTDIR" });
  // procfs does not support xattrs: only ENODATA means "absent", ENOTSUP is an error here.
  await t.throwsAsync(getXattr(Buffer.from("/proc/self/status"), "user.hsm"), {
    instanceOf: FsOperationError,
    code: "ENOTSUP",
  });
  await t.throwsAsync(setXattr(pathIn(dir, "file"), "bogus.namespace", hsm), {
    instanceOf: FsOperationError,
    code: "ENOTSUP",
  });
  await t.throwsAsync(getXattr(Buffer.from(`${dir}/file\0`), "user.hsm"), {
    instanceOf: FsOperationError,
    code: "EINVAL",
  });
  await t.throwsAsync(getXattr(pathIn(dir, "file"), "user.a\0b"), {
    instanceOf: FsOperationError,
    code: "EINVAL",
  });
});
