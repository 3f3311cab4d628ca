import { execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { open, readFile, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";

import test from "ava";
import { tempDir } from "@hsmfleet/testkit";

import {
  CRC64_ASYNC_MIN_BYTES,
  crc64,
  crc64Async,
  crc64Bytes,
  crc64Implementation,
  crc64Portable,
  preadCrc64,
  pwriteCrc64,
} from "../src/crc64.js";

/**
 * Bit-at-a-time CRC64 straight from the definition Azure Storage uses (reflected polynomial
 * 0x9A6C9329AC4BC9B5, init ~0, final xor ~0): an independent check of both native paths.
 */
const POLY = 0x9a6c9329ac4bc9b5n;
const MASK = (1n << 64n) - 1n;
const reference = (data: Uint8Array, seed = 0n): bigint => {
  let c = ~seed & MASK;
  for (const byte of data) {
    c ^= BigInt(byte);
    for (let k = 0; k < 8; k++) c = c & 1n ? (c >> 1n) ^ POLY : c >> 1n;
  }
  return ~c & MASK;
};

const header = (data: Uint8Array): string => crc64Bytes(crc64(data)).toString("base64");

test("published vectors: CRC-64/NVME check value and the Azure SDK's x-ms-content-crc64 values", (t) => {
  // CRC-64/NVME catalogue check value (the CRC of "123456789").
  t.is(crc64(Buffer.from("123456789")), 0xae8b14860a799888n);
  t.is(crc64Portable(Buffer.from("123456789")), 0xae8b14860a799888n);
  // Azure SDK for C++, azure-storage-common crypt_functions_test.cpp (Crc64Hash_Basic): the
  // base64 of the little-endian bytes, as sent in x-ms-content-crc64.
  t.is(header(Buffer.alloc(0)), "AAAAAAAAAAA=");
  t.is(header(Buffer.from("Hello Azure!")), "DtjZpL9/o8c=");
  t.is(reference(Buffer.from("Hello Azure!")), crc64(Buffer.from("Hello Azure!")));
});

test("the fast path agrees with slicing-by-8 and the bitwise definition at every length and alignment", (t) => {
  t.log(`implementation: ${crc64Implementation()}`);
  const base = randomBytes(4096 + 64);
  // Lengths around the 128-byte (pclmul) and 256-byte (vpclmulqdq) folding groups and the
  // thresholds of each path (256 and 1024 bytes), at odd offsets.
  const lengths = [0, 1, 7, 8, 9, 15, 16, 17, 127, 128, 129, 255, 256, 257, 383, 384, 511, 512];
  lengths.push(513, 767, 1023, 1024, 1025, 1279, 1280, 1281, 2047, 2048, 2049, 4095, 4096);
  for (const n of lengths) {
    for (const offset of [0, 1, 3, 8, 13]) {
      const data = base.subarray(offset, offset + n);
      const want = reference(data);
      t.is(crc64(data), want, `length ${n} at offset ${offset}`);
      t.is(crc64Portable(data), want, `portable, length ${n} at offset ${offset}`);
    }
  }
  const big = randomBytes(3 * 1024 * 1024 + 77);
  t.is(crc64(big), crc64Portable(big));
});

test("seeds chain: crc64(b, crc64(a)) is crc64(a ++ b), across the fast path's boundaries", (t) => {
  const data = randomBytes(1 << 20);
  const whole = crc64(data);
  for (const cut of [0, 1, 100, 128, 255, 4096, 65_537, data.length - 3, data.length]) {
    t.is(crc64(data.subarray(cut), crc64(data.subarray(0, cut))), whole, `cut at ${cut}`);
  }
  const seed = 0x0123456789abcdefn;
  const small = randomBytes(300);
  t.is(crc64(small, seed), reference(small, seed));
});

test("crc64Async gives the same value on the threadpool, for buffers over shared memory too", async (t) => {
  const size = CRC64_ASYNC_MIN_BYTES * 4 + 5;
  const shared = Buffer.from(new SharedArrayBuffer(size));
  randomBytes(size).copy(shared);
  const values = await Promise.all([
    crc64Async(shared),
    crc64Async(shared.subarray(0, 1000)),
    crc64Async(shared.subarray(3)),
  ]);
  t.deepEqual(values, [crc64(shared), crc64(shared.subarray(0, 1000)), crc64(shared.subarray(3))]);
});

test("crc64Bytes is little-endian; bad arguments are TypeErrors", (t) => {
  t.deepEqual([...crc64Bytes(0x0102030405060708n)], [8, 7, 6, 5, 4, 3, 2, 1]);
  t.throws(() => crc64("text" as unknown as Uint8Array), { instanceOf: TypeError });
  t.throws(() => crc64(Buffer.alloc(1), 1 as unknown as bigint), { instanceOf: TypeError });
  t.throws(() => crc64(Buffer.alloc(1), -1n), { instanceOf: TypeError });
});

test("every implementation this CPU has gives the same values (HSMFLEET_CRC64_IMPL caps the choice)", (t) => {
  // Deterministic data, hashed in child processes that load the addon with a capped choice.
  const script = `
    const { crc64, crc64Implementation } = await import(${JSON.stringify(new URL("../src/crc64.js", import.meta.url).href)});
    const data = Buffer.alloc(3 * 1024 * 1024 + 333);
    for (let i = 0; i < data.length; i++) data[i] = (i * 2654435761) >>> 24;
    const values = [0, 100, 256, 1000, 1024, 5000, 65536, data.length].map((n) => crc64(data.subarray(7, 7 + n)).toString(16));
    process.stdout.write(JSON.stringify({ impl: crc64Implementation(), values }));`;
  const run = (cap: string | undefined): { impl: string; values: string[] } => {
    const env = { ...process.env };
    delete env["HSMFLEET_CRC64_IMPL"];
    if (cap !== undefined) env["HSMFLEET_CRC64_IMPL"] = cap;
    const out = execFileSync(process.execPath, ["--input-type=module", "-e", script], { env });
    return JSON.parse(out.toString()) as { impl: string; values: string[] };
  };
  const best = run(undefined);
  const pclmul = run("pclmul");
  const table = run("table");
  t.log(`implementations: ${best.impl}, ${pclmul.impl}, ${table.impl}`);
  t.is(table.impl, "table");
  t.deepEqual(pclmul.values, table.values);
  t.deepEqual(best.values, table.values);
});

test("preadCrc64 reads a range of a file and returns the CRC64 of the bytes read", async (t) => {
  const dir = await tempDir();
  t.teardown(() => dir.cleanup());
  // Over the 1 MiB piece the reader checksums at a time, and not a multiple of it.
  const content = randomBytes(3 * 1024 * 1024 + 4321);
  const file = join(dir.path, "data");
  await writeFile(file, content);
  const fh = await open(file, "r");
  t.teardown(() => fh.close());
  const ranges: Array<[number, number]> = [
    [0, content.length],
    [0, 1024 * 1024],
    [1024 * 1024 + 5, 2 * 1024 * 1024],
    [17, 1000],
    [0, 0],
  ];
  for (const [position, length] of ranges) {
    const buf = Buffer.from(new SharedArrayBuffer(length));
    const r = await preadCrc64(fh.fd, buf, position);
    const want = content.subarray(position, position + length);
    t.is(r.bytesRead, length, `${position}+${length}`);
    t.true(buf.equals(want), `bytes of ${position}+${length}`);
    t.is(r.crc, crc64(want), `crc of ${position}+${length}`);
  }
  // Past the end: a short count, the CRC64 of what was there.
  const tail = Buffer.alloc(8192);
  const r = await preadCrc64(fh.fd, tail, content.length - 100);
  t.is(r.bytesRead, 100);
  t.is(r.crc, crc64(content.subarray(content.length - 100)));
  t.true(tail.subarray(0, 100).equals(content.subarray(content.length - 100)));
  const none = await preadCrc64(fh.fd, tail, content.length + 10);
  t.deepEqual(none, { bytesRead: 0, crc: 0n });
});

test("preadCrc64 rejects like node:fs on a failed read, and TypeErrors on bad arguments", async (t) => {
  const dir = await tempDir();
  t.teardown(() => dir.cleanup());
  const fh = await open(dir.path, "r"); // a directory: read(2) fails with EISDIR
  t.teardown(() => fh.close());
  const err = (await t.throwsAsync(preadCrc64(fh.fd, Buffer.alloc(16), 0))) as
    NodeJS.ErrnoException | undefined;
  t.is(err?.code, "EISDIR");
  t.is(err?.syscall, "read");
  t.is(err?.errno, -21);
  t.regex(err?.message ?? "", /^EISDIR: .*, read$/);
  await t.throwsAsync(preadCrc64(-1, Buffer.alloc(1), 0), { instanceOf: TypeError });
  await t.throwsAsync(preadCrc64(fh.fd, "x" as unknown as Uint8Array, 0), {
    instanceOf: TypeError,
  });
  await t.throwsAsync(preadCrc64(fh.fd, Buffer.alloc(1), -1), { instanceOf: TypeError });
});

test("pwriteCrc64 writes a range at its offset and returns its CRC64; sparse leaves zero blocks as holes", async (t) => {
  const dir = await tempDir();
  t.teardown(() => dir.cleanup());
  const file = join(dir.path, "data");
  const fh = await open(file, "w+");
  t.teardown(() => fh.close());
  // Two ranges out of order, over the 1 MiB piece and not a multiple of it.
  const a = randomBytes(1024 * 1024 + 777);
  const b = randomBytes(2 * 1024 * 1024 + 5);
  t.is(await pwriteCrc64(fh.fd, b, a.length), crc64(b));
  t.is(await pwriteCrc64(fh.fd, a, 0), crc64(a));
  t.true((await readFile(file)).equals(Buffer.concat([a, b])));
  t.is(await pwriteCrc64(fh.fd, Buffer.alloc(0), 3), crc64(Buffer.alloc(0)));

  // Sparse: 1 MiB of zeros then 4 KiB of data at an unaligned offset; the zeros stay a hole.
  const sparseFile = join(dir.path, "sparse");
  const sf = await open(sparseFile, "w+");
  t.teardown(() => sf.close());
  const data = Buffer.concat([Buffer.alloc(1024 * 1024), randomBytes(4096)]);
  t.is(await pwriteCrc64(sf.fd, data, 100, { sparse: true }), crc64(data));
  const content = await readFile(sparseFile);
  t.true(content.subarray(100).equals(data));
  t.true((await stat(sparseFile)).blocks * 512 < 512 * 1024, "the zero blocks are holes");
});

test("HSMFLEET_FALLOCATE_RUNS=1 preallocates only the runs it writes: same bytes and CRC64, zero blocks still holes", async (t) => {
  const dir = await tempDir();
  t.teardown(() => dir.cleanup());
  // In a child process: the switch is read when the addon loads.
  const script = `
    const { crc64, pwriteCrc64 } = await import(${JSON.stringify(new URL("../src/crc64.js", import.meta.url).href)});
    const { open, readFile, stat } = await import("node:fs/promises");
    const data = Buffer.alloc(3 * 1024 * 1024);
    for (let i = 0; i < data.length; i++) data[i] = ((i * 2654435761) >>> 24) | 1;
    data.fill(0, 1024 * 1024, 2 * 1024 * 1024); // 1 MiB of zeros in the middle
    const file = process.argv[1];
    const fh = await open(file, "w+");
    const crc = await pwriteCrc64(fh.fd, data, 4096, { sparse: true });
    await fh.close();
    const back = await readFile(file);
    process.stdout.write(JSON.stringify({
      crcOk: crc === crc64(data),
      bytesOk: back.length === 4096 + data.length && back.subarray(4096).equals(data) && back.subarray(0, 4096).every((b) => b === 0),
      allocated: (await stat(file)).blocks * 512,
    }));`;
  const run = (on: boolean): { crcOk: boolean; bytesOk: boolean; allocated: number } => {
    const env = { ...process.env };
    delete env["HSMFLEET_FALLOCATE_RUNS"];
    if (on) env["HSMFLEET_FALLOCATE_RUNS"] = "1";
    const file = join(dir.path, on ? "on" : "off");
    const out = execFileSync(process.execPath, ["--input-type=module", "-e", script, file], {
      env,
    });
    return JSON.parse(out.toString()) as { crcOk: boolean; bytesOk: boolean; allocated: number };
  };
  for (const on of [false, true]) {
    const r = run(on);
    t.true(r.crcOk, `crc, fallocate ${on}`);
    t.true(r.bytesOk, `bytes, fallocate ${on}`);
    // 2 MiB of data written; the 1 MiB of zeros and the first 4 KiB are not allocated.
    t.true(r.allocated >= 2 * 1024 * 1024, `allocated ${r.allocated}, fallocate ${on}`);
    t.true(r.allocated < 2 * 1024 * 1024 + 512 * 1024, `allocated ${r.allocated}, fallocate ${on}`);
  }
});

test("pwriteCrc64 with a seed continues the CRC64 of the bytes before, so pieces of a range chain", async (t) => {
  const dir = await tempDir();
  t.teardown(() => dir.cleanup());
  const file = join(dir.path, "data");
  const fh = await open(file, "w+");
  t.teardown(() => fh.close());
  const range = randomBytes(3 * 1024 * 1024 + 4097);
  const cut = [0, 512 * 1024, 512 * 1024 + 4096, 2 * 1024 * 1024, range.length];
  let crc = 0n;
  for (let i = 0; i + 1 < cut.length; i++) {
    const piece = range.subarray(cut[i], cut[i + 1]);
    crc = await pwriteCrc64(fh.fd, piece, 8192 + cut[i]!, { sparse: true, seed: crc });
  }
  t.is(crc, crc64(range));
  t.true((await readFile(file)).subarray(8192).equals(range));
  await t.throwsAsync(pwriteCrc64(fh.fd, range, 0, { seed: -1n }), { instanceOf: TypeError });
});

test("pwriteCrc64 rejects like node:fs on a failed write, and TypeErrors on bad arguments", async (t) => {
  const dir = await tempDir();
  t.teardown(() => dir.cleanup());
  const file = join(dir.path, "ro");
  await writeFile(file, "x");
  const fh = await open(file, "r"); // opened read-only: pwrite(2) fails with EBADF
  t.teardown(() => fh.close());
  const err = (await t.throwsAsync(pwriteCrc64(fh.fd, Buffer.alloc(16, 1), 0))) as
    NodeJS.ErrnoException | undefined;
  t.is(err?.code, "EBADF");
  t.is(err?.syscall, "write");
  t.regex(err?.message ?? "", /^EBADF: .*, write$/);
  await t.throwsAsync(pwriteCrc64(-1, Buffer.alloc(1), 0), { instanceOf: TypeError });
  await t.throwsAsync(pwriteCrc64(fh.fd, Buffer.alloc(1), -1), { instanceOf: TypeError });
});
