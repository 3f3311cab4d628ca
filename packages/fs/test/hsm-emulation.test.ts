import { lstatSync, mkdirSync, statSync, symlinkSync, writeFileSync } from "node:fs";

import test from "ava";
import type { ExecutionContext } from "ava";

import {
  DEFAULT_HSM_XATTR,
  FsOperationError,
  HSM_COMPAT,
  HsmFlag,
  decodeHsmAttrs,
  hsmStateName,
} from "@hsmfleet/core";
import { tempDir as makeTempDir } from "@hsmfleet/testkit";

import {
  HsmEmulation,
  TargetRoot,
  getXattr,
  isDirtyOrNew,
  setXattr,
  hsmAtAbsolutePaths,
  UnsafePathError,
} from "../src/index.js";

const tempDir = async (t: ExecutionContext): Promise<string> => {
  const dir = await makeTempDir("hsmfleet-hsm-");
  t.teardown(() => dir.cleanup());
  return dir.path;
};

const b = (s: string): Buffer => Buffer.from(s);
const isRoot = process.getuid?.() === 0;
const xattrs = isRoot ? [undefined, "user.hsm"] : ["user.hsm"];

for (const xattr of xattrs) {
  const label = xattr ?? DEFAULT_HSM_XATTR;

  test(`${label}: importReleased makes a sparse released stub`, async (t) => {
    const dir = await tempDir(t);
    const root = await TargetRoot.open(dir);
    const hsm = hsmAtAbsolutePaths(new HsmEmulation(xattr === undefined ? undefined : { xattr }));
    t.is(hsm.xattr, label);
    const rel = b("sub/stub");
    await root.ensureParents(rel);
    await (await root.createFile(rel, 0o644)).close();
    const path = root.absolute(rel);
    t.is(await hsm.state(path), undefined);
    t.false(await hsm.isReleased(path));

    const size = 5 * 1024 * 1024 * 1024 + 123; // 5 GiB + change: no data may be written
    await hsm.importReleased(path, size, 3);
    const st = statSync(path);
    t.is(st.size, size);
    t.is(st.blocks, 0);
    t.deepEqual(await hsm.state(path), {
      compat: HSM_COMPAT,
      flags: 0xd,
      archiveId: 3n,
      archiveVersion: 0n,
    });
    const raw = await getXattr(path, label);
    t.is(raw?.length, 24);
    t.is(decodeHsmAttrs(raw ?? Buffer.alloc(0)).flags, 0xd);
    t.true(await hsm.isReleased(path));
    t.is(hsmStateName(await hsm.state(path)), "released");
    t.false(isDirtyOrNew(await hsm.state(path)));

    // A retry on the same stub is accepted; a file with data is not.
    await hsm.importReleased(path, size, 3);
    t.is(statSync(path).size, size);
    writeFileSync(`${dir}/full`, "data");
    await t.throwsAsync(hsm.importReleased(b(`${dir}/full`), 10, 1), {
      instanceOf: FsOperationError,
      code: "EINVAL",
    });
    const empty = b(`${dir}/empty`);
    writeFileSync(empty, "");
    await hsm.importReleased(empty, 0, 1);
    t.is(statSync(empty).size, 0);
    t.true(await hsm.isReleased(empty));
  });

  test(`${label}: markArchived, setState and isDirtyOrNew`, async (t) => {
    const dir = await tempDir(t);
    const hsm = hsmAtAbsolutePaths(new HsmEmulation(xattr === undefined ? undefined : { xattr }));
    const path = b(`${dir}/f`);
    writeFileSync(path, "restored data");
    await hsm.markArchived(path, 2);
    t.deepEqual(await hsm.state(path), {
      compat: HSM_COMPAT,
      flags: 0x9,
      archiveId: 2n,
      archiveVersion: 0n,
    });
    t.false(await hsm.isReleased(path));
    t.is(hsmStateName(await hsm.state(path)), "archived");
    t.false(isDirtyOrNew(await hsm.state(path)));

    // Restore of a released stub with a NORELEASE policy bit: RELEASED/DIRTY go, policy stays.
    await hsm.setState(path, {
      compat: HSM_COMPAT,
      flags: HsmFlag.Exists | HsmFlag.Archived | HsmFlag.Released | HsmFlag.NoRelease,
      archiveId: 1n,
      archiveVersion: 7n,
    });
    t.true(await hsm.isReleased(path));
    await hsm.markArchived(path, 1);
    const after = await hsm.state(path);
    t.is(after?.flags, 0x9 | HsmFlag.NoRelease);
    t.is(after?.archiveVersion, 7n);

    await hsm.setState(path, { compat: HSM_COMPAT, flags: 0xb, archiveId: 1n, archiveVersion: 0n });
    t.true(isDirtyOrNew(await hsm.state(path)));
    await hsm.setState(path, { compat: HSM_COMPAT, flags: 0, archiveId: 0n, archiveVersion: 0n });
    t.is(hsmStateName(await hsm.state(path)), "new");
    t.true(isDirtyOrNew(await hsm.state(path)));
  });
}

test("isDirtyOrNew", (t) => {
  const attrs = (flags: number) => ({ compat: 1, flags, archiveId: 1n, archiveVersion: 0n });
  t.true(isDirtyOrNew(undefined));
  t.true(isDirtyOrNew(attrs(0)));
  t.true(isDirtyOrNew(attrs(HsmFlag.Exists)));
  t.true(isDirtyOrNew(attrs(HsmFlag.Archived)));
  t.true(isDirtyOrNew(attrs(HsmFlag.Exists | HsmFlag.Dirty)));
  t.true(isDirtyOrNew(attrs(HsmFlag.Exists | HsmFlag.Archived | HsmFlag.Dirty)));
  t.false(isDirtyOrNew(attrs(HsmFlag.Exists | HsmFlag.Archived)));
  t.false(isDirtyOrNew(attrs(HsmFlag.Exists | HsmFlag.Archived | HsmFlag.Released)));
  t.false(isDirtyOrNew(attrs(HsmFlag.Exists | HsmFlag.Archived | HsmFlag.NoRelease)));
});

test("state: undefined without the xattr, EINVAL for a short value, ENOENT when missing", async (t) => {
  const dir = await tempDir(t);
  const hsm = hsmAtAbsolutePaths(new HsmEmulation({ xattr: "user.hsm" }));
  const path = b(`${dir}/f`);
  writeFileSync(path, "x");
  t.is(await hsm.state(path), undefined);
  t.false(await hsm.isReleased(path));
  await setXattr(path, "user.hsm", Buffer.from([1, 2, 3]));
  await t.throwsAsync(hsm.state(path), { instanceOf: FsOperationError, code: "EINVAL" });
  await t.throwsAsync(hsm.state(b(`${dir}/missing`)), {
    instanceOf: FsOperationError,
    code: "ENOENT",
  });
  t.throws(() => new HsmEmulation({ xattr: "" }), { instanceOf: TypeError });
});

test("importReleased and markArchived refuse symlinks and directories", async (t) => {
  const dir = await tempDir(t);
  const hsm = hsmAtAbsolutePaths(new HsmEmulation({ xattr: "user.hsm" }));
  writeFileSync(`${dir}/target`, "");
  symlinkSync("target", `${dir}/link`);
  mkdirSync(`${dir}/d`);
  await t.throwsAsync(hsm.importReleased(b(`${dir}/link`), 100, 1), {
    instanceOf: UnsafePathError,
  });
  await t.throwsAsync(hsm.markArchived(b(`${dir}/link`), 1), {
    instanceOf: FsOperationError,
    code: "EINVAL",
  });
  await t.throwsAsync(hsm.importReleased(b(`${dir}/d`), 100, 1), { instanceOf: FsOperationError });
  await t.throwsAsync(hsm.markArchived(b(`${dir}/d`), 1), { code: "EINVAL" });
  await t.throwsAsync(hsm.importReleased(b(`${dir}/target`), -1, 1), { code: "EINVAL" });
  await t.throwsAsync(hsm.importReleased(b(`${dir}/target`), 1, -1), { code: "EINVAL" });
  t.is(lstatSync(`${dir}/target`).size, 0);
  t.is(await hsm.state(b(`${dir}/target`)), undefined);
});
