import { execFileSync } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { lstat, mkdir, readFile, stat, symlink, writeFile } from "node:fs/promises";
import { join } from "node:path";
import test from "ava";
import type { ExecutionContext } from "ava";
import { FsOperationError, HsmFlag, decodeHsmAttrs, encodeHsmAttrs } from "@hsmfleet/core";
import {
  ARCHIVED_FLAGS,
  JobRoot,
  UnsafePathError,
  getXattr,
  inspectFile,
  setOpenat2Disabled,
  setXattr,
  smallFileJob,
} from "../src/index.js";
import { tempDir } from "./helpers.js";

const b = (s: string) => Buffer.from(s);
const md5 = (d: Uint8Array): Buffer => createHash("md5").update(d).digest();

const fixture = async (t: ExecutionContext) => {
  const dir = await tempDir(t);
  const root = join(dir, "root");
  const outside = join(dir, "outside");
  await mkdir(join(root, "a"), { recursive: true });
  await mkdir(outside);
  await writeFile(join(outside, "file"), "OUTSIDE");
  const jr = await JobRoot.open(root);
  t.teardown(() => jr.close());
  return { root, outside, jr };
};

for (const fallback of [false, true]) {
  const mode = fallback ? "openat walk" : "openat2";

  test.serial(
    `${mode}: one job writes the data, checks its MD5 and sets owner, mode, mtime and xattrs`,
    async (t) => {
      setOpenat2Disabled(fallback);
      t.teardown(() => setOpenat2Disabled(false));
      const { root, jr } = await fixture(t);
      const data = Buffer.concat([randomBytes(100), Buffer.alloc(64 * 1024), randomBytes(3000)]);
      const rel = b("a/f");
      // A new file, sized in the same job (the walk's placeholder).
      await smallFileJob(jr, rel, { createMode: 0o600, size: data.length });
      t.is((await stat(join(root, "a/f"))).size, data.length);
      await setXattr(b(join(root, "a/f")), "user.imp", b("pending etag-1"));
      const uid = process.getuid?.() === 0 ? 1234 : process.getuid!();
      const gid = process.getgid?.() === 0 ? 4321 : process.getgid!();
      const r = await smallFileJob(jr, rel, {
        data,
        sparse: true,
        expectMd5: md5(data),
        attrs: { uid, gid, mode: 0o2640, mtimeSec: 1_600_000_000.25 },
        xattrs: [["user.loc", b("c/blob")]],
        importDone: "user.imp",
        hsmState: {
          xattr: "user.hsm",
          setFlags: ARCHIVED_FLAGS,
          keepFlags: HsmFlag.NoRelease | HsmFlag.NoArchive,
          archiveId: 7,
          compat: 0x11,
        },
        stat: true,
      });
      t.false(r.md5Mismatch);
      t.deepEqual(r.md5, md5(data));
      t.is(r.stat?.size, data.length);
      const p = join(root, "a/f");
      const st = await lstat(p);
      t.true((await readFile(p)).equals(data));
      t.is(st.uid, uid);
      t.is(st.gid, gid);
      t.is(st.mode & 0o7777, 0o2640);
      t.is(st.mtimeMs, 1_600_000_000_250);
      t.is(st.atimeMs, 1_600_000_000_250);
      // The all-zero 4 KiB blocks stayed holes.
      t.true(st.blocks * 512 < data.length);
      t.deepEqual(await getXattr(b(p), "user.loc"), b("c/blob"));
      t.deepEqual(await getXattr(b(p), "user.imp"), b("done etag-1"));
      const hsm = decodeHsmAttrs((await getXattr(b(p), "user.hsm"))!);
      t.is(hsm.flags, ARCHIVED_FLAGS);
      t.is(hsm.archiveId, 7n);
      t.is(hsm.compat, 0x11);
    },
  );

  test.serial(
    `${mode}: the HSM state keeps the old compat, version and no-release flags`,
    async (t) => {
      setOpenat2Disabled(fallback);
      t.teardown(() => setOpenat2Disabled(false));
      const { root, jr } = await fixture(t);
      const p = join(root, "f");
      await writeFile(p, "");
      await setXattr(
        b(p),
        "user.hsm",
        encodeHsmAttrs({
          compat: 3,
          flags: HsmFlag.Released | HsmFlag.Exists | HsmFlag.Archived | HsmFlag.NoRelease,
          archiveId: 2n,
          archiveVersion: 9n,
        }),
      );
      await smallFileJob(jr, b("f"), {
        data: b("x"),
        hsmState: {
          xattr: "user.hsm",
          setFlags: ARCHIVED_FLAGS,
          keepFlags: HsmFlag.NoRelease | HsmFlag.NoArchive,
          archiveId: 2,
          compat: 0x11,
        },
      });
      const hsm = decodeHsmAttrs((await getXattr(b(p), "user.hsm"))!);
      t.deepEqual(hsm, {
        compat: 3,
        flags: ARCHIVED_FLAGS | HsmFlag.NoRelease,
        archiveId: 2n,
        archiveVersion: 9n,
      });
    },
  );

  test.serial(`${mode}: an MD5 mismatch writes nothing and sets nothing`, async (t) => {
    setOpenat2Disabled(fallback);
    t.teardown(() => setOpenat2Disabled(false));
    const { root, jr } = await fixture(t);
    const p = join(root, "f");
    await writeFile(p, "");
    const r = await smallFileJob(jr, b("f"), {
      data: b("hello"),
      expectMd5: md5(b("other")),
      attrs: { uid: 0, gid: 0, mode: 0o777, mtimeSec: 1 },
      xattrs: [["user.loc", b("x")]],
    });
    t.true(r.md5Mismatch);
    t.deepEqual(r.md5, md5(b("hello")));
    const st = await lstat(p);
    t.is(st.size, 0);
    t.not(st.mode & 0o777, 0o777);
    t.is(await getXattr(b(p), "user.loc"), undefined);
  });

  test.serial(
    `${mode}: a symlink anywhere on the path is refused, nothing outside touched`,
    async (t) => {
      setOpenat2Disabled(fallback);
      t.teardown(() => setOpenat2Disabled(false));
      const { root, outside, jr } = await fixture(t);
      await symlink(outside, join(root, "link"));
      await symlink(join(outside, "file"), join(root, "a/leaf"));
      const job = { data: b("pwned"), attrs: { uid: 0, gid: 0, mode: 0o777, mtimeSec: 1 } };
      await t.throwsAsync(smallFileJob(jr, b("link/file"), job), { instanceOf: UnsafePathError });
      await t.throwsAsync(smallFileJob(jr, b("a/leaf"), job), { instanceOf: UnsafePathError });
      await t.throwsAsync(smallFileJob(jr, b("link/new"), { createMode: 0o600, size: 1 }), {
        instanceOf: UnsafePathError,
      });
      t.is(await readFile(join(outside, "file"), "utf8"), "OUTSIDE");
      t.not((await stat(join(outside, "file"))).mode & 0o777, 0o777);
    },
  );

  test.serial(`${mode}: a FIFO or directory is not written; a taken name is EEXIST`, async (t) => {
    setOpenat2Disabled(fallback);
    t.teardown(() => setOpenat2Disabled(false));
    const { root, jr } = await fixture(t);
    execFileSync("mkfifo", [join(root, "fifo")]);
    const err = await t.throwsAsync(smallFileJob(jr, b("fifo"), { data: b("x") }), {
      instanceOf: FsOperationError,
    });
    t.is(err?.code, "EINVAL");
    t.regex(err?.message ?? "", /fifo/);
    await t.throwsAsync(smallFileJob(jr, b("a"), { data: b("x") }), {
      instanceOf: FsOperationError,
    });
    await writeFile(join(root, "taken"), "keep");
    const taken = await t.throwsAsync(smallFileJob(jr, b("taken"), { createMode: 0o600 }), {
      instanceOf: FsOperationError,
    });
    t.is(taken?.code, "EEXIST");
    t.is(await readFile(join(root, "taken"), "utf8"), "keep");
  });
}

test.serial(
  "inspectFile reads the fstat and several xattrs in one job, absent ones undefined",
  async (t) => {
    const { root, jr } = await fixture(t);
    const p = join(root, "a/f");
    await writeFile(p, "12345");
    await setXattr(b(p), "user.one", b("1"));
    await setXattr(b(p), "user.three", Buffer.alloc(3000, 3));
    const seen = await inspectFile(jr, b("a/f"), ["user.one", "user.two", "user.three"]);
    t.is(seen.stat.size, 5);
    t.is(seen.stat.ino, (await stat(p, { bigint: true })).ino);
    t.deepEqual(seen.xattrs, [b("1"), undefined, Buffer.alloc(3000, 3)]);
    await symlink(p, join(root, "link"));
    await t.throwsAsync(inspectFile(jr, b("link"), []), { instanceOf: UnsafePathError });
    const dir = await t.throwsAsync(inspectFile(jr, b("a"), []), { instanceOf: FsOperationError });
    t.is(dir?.code, "EINVAL");
  },
);

test.serial(
  "sameInode: a file replaced since it was inspected is refused (ESTALE), untouched",
  async (t) => {
    const { root, jr } = await fixture(t);
    const p = join(root, "f");
    await writeFile(p, "old");
    const seen = await inspectFile(jr, b("f"), []);
    await writeFile(join(root, "g"), "new");
    const { rename } = await import("node:fs/promises");
    await rename(join(root, "g"), p);
    const err = await t.throwsAsync(
      smallFileJob(jr, b("f"), {
        data: b("data"),
        sameInode: { dev: seen.stat.dev, ino: seen.stat.ino },
      }),
      { instanceOf: FsOperationError },
    );
    t.is(err?.code, "ESTALE");
    t.is(await readFile(p, "utf8"), "new");
  },
);

test.serial("keepTimes puts back the atime and mtime the open found", async (t) => {
  const { root, jr } = await fixture(t);
  const p = join(root, "f");
  await writeFile(p, "");
  const { utimes } = await import("node:fs/promises");
  await utimes(p, 1_500_000_000.5, 1_400_000_000.25);
  await smallFileJob(jr, b("f"), { data: b("restored"), keepTimes: true });
  const st = await lstat(p);
  t.is(st.atimeMs, 1_500_000_000_500);
  t.is(st.mtimeMs, 1_400_000_000_250);
  t.is(await readFile(p, "utf8"), "restored");
});

for (const [label, atime, mtime, ms] of [
  ["a fractional", 1_500_000_000.5, 1_400_000_000.123456, "1400000000123.456"],
  ["a whole-second", 1_500_000_000, 1_400_000_000, "1400000000000"],
  ["a pre-1970", 1_500_000_000, -1.5, "-1500"],
] as const) {
  test.serial(
    `pendingRestore records ${label} mtime the open found before the data is written, none on an MD5 mismatch`,
    async (t) => {
      const { root, jr } = await fixture(t);
      const p = join(root, "f");
      await writeFile(p, "");
      const { utimes } = await import("node:fs/promises");
      await utimes(p, atime, Math.max(mtime, 0));
      // node:fs takes a negative time for "now": touch sets it.
      if (mtime < 0) execFileSync("touch", ["-m", "-d", `@${mtime}`, p]);
      const pendingRestore = { xattr: "user.restored", jobId: "job-7" };
      // A mismatching MD5: nothing written, no record.
      const bad = await smallFileJob(jr, b("f"), {
        data: b("restored"),
        expectMd5: md5(b("other")),
        keepTimes: true,
        pendingRestore,
      });
      t.true(bad.md5Mismatch);
      t.is(await getXattr(b(p), "user.restored"), undefined);
      await smallFileJob(jr, b("f"), {
        data: b("restored"),
        expectMd5: md5(b("restored")),
        keepTimes: true,
        pendingRestore,
      });
      t.is((await getXattr(b(p), "user.restored"))?.toString(), `pending job-7 ${ms}`);
      const st = await lstat(p);
      t.true(Math.abs(Number(ms) - st.mtimeMs) < 0.001, `${ms} vs ${st.mtimeMs}`);
      t.is(await readFile(p, "utf8"), "restored");
      // The given xattrs replace the record once the file is done.
      await smallFileJob(jr, b("f"), {
        data: b("restored"),
        keepTimes: true,
        pendingRestore,
        xattrs: [["user.restored", b("job-7")]],
      });
      t.is((await getXattr(b(p), "user.restored"))?.toString(), "job-7");
      await t.throwsAsync(smallFileJob(jr, b("f"), { data: b("x"), pendingRestore }), {
        instanceOf: TypeError,
      });
    },
  );
}

test.serial(
  "many inspectFile calls at once go in shared native batches (with small-file jobs); each gets its own result or error",
  async (t) => {
    const { root, jr } = await fixture(t);
    const names = Array.from({ length: 300 }, (_, i) => `a/g${i}`);
    for (const [i, n] of names.entries()) {
      if (i === 11) continue; // missing: ENOENT
      if (i === 12)
        await mkdir(join(root, n)); // a directory: EINVAL
      else await writeFile(join(root, n), Buffer.alloc(i, 1));
    }
    for (const i of [0, 150, 299]) await setXattr(b(join(root, names[i]!)), "user.v", b(`v${i}`));
    const [inspected, written] = await Promise.all([
      Promise.allSettled(names.map((n) => inspectFile(jr, b(n), ["user.v", "user.none"]))),
      Promise.allSettled(
        Array.from({ length: 50 }, (_, i) =>
          smallFileJob(jr, b(`a/h${i}`), { createMode: 0o600, size: i }),
        ),
      ),
    ]);
    inspected.forEach((r, i) => {
      if (i === 11 || i === 12) {
        t.is(r.status, "rejected", names[i]);
        const err = (r as PromiseRejectedResult).reason as FsOperationError;
        t.true(err instanceof FsOperationError);
        t.is(err.code, i === 11 ? "ENOENT" : "EINVAL");
        return;
      }
      t.is(r.status, "fulfilled", names[i]);
      const v = (r as PromiseFulfilledResult<Awaited<ReturnType<typeof inspectFile>>>).value;
      t.is(v.stat.size, i);
      t.deepEqual(
        v.xattrs.map((x) => x?.toString()),
        [[0, 150, 299].includes(i) ? `v${i}` : undefined, undefined],
      );
    });
    t.true(written.every((r) => r.status === "fulfilled"));
    t.is((await stat(join(root, "a/h49"))).size, 49);
  },
);

test.serial(
  "many jobs at once go in shared native batches; each gets its own result or error",
  async (t) => {
    const { root, jr } = await fixture(t);
    await writeFile(join(root, "a/taken-7"), "keep");
    const names = Array.from({ length: 300 }, (_, i) => `a/${i === 7 ? "taken-7" : `f${i}`}`);
    const results = await Promise.allSettled(
      names.map((n, i) => smallFileJob(jr, b(n), { createMode: 0o600, size: i })),
    );
    results.forEach((r, i) => {
      if (i === 7) {
        t.is(r.status, "rejected");
        t.is(((r as PromiseRejectedResult).reason as FsOperationError).code, "EEXIST");
      } else {
        t.is(r.status, "fulfilled", names[i]);
      }
    });
    for (const i of [0, 1, 150, 299]) t.is((await stat(join(root, names[i]!))).size, i);
    t.is(await readFile(join(root, "a/taken-7"), "utf8"), "keep");
  },
);

test.serial(
  "creates in several directories at once, beside writes, each get their own file, size and error",
  async (t) => {
    const { root, jr } = await fixture(t);
    for (const d of ["b", "c", "d"]) await mkdir(join(root, d));
    await writeFile(join(root, "c/taken"), "keep");
    await writeFile(join(root, "a/w"), "");
    const creates = ["b", "c", "d"].flatMap((d) =>
      Array.from({ length: 120 }, (_, i) => `${d}/${d === "c" && i === 5 ? "taken" : `f${i}`}`),
    );
    creates.push("missing/f"); // no parent: ENOENT
    const data = randomBytes(5000);
    const [created, written] = await Promise.all([
      Promise.allSettled(
        creates.map((n, i) => smallFileJob(jr, b(n), { createMode: 0o640, size: i })),
      ),
      Promise.allSettled(
        Array.from({ length: 20 }, () => smallFileJob(jr, b("a/w"), { data, hash: true })),
      ),
    ]);
    created.forEach((r, i) => {
      const n = creates[i]!;
      if (n === "c/taken" || n === "missing/f") {
        t.is(r.status, "rejected", n);
        const code = ((r as PromiseRejectedResult).reason as FsOperationError).code;
        t.is(code, n === "c/taken" ? "EEXIST" : "ENOENT", n);
        return;
      }
      t.is(r.status, "fulfilled", n);
    });
    for (const [i, n] of creates.entries()) {
      if (n === "c/taken" || n === "missing/f") continue;
      const st = await stat(join(root, n));
      t.is(st.size, i, n);
      t.is(st.mode & 0o777, 0o640, n);
    }
    t.is(await readFile(join(root, "c/taken"), "utf8"), "keep");
    for (const r of written) {
      t.is(r.status, "fulfilled");
      t.deepEqual((r as PromiseFulfilledResult<{ md5?: Buffer }>).value.md5, md5(data));
    }
    t.deepEqual(await readFile(join(root, "a/w")), data);
  },
);

test.serial(
  "a file already owned as asked keeps the owner without an fchown; the mode is still set when it differs or asks for setuid/setgid",
  async (t) => {
    const { root, jr } = await fixture(t);
    const p = join(root, "a/own");
    const rel = b("a/own");
    await smallFileJob(jr, rel, { createMode: 0o600 });
    const { uid, gid } = await lstat(p);
    const cases: Array<[number, string]> = [
      [0o644, "another mode"],
      [0o644, "the same mode"],
      [0o4755, "setuid"],
      [0o4755, "setuid again (the write may have cleared it)"],
      [0o600, "back to owner-only"],
    ];
    for (const [mode, what] of cases) {
      const data = randomBytes(100);
      await smallFileJob(jr, rel, {
        data,
        attrs: { uid, gid, mode, mtimeSec: 1_500_000_000 },
      });
      const st = await lstat(p);
      t.is(st.mode & 0o7777, mode, what);
      t.is(st.uid, uid, what);
      t.is(st.gid, gid, what);
      t.is(st.mtimeMs, 1_500_000_000_000, what);
      t.true((await readFile(p)).equals(data), what);
    }
    // Another owner: set (as root), and the mode with it.
    if (process.getuid?.() === 0) {
      await smallFileJob(jr, rel, {
        data: b("x"),
        attrs: { uid: 2345, gid: 5432, mode: 0o640, mtimeSec: 1_500_000_001 },
      });
      const st = await lstat(p);
      t.is(st.uid, 2345);
      t.is(st.gid, 5432);
      t.is(st.mode & 0o7777, 0o640);
    }
  },
);

test("xattrsFirst sets the xattrs before the cut: a failing xattr leaves the size as it was", async (t) => {
  const { root, jr } = await fixture(t);
  const rel = b("a/stub");
  await smallFileJob(jr, rel, { createMode: 0o600 });
  // A fresh stub's record and size in one job: the record is on the file before its size.
  await smallFileJob(jr, rel, {
    xattrs: [
      ["user.loc", b("c/blob")],
      ["user.imp", b("pending e1")],
    ],
    xattrsFirst: true,
    size: 12_345,
  });
  t.is((await stat(join(root, "a/stub"))).size, 12_345);
  t.deepEqual(await getXattr(b(join(root, "a/stub")), "user.loc"), b("c/blob"));
  t.deepEqual(await getXattr(b(join(root, "a/stub")), "user.imp"), b("pending e1"));
  // An xattr that cannot be set (no such namespace) fails the job before the cut...
  const first = await t.throwsAsync(
    smallFileJob(
      jr,
      rel,
      { xattrs: [["bogus.x", b("v")]], xattrsFirst: true, size: 1 },
      "truncate",
    ),
  );
  t.true(first instanceof FsOperationError, String(first));
  t.is((await stat(join(root, "a/stub"))).size, 12_345, "not cut: the xattr came first");
  // ...and without xattrsFirst after it (the default order: size, then xattrs).
  await t.throwsAsync(
    smallFileJob(jr, rel, { xattrs: [["bogus.x", b("v")]], size: 1 }, "truncate"),
  );
  t.is((await stat(join(root, "a/stub"))).size, 1);
});
