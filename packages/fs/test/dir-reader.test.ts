import { execFile, spawnSync } from "node:child_process";
import {
  chmodSync,
  chownSync,
  lchownSync,
  linkSync,
  lstatSync,
  mkdirSync,
  readdirSync,
  symlinkSync,
  truncateSync,
  utimesSync,
  writeFileSync,
} from "node:fs";
import { mkdir, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { promisify } from "node:util";

import test from "ava";

import { EntryType, FsOperationError, HSM_COMPAT, encodeHsmAttrs } from "@hsmfleet/core";

import type { DirEntry, DirReader } from "../src/index.js";
import { DirBatch, isPlainRecord, openDir, setXattr, statEntry } from "../src/index.js";
import { isRoot, pathIn, tempDir } from "./helpers.js";

const execFileAsync = promisify(execFile);

const readAll = async (reader: DirReader): Promise<DirEntry[][]> => {
  const batches: DirEntry[][] = [];
  try {
    for (let batch = await reader.read(); batch !== null; batch = await reader.read()) {
      batches.push(batch);
    }
  } finally {
    await reader.close();
  }
  return batches;
};

const byName = (entries: DirEntry[]): Map<string, DirEntry> =>
  new Map(entries.map((e) => [e.name.toString("hex"), e]));

const hex = (name: Buffer | string): string => Buffer.from(name).toString("hex");

/** The DirEntry stat fields fs.lstatSync reports for the same path (floor division for mtime). */
const expectedStat = (path: Buffer) => {
  const s = lstatSync(path, { bigint: true });
  const ns = s.mtimeNs;
  const sec = ns >= 0n ? ns / 1_000_000_000n : -((-ns + 999_999_999n) / 1_000_000_000n);
  return {
    size: Number(s.size),
    mode: Number(s.mode),
    uid: Number(s.uid),
    gid: Number(s.gid),
    nlink: Number(s.nlink),
    ino: s.ino,
    mtimeSec: Number(sec),
    mtimeNsec: Number(ns - sec * 1_000_000_000n),
  };
};

const statFields = (e: DirEntry) => ({
  size: e.size,
  mode: e.mode,
  uid: e.uid,
  gid: e.gid,
  nlink: e.nlink,
  ino: e.ino,
  mtimeSec: e.mtimeSec,
  mtimeNsec: e.mtimeNsec,
});

const hsmValue = (flags: number, archiveId: bigint, archiveVersion = 0n): Buffer =>
  encodeHsmAttrs({ compat: HSM_COMPAT, flags, archiveId, archiveVersion });

const NON_UTF8 = Buffer.from([0x66, 0xff, 0x66]);
const ODD_NAMES = ["with space", "new\nline", "100%done", "%s%n%p", "tab\tand 'quote'"];

test("openDir reports lstat fields, types and raw names exactly as fs.lstat does", async (t) => {
  const dir = await tempDir(t);
  const small = pathIn(dir, "small");
  writeFileSync(small, "0123456789");
  chmodSync(small, 0o640);
  chownSync(small, 1234, 5678);
  utimesSync(small, 1_600_000_000, 1_600_000_000.25);
  const big = pathIn(dir, "big-sparse");
  writeFileSync(big, "");
  truncateSync(big, 5 * 2 ** 32 + 7); // size needs the high 32 bits
  chownSync(big, 4_000_000_000, 3_000_000_000); // ids above 2^31 stay unsigned
  const old = pathIn(dir, "before-1970");
  writeFileSync(old, "x");
  // Negative seconds (i64). Node's utimes maps negative times to "now", so use touch(1).
  const touch = spawnSync("touch", ["-d", "@-1000.5", join(dir, "before-1970")]);
  t.is(touch.status, 0, `touch failed: ${touch.stderr?.toString()}`);
  const hardlink = pathIn(dir, "hardlink-source");
  writeFileSync(hardlink, "hl");
  linkSync(hardlink, pathIn(dir, "hardlink-second"));
  mkdirSync(pathIn(dir, "subdir"), { mode: 0o750 });
  writeFileSync(pathIn(dir, "subdir/inner"), "not listed");
  symlinkSync("subdir", pathIn(dir, "link-to-dir"));
  lchownSync(pathIn(dir, "link-to-dir"), 42, 43);
  symlinkSync("/nonexistent/target", pathIn(dir, "dangling"));
  const mkfifo = spawnSync("mkfifo", [join(dir, "fifo")]);
  t.is(mkfifo.status, 0, `mkfifo failed: ${mkfifo.stderr?.toString()}`);
  writeFileSync(pathIn(dir, NON_UTF8), "nonutf8");
  for (const name of ODD_NAMES) writeFileSync(pathIn(dir, name), name);

  const batches = await readAll(await openDir(Buffer.from(dir), { batchSize: 3 }));
  const entries = batches.flat();
  t.true(batches.every((b) => b.length > 0 && b.length <= 3));

  const expectedNames = readdirSync(dir, { encoding: "buffer" }).map(hex).sort();
  t.deepEqual(entries.map((e) => hex(e.name)).sort(), expectedNames);
  t.is(expectedNames.length, 15);
  t.false(entries.some((e) => e.name.equals(Buffer.from(".")) || e.name.equals(Buffer.from(".."))));

  for (const e of entries) {
    t.deepEqual(statFields(e), expectedStat(pathIn(dir, e.name)), `stat of ${hex(e.name)}`);
    t.is(e.error, undefined);
    t.is(e.hsm, undefined);
  }

  const get = (name: Buffer | string): DirEntry => {
    const e = byName(entries).get(hex(name));
    if (!e) throw new Error(`entry ${String(name)} missing`);
    return e;
  };
  t.like(get("small"), { type: EntryType.File, size: 10, mode: 0o100640, uid: 1234, gid: 5678 });
  t.is(get("small").mtimeSec, 1_600_000_000);
  t.is(get("small").mtimeNsec, 250_000_000);
  t.like(get("big-sparse"), {
    type: EntryType.File,
    size: 5 * 2 ** 32 + 7,
    uid: 4_000_000_000,
    gid: 3_000_000_000,
  });
  t.is(get("before-1970").mtimeSec, -1001);
  t.is(get("before-1970").mtimeNsec, 500_000_000);
  t.is(get("hardlink-source").nlink, 2);
  t.is(get("hardlink-source").ino, get("hardlink-second").ino);
  t.like(get("subdir"), { type: EntryType.Directory, mode: 0o40750 });
  // The symlink to a directory is reported as the link itself, never followed.
  t.like(get("link-to-dir"), { type: EntryType.Symlink, size: "subdir".length, uid: 42, gid: 43 });
  t.is(get("link-to-dir").mode & 0o170000, 0o120000);
  t.not(get("link-to-dir").ino, get("subdir").ino);
  t.like(get("dangling"), { type: EntryType.Symlink, size: "/nonexistent/target".length });
  t.like(get("fifo"), { type: EntryType.Other, size: 0 });
  t.is(get("fifo").mode & 0o170000, 0o010000);
  t.like(get(NON_UTF8), { type: EntryType.File, size: 7 });
  t.true(get(NON_UTF8).name.equals(NON_UTF8));
  for (const name of ODD_NAMES) {
    t.like(get(name), { type: EntryType.File, size: Buffer.byteLength(name) });
  }
});

test("openDir on a directory with a non-UTF-8 path and odd characters", async (t) => {
  const dir = await tempDir(t);
  const weird = pathIn(dir, Buffer.concat([Buffer.from("d \n%"), NON_UTF8]));
  mkdirSync(weird);
  writeFileSync(Buffer.concat([weird, Buffer.from("/child")]), "abc");
  const entries = (await readAll(await openDir(weird))).flat();
  t.is(entries.length, 1);
  t.true(entries[0]?.name.equals(Buffer.from("child")));
  t.is(entries[0]?.size, 3);
});

test("an empty directory yields null on the first read, and again after that", async (t) => {
  const dir = await tempDir(t);
  const reader = await openDir(Buffer.from(dir));
  t.is(await reader.read(), null);
  t.is(await reader.read(), null);
  await reader.close();
  await reader.close(); // idempotent
  await t.throwsAsync(reader.read(), {
    instanceOf: FsOperationError,
    code: "EBADF",
    message: /^readdir /,
  });
});

test("10,000 files read with batchSize 1000 come in 10 batches, each name exactly once", async (t) => {
  const dir = await tempDir(t);
  const expected = new Set<string>();
  const names = Array.from({ length: 10_000 }, (_, i) => `f${i}`);
  for (let i = 0; i < names.length; i += 500) {
    await Promise.all(names.slice(i, i + 500).map((n) => writeFile(join(dir, n), "")));
  }
  for (const n of names) expected.add(n);

  const batches = await readAll(await openDir(Buffer.from(dir), { batchSize: 1000 }));
  t.is(batches.length, 10);
  t.true(batches.every((b) => b.length === 1000));
  const seen = new Set<string>();
  for (const e of batches.flat()) {
    const name = e.name.toString("latin1");
    t.false(seen.has(name), `duplicate ${name}`);
    seen.add(name);
    t.is(e.type, EntryType.File);
  }
  t.is(seen.size, 10_000);
  t.deepEqual([...seen].sort(), [...expected].sort());
});

test("concurrent read() calls on one reader are serialized", async (t) => {
  const dir = await tempDir(t);
  for (let i = 0; i < 50; i++) writeFileSync(join(dir, `n${i}`), "");
  const reader = await openDir(Buffer.from(dir), { batchSize: 7 });
  const results = await Promise.all(Array.from({ length: 10 }, () => reader.read()));
  const closed = reader.close();
  const names = results.flatMap((b) => b ?? []).map((e) => e.name.toString());
  t.is(names.length, 50);
  t.is(new Set(names).size, 50);
  // 50 entries in batches of 7: 8 batches, then null.
  t.deepEqual(
    results.map((b) => b?.length ?? null),
    [7, 7, 7, 7, 7, 7, 7, 1, null, null],
  );
  await closed;
});

test("hsm attributes are decoded from trusted.hsm and from a configurable user.hsm", async (t) => {
  const dir = await tempDir(t);
  for (const xattr of ["trusted.hsm", "user.hsm"]) {
    const sub = join(dir, xattr);
    mkdirSync(sub);
    const archived = pathIn(sub, "archived");
    writeFileSync(archived, "data");
    await setXattr(archived, xattr, hsmValue(0xd, 1n));
    const versioned = pathIn(sub, "versioned");
    writeFileSync(versioned, "data");
    await setXattr(versioned, xattr, hsmValue(0x9, 3n, 0x1_0000_0002n));
    writeFileSync(pathIn(sub, "plain"), "data");
    const d = pathIn(sub, "dir-with-attr");
    mkdirSync(d);
    await setXattr(d, xattr, hsmValue(0xd, 1n)); // only regular files are looked at
    const short = pathIn(sub, "short-value");
    writeFileSync(short, "data");
    await setXattr(short, xattr, Buffer.alloc(8, 1));

    const entries = byName(
      (await readAll(await openDir(Buffer.from(sub), { hsmXattr: xattr }))).flat(),
    );
    const get = (name: string): DirEntry => {
      const e = entries.get(hex(name));
      if (!e) throw new Error(`missing ${name}`);
      return e;
    };
    t.deepEqual(
      get("archived").hsm,
      { compat: HSM_COMPAT, flags: 0xd, archiveId: 1n, archiveVersion: 0n },
      xattr,
    );
    t.is(get("archived").hsm?.flags, 0xd);
    t.is(get("archived").hsm?.archiveId, 1n);
    t.is(get("archived").size, 4);
    t.deepEqual(get("versioned").hsm, {
      compat: HSM_COMPAT,
      flags: 0x9,
      archiveId: 3n,
      archiveVersion: 0x1_0000_0002n,
    });
    t.is(get("plain").hsm, undefined);
    t.is(get("plain").error, undefined);
    t.is(get("dir-with-attr").hsm, undefined);
    t.is(get("dir-with-attr").type, EntryType.Directory);
    // A value too short for struct hsm_attrs: stat fields stay valid, the entry carries the error.
    t.is(get("short-value").hsm, undefined);
    t.deepEqual(get("short-value").error, { operation: "getxattr", code: "EBADMSG" });
    t.is(get("short-value").size, 4);

    // Without an xattr name nothing is read.
    const noXattr = byName((await readAll(await openDir(Buffer.from(sub)))).flat());
    t.is(noXattr.get(hex("archived"))?.hsm, undefined);

    // statEntry reads it the same way.
    const st = await statEntry(archived, { hsmXattr: xattr });
    t.is(st.hsm?.flags, 0xd);
    t.is(st.hsm?.archiveId, 1n);
    t.true(st.name.equals(Buffer.from("archived")));
    t.is((await statEntry(archived)).hsm, undefined);
  }
});

test("xattrs that the file system does not support are treated as absent", async (t) => {
  // procfs answers lgetxattr with ENOTSUP.
  const entries = (
    await readAll(await openDir(Buffer.from(`/proc/${process.pid}`), { hsmXattr: "trusted.hsm" }))
  ).flat();
  const status = entries.find((e) => e.name.equals(Buffer.from("status")));
  t.is(status?.type, EntryType.File);
  t.false(entries.some((e) => e.hsm !== undefined || e.error !== undefined));
});

test("statEntry returns the lstat shape with the last component as name", async (t) => {
  const dir = await tempDir(t);
  const file = pathIn(dir, NON_UTF8);
  writeFileSync(file, "12345");
  const e = await statEntry(file);
  t.true(e.name.equals(NON_UTF8));
  t.deepEqual(statFields(e), expectedStat(file));
  t.is(e.type, EntryType.File);
  symlinkSync(dir, pathIn(dir, "self"));
  const link = await statEntry(pathIn(dir, "self"));
  t.is(link.type, EntryType.Symlink);
  t.is(link.size, dir.length);
  const withSlash = await statEntry(Buffer.from(`${dir}/`));
  t.is(withSlash.type, EntryType.Directory);
  t.true(withSlash.name.equals(Buffer.from(dir.split("/").pop() ?? "")));
  t.true((await statEntry(Buffer.from("/"))).name.equals(Buffer.from("/")));
});

test("statEntry of a removed path rejects with lstat ENOENT", async (t) => {
  const dir = await tempDir(t);
  const file = pathIn(dir, "gone");
  writeFileSync(file, "x");
  await rm(file.toString());
  const err = await t.throwsAsync(statEntry(file), {
    instanceOf: FsOperationError,
    code: "ENOENT",
  });
  t.is(err.operation, "lstat");
  t.is(err.path, `${dir}/gone`);
});

test("openDir errors: ENOENT, ENOTDIR for a file, ENOTDIR for a symlink to a directory, EINVAL for NUL", async (t) => {
  const dir = await tempDir(t);
  const missing = await t.throwsAsync(openDir(pathIn(dir, "missing")), {
    instanceOf: FsOperationError,
    code: "ENOENT",
  });
  t.is(missing.operation, "opendir");
  t.is(missing.path, `${dir}/missing`);
  t.regex(missing.message, /^opendir .*missing: ENOENT/);

  writeFileSync(pathIn(dir, "file"), "x");
  const notDir = await t.throwsAsync(openDir(pathIn(dir, "file")), {
    instanceOf: FsOperationError,
    code: "ENOTDIR",
  });
  t.is(notDir.operation, "opendir");

  // O_DIRECTORY|O_NOFOLLOW on a symlink: Linux checks O_DIRECTORY first and says ENOTDIR (other
  // kernels may say ELOOP). Either way the link is not followed.
  mkdirSync(pathIn(dir, "real"));
  symlinkSync("real", pathIn(dir, "link"));
  const link = await t.throwsAsync(openDir(pathIn(dir, "link")), { instanceOf: FsOperationError });
  t.is(link.operation, "opendir");
  t.true(["ENOTDIR", "ELOOP"].includes(link.code), link.code);
  t.is(link.code, "ENOTDIR", "Linux reports ENOTDIR");

  const nul = await t.throwsAsync(openDir(Buffer.from(`${dir}/a\0b`)), {
    instanceOf: FsOperationError,
    code: "EINVAL",
  });
  t.is(nul.operation, "opendir");
  await t.throwsAsync(statEntry(Buffer.from(`${dir}/a\0b`)), {
    instanceOf: FsOperationError,
    code: "EINVAL",
  });
  await t.throwsAsync(openDir(Buffer.from(dir), { batchSize: 0 }), { instanceOf: RangeError });
});

test("readers dropped without close() release their descriptors when garbage-collected", async (t) => {
  const dir = await tempDir(t);
  for (let i = 0; i < 4; i++) writeFileSync(join(dir, `f${i}`), "");
  const indexUrl = new URL("../src/index.js", import.meta.url).href;
  const script = `
    import { readdirSync } from "node:fs";
    import { openDir } from ${JSON.stringify(indexUrl)};
    const fds = () => readdirSync("/proc/self/fd").length;
    const before = fds();
    let readers = [];
    for (let i = 0; i < 200; i++) {
      const reader = await openDir(Buffer.from(process.env.HSMFLEET_TEST_DIR), { batchSize: 1 });
      await reader.read(); // mid-directory: the DIR stays open
      readers.push(reader);
    }
    const open = fds();
    readers = [];
    for (let i = 0; i < 10 && fds() > before + 5; i++) {
      globalThis.gc();
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    console.log(JSON.stringify({ before, open, after: fds() }));`;
  const { stdout } = await execFileAsync(
    process.execPath,
    ["--expose-gc", "--input-type=module", "-e", script],
    { env: { ...process.env, HSMFLEET_TEST_DIR: dir } },
  );
  const { before, open, after } = JSON.parse(stdout.trim()) as Record<string, number>;
  t.true((open ?? 0) - (before ?? 0) >= 200, stdout);
  t.true((after ?? Infinity) - (before ?? 0) <= 5, stdout);
});

const rootOnly = isRoot ? test : test.skip;
rootOnly(
  "openDir of a chmod 000 directory rejects EACCES for an unprivileged user (runs as uid 65534; skipped unless root)",
  async (t) => {
    const dir = await tempDir(t);
    const locked = join(dir, "locked");
    await mkdir(locked);
    writeFileSync(join(locked, "secret"), "x");
    chmodSync(locked, 0o000);
    const indexUrl = new URL("../src/index.js", import.meta.url).href;
    const script = `
      import { openDir } from ${JSON.stringify(indexUrl)};
      try {
        const reader = await openDir(Buffer.from(process.env.HSMFLEET_TEST_DIR));
        await reader.close();
        console.log(JSON.stringify({ opened: true }));
      } catch (err) {
        console.log(JSON.stringify({ name: err.name, operation: err.operation, code: err.code }));
      }`;
    const { stdout } = await execFileAsync(
      process.execPath,
      ["--input-type=module", "-e", script],
      {
        uid: 65534,
        gid: 65534,
        cwd: "/",
        env: { ...process.env, HSMFLEET_TEST_DIR: locked },
      },
    );
    t.deepEqual(JSON.parse(stdout.trim()), {
      name: "FsOperationError",
      operation: "opendir",
      code: "EACCES",
    });
  },
);
if (!isRoot) {
  test("EACCES check needs root (to run a child as uid 65534): skipped", (t) => {
    t.log("not running as root: the EACCES test was skipped");
    t.pass();
  });
}

test("entries carry their last access time (policies order releases by it)", async (t) => {
  const dir = await tempDir(t);
  writeFileSync(join(dir, "old"), "x");
  writeFileSync(join(dir, "new"), "y");
  utimesSync(join(dir, "old"), 1_000_000_000, 1_500_000_000);
  utimesSync(join(dir, "new"), 1_700_000_000, 1_500_000_000);
  const entries = (await readAll(await openDir(Buffer.from(dir)))).flat();
  const byName = new Map(entries.map((e) => [e.name.toString(), e]));
  t.is(byName.get("old")?.atimeSec, 1_000_000_000);
  t.is(byName.get("new")?.atimeSec, 1_700_000_000);
  t.is(byName.get("old")?.mtimeSec, 1_500_000_000);
});

test("readPacked gives the batches read() gives, read in place: every field, the HSM flags and version, paths", async (t) => {
  const dir = await tempDir(t);
  const xattr = "user.hsm";
  const files: Array<[string, Buffer | undefined]> = [
    ["archived", hsmValue(0xd, 1n)],
    ["versioned", hsmValue(0x9, 3n, 0x1_0000_0002n)],
    ["plain", undefined],
    ["short-value", Buffer.alloc(8, 1)],
  ];
  for (const [name, value] of files) {
    writeFileSync(pathIn(dir, name), name);
    if (value) await setXattr(pathIn(dir, name), xattr, value);
  }
  mkdirSync(pathIn(dir, "sub"));
  symlinkSync("archived", pathIn(dir, "link"));
  writeFileSync(pathIn(dir, NON_UTF8.toString("latin1")), "x");
  writeFileSync(Buffer.concat([Buffer.from(dir), Buffer.from("/"), NON_UTF8]), "odd");
  for (let i = 0; i < 20; i++) writeFileSync(pathIn(dir, `f${i}`), "x".repeat(i));

  const expected = (
    await readAll(await openDir(Buffer.from(dir), { hsmXattr: xattr, batchSize: 7 }))
  ).flat();
  const reader = await openDir(Buffer.from(dir), { hsmXattr: xattr, batchSize: 7 });
  const parent = Buffer.from("a/b");
  let seen = 0;
  let batches = 0;
  try {
    if (!reader.readPacked) return t.fail("the native reader offers packed batches");
    for (let b = await reader.readPacked(); b !== null; b = await reader.readPacked()) {
      batches++;
      t.true(b.count <= 7);
      for (let i = 0, off = DirBatch.FIRST; i < b.count; i++, off = b.next(off)) {
        const e = b.entry(off);
        const want = expected[seen++]!;
        t.deepEqual(e, want);
        t.is(b.type(off), want.type);
        t.is(b.size(off), want.size);
        t.is(b.uid(off), want.uid);
        t.is(b.gid(off), want.gid);
        t.is(b.mtimeSec(off), want.mtimeSec);
        t.is(b.mtimeNsec(off), want.mtimeNsec);
        t.is(b.atimeSec(off), want.atimeSec ?? Number.NaN);
        t.is(b.hasHsm(off), want.hsm !== undefined);
        t.is(b.hsmFlags(off), want.hsm?.flags ?? 0);
        t.is(b.hsmArchiveVersion(off), want.hsm?.archiveVersion ?? 0n);
        t.is(b.failed(off), want.error !== undefined);
        t.is(isPlainRecord(b, off), want.type !== EntryType.Directory && want.error === undefined);
        t.true(b.path(off, parent).equals(Buffer.concat([parent, Buffer.from("/"), want.name])));
        t.true(b.path(off, Buffer.alloc(0)).equals(want.name));
      }
    }
  } finally {
    await reader.close();
  }
  t.is(seen, expected.length);
  t.is(batches, Math.ceil(expected.length / 7));
  t.is(seen, 4 + 1 + 1 + 1 + 1 + 20);
});

test("hsmSizes: the HSM xattr is read only of regular files within the size range; the others say hsmUnread", async (t) => {
  const dir = await tempDir(t);
  const xattr = "user.hsm";
  const sizes = [0, 100, 1024, 1025, 4096];
  for (const size of sizes) {
    const p = pathIn(dir, `f${size}`);
    writeFileSync(p, Buffer.alloc(size, 1));
    await setXattr(p, xattr, hsmValue(0x9, 1n));
  }
  mkdirSync(pathIn(dir, "sub"));
  await setXattr(pathIn(dir, "sub"), xattr, hsmValue(0x9, 1n));
  const read = async (hsmSizes?: { min: number; max: number }) =>
    byName((await readAll(await openDir(Buffer.from(dir), { hsmXattr: xattr, hsmSizes }))).flat());

  const all = await read();
  for (const size of sizes) {
    t.is(all.get(hex(`f${size}`))?.hsm?.flags, 0x9);
    t.is(all.get(hex(`f${size}`))?.hsmUnread, undefined);
  }
  const some = await read({ min: 100, max: 1024 });
  for (const size of sizes) {
    const e = some.get(hex(`f${size}`))!;
    const inside = size >= 100 && size <= 1024;
    t.is(e.hsm?.flags, inside ? 0x9 : undefined, `f${size}`);
    t.is(e.hsmUnread, inside ? undefined : true, `f${size}`);
    t.is(e.size, size); // lstat fields are read for every entry
  }
  t.is(some.get(hex("sub"))?.hsmUnread, undefined); // only regular files are concerned
  const open = await read({ min: 1025, max: Infinity });
  t.is(open.get(hex("f4096"))?.hsm?.flags, 0x9);
  t.true(open.get(hex("f1024"))?.hsmUnread);
  // Packed batches say the same.
  const reader = await openDir(Buffer.from(dir), { hsmXattr: xattr, hsmSizes: { min: 0, max: 0 } });
  try {
    const b = (await reader.readPacked!())!;
    for (let i = 0, off = DirBatch.FIRST; i < b.count; i++, off = b.next(off)) {
      const e = b.entry(off);
      t.is(b.hsmUnread(off), e.type === EntryType.File && e.size > 0);
      t.is(b.hsmFlags(off), e.type === EntryType.File && e.size === 0 ? 0x9 : 0);
    }
  } finally {
    await reader.close();
  }
  await t.throwsAsync(
    () => openDir(Buffer.from(dir), { hsmXattr: xattr, hsmSizes: { min: 2, max: 1 } }),
    {
      instanceOf: RangeError,
    },
  );
});
