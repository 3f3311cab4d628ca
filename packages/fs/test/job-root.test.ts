import { closeSync, constants } from "node:fs";
import { lstat, mkdir, readFile, rename, symlink, writeFile } from "node:fs/promises";
import { join } from "node:path";
import test from "ava";
import type { ExecutionContext } from "ava";
import { FsOperationError } from "@hsmfleet/core";
import {
  JobRoot,
  UnsafePathError,
  openBeneath,
  readSmallFile,
  setOpenat2Disabled,
  usesOpenat2,
} from "../src/index.js";
import { tempDir } from "./helpers.js";

const b = (s: string) => Buffer.from(s);

/** A root with `a/b/file` inside and `outside/file` next to it. */
const fixture = async (t: ExecutionContext) => {
  const dir = await tempDir(t);
  const root = join(dir, "root");
  const outside = join(dir, "outside");
  await mkdir(join(root, "a/b"), { recursive: true });
  await mkdir(outside);
  await writeFile(join(root, "a/b/file"), "inside");
  await writeFile(join(outside, "file"), "OUTSIDE");
  const jr = await JobRoot.open(root);
  t.teardown(() => jr.close());
  return { dir, root, outside, jr };
};

test("openat2 is probed on this kernel", (t) => {
  setOpenat2Disabled(false);
  t.log(`openat2 in use: ${usesOpenat2()}`);
  t.is(typeof usesOpenat2(), "boolean");
});

for (const fallback of [false, true]) {
  const mode = fallback ? "openat fallback" : "openat2";

  test.serial(
    `[${mode}] a parent swapped for a symlink is never followed, for reads and writes`,
    async (t) => {
      setOpenat2Disabled(fallback);
      t.teardown(() => setOpenat2Disabled(false));
      const { root, outside, jr } = await fixture(t);
      const { fd, stat } = await jr.openBeneath(b("a/b/file"), constants.O_RDONLY);
      t.true(fd > 2);
      t.is(stat.size, 6);
      closeSync(fd);
      await rename(join(root, "a/b"), join(root, "a/b.real"));
      await symlink(outside, join(root, "a/b"));
      const refused = { instanceOf: UnsafePathError };
      await t.throwsAsync(jr.openBeneath(b("a/b/file"), constants.O_RDONLY), refused);
      await t.throwsAsync(
        jr.openBeneath(b("a/b/new"), constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL),
        refused,
      );
      await t.throwsAsync(jr.mkdirs(b("a/b/c/d")), refused);
      await t.throwsAsync(jr.mkdir(b("a/b/dir"), 0o755), refused);
      await t.throwsAsync(jr.symlink(b("a/b/lnk"), b("/etc")), refused);
      await t.throwsAsync(jr.unlink(b("a/b/file")), refused);
      await t.throwsAsync(jr.setXattr(b("a/b/file"), "user.x", b("1")), refused);
      await t.throwsAsync(
        jr.setAttributes(b("a/b/file"), { uid: 0, gid: 0, mode: 0o777, mtimeSec: 1 }),
        refused,
      );
      await t.throwsAsync(jr.lstat(b("a/b/file")), refused);
      const small = await readSmallFile(b("a/b/file"), 100, { rootFd: jr.fd });
      t.like(small, { ok: false, code: "ELOOP" });
      // The error names the component that is a symlink.
      const err = await t.throwsAsync(jr.openBeneath(b("a/b/file"), constants.O_RDONLY));
      t.regex(err.message, /root\/a\/b: is a symlink/);
      // Nothing outside changed.
      t.is(await readFile(join(outside, "file"), "utf8"), "OUTSIDE");
      t.is((await lstat(join(outside, "file"))).mode & 0o777, 0o644);
    },
  );

  test.serial(
    `[${mode}] '..', absolute and empty segments are refused; the final symlink is not followed`,
    async (t) => {
      setOpenat2Disabled(fallback);
      t.teardown(() => setOpenat2Disabled(false));
      const { root, outside, jr } = await fixture(t);
      for (const bad of [
        "../outside/file",
        "a/../../outside/file",
        "/etc/passwd",
        "a//b",
        "a/./b",
      ]) {
        await t.throwsAsync(
          jr.openBeneath(b(bad), constants.O_RDONLY),
          { instanceOf: UnsafePathError },
          bad,
        );
        await t.throwsAsync(
          openBeneath(jr.fd, b(bad), constants.O_RDONLY),
          { instanceOf: UnsafePathError },
          bad,
        );
      }
      await symlink(join(outside, "file"), join(root, "a/last"));
      await t.throwsAsync(jr.openBeneath(b("a/last"), constants.O_RDONLY), {
        instanceOf: UnsafePathError,
      });
      // Exclusive creation refuses a planted symlink and leaves its target alone.
      await t.throwsAsync(jr.writeNewFile(b("a/last"), b("job id\n")), {
        instanceOf: FsOperationError,
        code: "EEXIST",
      });
      t.is(await readFile(join(outside, "file"), "utf8"), "OUTSIDE");
      // setAttributes on a symlink changes the link itself, not its target.
      await jr.setAttributes(b("a/last"), { uid: 0, gid: 0, mode: 0o777, mtimeSec: 1_000_000 });
      t.is((await lstat(join(outside, "file"))).mode & 0o777, 0o644);
      t.is(Math.round((await lstat(join(root, "a/last"))).mtimeMs / 1000), 1_000_000);
      // renameNoReplace never replaces what is there.
      await writeFile(join(root, "a/one"), "1");
      await t.throwsAsync(jr.renameNoReplace(b("a/one"), b("a/last")), { code: "EEXIST" });
      await jr.renameNoReplace(b("a/one"), b("a/two"));
      t.is(await readFile(join(root, "a/two"), "utf8"), "1");
    },
  );

  test.serial(`[${mode}] create, stat, xattrs and attributes beneath the root`, async (t) => {
    setOpenat2Disabled(fallback);
    t.teardown(() => setOpenat2Disabled(false));
    const { root, jr } = await fixture(t);
    await jr.mkdirs(b("x/y/z"), 0o755);
    t.true((await lstat(join(root, "x/y/z"))).isDirectory());
    await jr.writeNewFile(b("x/y/z/f"), b("hello"));
    const st = await jr.lstat(b("x/y/z/f"));
    t.is(st?.size, 5);
    t.is(await jr.lstat(b("x/missing/f")), undefined);
    await jr.setXattr(b("x/y/z/f"), "user.hsmfleet.test", b("value"));
    t.deepEqual(await jr.getXattr(b("x/y/z/f"), "user.hsmfleet.test"), b("value"));
    t.is(await jr.getXattr(b("x/y/z/f"), "user.absent"), undefined);
    await jr.setAttributes(b("x/y/z/f"), {
      uid: 1234,
      gid: 5678,
      mode: 0o4750,
      mtimeSec: 1_500_000_000.25,
    });
    const s = await lstat(join(root, "x/y/z/f"));
    t.is(s.uid, 1234);
    t.is(s.gid, 5678);
    t.is(s.mode & 0o7777, 0o4750);
    t.is(s.mtimeMs, 1_500_000_000_250);
    const { handle, stat } = await jr.openFile(b("x/y/z/f"), constants.O_RDONLY);
    t.is(stat.ino, BigInt(s.ino));
    t.is((await handle.readFile()).toString(), "hello");
    await handle.close();
    const small = await readSmallFile(b("x/y/z/f"), 100, { rootFd: jr.fd });
    t.true(small.ok && small.data.toString() === "hello" && small.ino === BigInt(s.ino));
    await jr.unlink(b("x/y/z/f"));
    t.is(await jr.lstat(b("x/y/z/f")), undefined);
  });
}
