import { createHash } from "node:crypto";
import { mkdir, stat, symlink, writeFile } from "node:fs/promises";
import { join } from "node:path";
import test from "ava";
import { tempDir } from "@hsmfleet/testkit";
import { readSmallFile } from "../src/index.js";

const md5 = (b: Buffer): Buffer => createHash("md5").update(b).digest();

test("reads a small file whole, with both fstats and its MD5, in one call", async (t) => {
  const dir = await tempDir();
  t.teardown(() => dir.cleanup());
  const p = join(dir.path, "f");
  const body = Buffer.from("x".repeat(4096));
  await writeFile(p, body);
  const st = await stat(p, { bigint: true });
  const r = await readSmallFile(Buffer.from(p), 8192, { md5: true });
  if (!r.ok) return t.fail(r.code);
  t.true(r.regular);
  t.false(r.tooLarge);
  t.is(r.bytesRead, 4096);
  t.true(r.data.equals(body));
  t.deepEqual(r.md5, md5(body));
  t.is(r.before.size, 4096);
  t.is(BigInt(r.before.mtimeSec) * 1_000_000_000n + BigInt(r.before.mtimeNsec), st.mtimeNs);
  t.is(BigInt(r.before.ctimeSec) * 1_000_000_000n + BigInt(r.before.ctimeNsec), st.ctimeNs);
  t.deepEqual(r.after, r.before);
  const empty = join(dir.path, "empty");
  await writeFile(empty, "");
  const e = await readSmallFile(Buffer.from(empty), 0, { md5: true });
  t.true(e.ok && e.bytesRead === 0 && e.md5?.equals(md5(Buffer.alloc(0))));
});

test("a larger file, a directory, a symlink and a missing path are reported, not read", async (t) => {
  const dir = await tempDir();
  t.teardown(() => dir.cleanup());
  const big = join(dir.path, "big");
  await writeFile(big, Buffer.alloc(5000, 1));
  const r = await readSmallFile(Buffer.from(big), 4096);
  t.true(r.ok && r.tooLarge && r.bytesRead === 0 && r.before.size === 5000);
  await mkdir(join(dir.path, "d"));
  const d = await readSmallFile(Buffer.from(join(dir.path, "d")), 4096);
  t.true(d.ok && !d.regular && d.bytesRead === 0);
  await symlink(big, join(dir.path, "link"));
  const l = await readSmallFile(Buffer.from(join(dir.path, "link")), 8192);
  t.like(l, { ok: false, code: "ELOOP", syscall: "open" }, "symlinks are not followed");
  const m = await readSmallFile(Buffer.from(join(dir.path, "missing")), 10);
  t.like(m, { ok: false, code: "ENOENT", syscall: "open" });
  await t.throwsAsync(readSmallFile(Buffer.from("a\0b"), 10), { instanceOf: TypeError });
});

test("reads asked for together are coalesced into shared jobs and each gets its own file", async (t) => {
  const dir = await tempDir();
  t.teardown(() => dir.cleanup());
  const paths = await Promise.all(
    Array.from({ length: 37 }, async (_, i) => {
      const p = join(dir.path, `f${i}`);
      await writeFile(p, `file number ${i} `.repeat(i + 1));
      return p;
    }),
  );
  const missing = join(dir.path, "missing");
  const results = await Promise.all(
    [...paths, missing].map((p) => readSmallFile(Buffer.from(p), 1024, { md5: true })),
  );
  for (const [i, r] of results.slice(0, -1).entries()) {
    const want = Buffer.from(`file number ${i} `.repeat(i + 1));
    if (!r.ok) return t.fail(r.code);
    t.true(r.data.equals(want), `f${i}`);
    t.deepEqual(r.md5, md5(want));
  }
  t.like(results.at(-1), { ok: false, code: "ENOENT" });
});
