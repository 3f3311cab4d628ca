/**
 * RangeStreamWrite (range-write.ts): a range written at its file offset while its body arrives,
 * its pieces' CRC64s chained into the range's; a body begun again (a retried GET) written again
 * whole from the buffer; a failed piece write reported by finish.
 */
import { open, readFile } from "node:fs/promises";
import { randomBytes } from "node:crypto";
import { join } from "node:path";
import test from "ava";
import { crc64 } from "@hsmfleet/fs";
import { tempDir } from "@hsmfleet/testkit";
import { RangeStreamWrite } from "../src/range-write.js";

const KiB = 1024;
const MiB = 1024 * KiB;

const until = async (what: string, check: () => Promise<boolean>): Promise<void> => {
  const deadline = Date.now() + 30_000;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
};

test("pieces are written as the body arrives, before it is complete; finish returns the range's CRC64", async (t) => {
  const dir = await tempDir();
  t.teardown(() => dir.cleanup());
  const file = join(dir.path, "f");
  const fh = await open(file, "w+");
  t.teardown(() => fh.close());
  const at = 4 * MiB;
  const range = randomBytes(3 * MiB + 123);
  const buf = Buffer.alloc(range.length);
  const w = new RangeStreamWrite(fh.fd, buf, range.length, at, 512 * KiB);
  w.begin();
  // 1 MiB + 100 bytes arrived: the whole 4 KiB blocks of it are written, the rest waits.
  range.copy(buf, 0, 0, MiB + 100);
  w.received(MiB + 100);
  await until("the first piece", async () => (await fh.stat()).size >= at + MiB);
  t.is((await fh.stat()).size, at + MiB, "whole blocks only");
  t.true((await readFile(file)).subarray(at).equals(range.subarray(0, MiB)));
  // Less than a piece more: nothing new is started.
  range.copy(buf, MiB + 100, MiB + 100, MiB + 200 * KiB);
  w.received(MiB + 200 * KiB);
  range.copy(buf, MiB + 200 * KiB, MiB + 200 * KiB);
  w.received(range.length);
  t.is(await w.finish(), crc64(range));
  t.true((await readFile(file)).subarray(at).equals(range));
});

test("a body begun again (the GET was retried) is written again whole from the buffer, and its CRC64 returned", async (t) => {
  const dir = await tempDir();
  t.teardown(() => dir.cleanup());
  const file = join(dir.path, "f");
  const fh = await open(file, "w+");
  t.teardown(() => fh.close());
  const first = randomBytes(2 * MiB);
  const second = randomBytes(2 * MiB);
  const buf = Buffer.from(first);
  const w = new RangeStreamWrite(fh.fd, buf, buf.length, 0, 256 * KiB);
  w.begin();
  w.received(MiB);
  await until("the first try's piece", async () => (await fh.stat()).size >= MiB);
  // The retry reads other bytes into the buffer (a corrupted first try, say).
  w.begin();
  second.copy(buf);
  w.received(MiB);
  w.received(buf.length);
  t.is(await w.finish(), crc64(second));
  t.true((await readFile(file)).equals(second), "nothing of the first try is left");
});

test("a range whose body was never seen (another transport) is written whole by finish; a failed write is thrown", async (t) => {
  const dir = await tempDir();
  t.teardown(() => dir.cleanup());
  const file = join(dir.path, "f");
  const fh = await open(file, "w+");
  t.teardown(() => fh.close());
  const range = randomBytes(MiB + 1);
  const w = new RangeStreamWrite(fh.fd, range, range.length, 10, 512 * KiB);
  t.is(await w.finish(), crc64(range));
  t.true((await readFile(file)).subarray(10).equals(range));

  const ro = await open(file, "r");
  t.teardown(() => ro.close());
  const bad = new RangeStreamWrite(ro.fd, range, range.length, 0, 256 * KiB);
  bad.begin();
  bad.received(MiB);
  const err = await t.throwsAsync(bad.finish());
  t.is((err as NodeJS.ErrnoException).code, "EBADF", err?.message);
});
