import { createHash, randomBytes } from "node:crypto";
import { open, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import test from "ava";
import { tempDir } from "@hsmfleet/testkit";
import { Md5Stream, pwriteAll, writeWholeFile } from "../src/index.js";

const md5 = (b: Uint8Array): Buffer => createHash("md5").update(b).digest();

test("pwriteAndHash writes ranges at their offsets and hashes them in order, fused", async (t) => {
  const dir = await tempDir();
  t.teardown(() => dir.cleanup());
  const p = join(dir.path, "f");
  // 5 MiB + 3 bytes: several 1 MiB pieces per job and a short tail.
  const data = randomBytes(5 * 1024 * 1024 + 3);
  const fh = await open(p, "w+");
  try {
    const s = new Md5Stream();
    const range = 2 * 1024 * 1024 + 1;
    for (let at = 0; at < data.length; at += range) {
      const part = data.subarray(at, Math.min(at + range, data.length));
      t.is(await s.pwriteAndHash(fh.fd, part, at), part.length);
    }
    t.is(s.bytes, data.length);
    t.deepEqual(s.digest(), md5(data));
    t.throws(() => s.digest(), { message: /already digested/ });
  } finally {
    await fh.close();
  }
  t.true((await readFile(p)).equals(data));
});

test("one MD5 cannot be fed by two jobs at once", async (t) => {
  const dir = await tempDir();
  t.teardown(() => dir.cleanup());
  const fh = await open(join(dir.path, "f"), "w+");
  t.teardown(() => fh.close());
  const s = new Md5Stream();
  const first = s.pwriteAndHash(fh.fd, Buffer.alloc(1024 * 1024, 1), 0);
  await t.throwsAsync(s.pwriteAndHash(fh.fd, Buffer.alloc(10, 2), 1024 * 1024), {
    message: /another job/,
  });
  await first;
  await s.pwriteAndHash(fh.fd, Buffer.alloc(10, 2), 1024 * 1024);
  t.deepEqual(s.digest(), md5(Buffer.concat([Buffer.alloc(1024 * 1024, 1), Buffer.alloc(10, 2)])));
});

test("hashFileRange re-reads a range natively and stops at the end of the file", async (t) => {
  const dir = await tempDir();
  t.teardown(() => dir.cleanup());
  const p = join(dir.path, "f");
  const data = randomBytes(3 * 1024 * 1024 + 17);
  await writeFile(p, data);
  const fh = await open(p, "r");
  try {
    const s = new Md5Stream();
    t.is(await s.hashFileRange(fh.fd, 0, 1024 * 1024 + 5), 1024 * 1024 + 5);
    // Asked for more than is left: the bytes up to the end.
    t.is(await s.hashFileRange(fh.fd, 1024 * 1024 + 5, data.length), data.length - 1024 * 1024 - 5);
    t.deepEqual(s.digest(), md5(data));
  } finally {
    await fh.close();
  }
});

test("writeWholeFile writes at 0, cuts a longer (or sized) file to the data, returns its MD5", async (t) => {
  const dir = await tempDir();
  t.teardown(() => dir.cleanup());
  const p = join(dir.path, "f");
  await writeFile(p, Buffer.alloc(10_000, 9));
  const data = randomBytes(4096);
  const fh = await open(p, "r+");
  try {
    t.deepEqual(await writeWholeFile(fh.fd, data, { md5: true }), md5(data));
    t.is(await writeWholeFile(fh.fd, data.subarray(0, 100)), undefined);
  } finally {
    await fh.close();
  }
  t.true((await readFile(p)).equals(data.subarray(0, 100)));
});

test("a failed write rejects with code, errno and syscall, like node:fs", async (t) => {
  const dir = await tempDir();
  t.teardown(() => dir.cleanup());
  const p = join(dir.path, "f");
  await writeFile(p, "x");
  const fh = await open(p, "r");
  try {
    const err = await t.throwsAsync(pwriteAll(fh.fd, Buffer.alloc(10), 0));
    t.like(err, { code: "EBADF", syscall: "write" });
    t.true(typeof (err as unknown as { errno: number }).errno === "number");
    const s = new Md5Stream();
    await t.throwsAsync(s.pwriteAndHash(fh.fd, Buffer.alloc(10), 0), { code: "EBADF" });
    await t.throwsAsync(writeWholeFile(fh.fd, Buffer.alloc(10), { md5: true }), {
      code: "EBADF",
    });
  } finally {
    await fh.close();
  }
});
