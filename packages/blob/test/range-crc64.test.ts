/**
 * Per-range CRC64 checks of downloads (range-crc64.ts): Azurite does not compute range CRC64s, so
 * the service side is Azurite behind the testkit's fault proxy answering
 * x-ms-range-get-content-crc64 as Azure does (the CRC64 of the true bytes; a "flip" fault then
 * changes one byte of the body). Each test opens its own container client (its own transport), so
 * what one transport learned about its endpoint does not leak into another test.
 */
import { createHash } from "node:crypto";
import { open, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import anyTest, { type TestFn } from "ava";
import { EntryType, metadataForEntry } from "@hsmfleet/core";
import { crc64 } from "@hsmfleet/fs";
import {
  contentOf,
  startAzurite,
  startFaultProxy,
  tempDir,
  type AzuriteFixture,
  type FaultProxy,
  type FaultProxyOptions,
  type TempDir,
} from "@hsmfleet/testkit";
import {
  RANGE_CRC64_TRIES,
  RangeChecksumError,
  downloadBlobToFile,
  downloadRangeChecked,
  openContainer,
  parseStorageTarget,
  uploadFile,
  type BlobContainer,
} from "../src/index.js";
import { openWriteLanes } from "../src/write-lane.js";

const test = anyTest as TestFn<{ az: AzuriteFixture; dir: TempDir }>;
const MiB = 1024 * 1024;

test.before(async (t) => {
  const [az, dir] = await Promise.all([startAzurite(), tempDir("hsmfleet-crc-")]);
  t.context = { az, dir };
});
test.after.always(async (t) => {
  await t.context.az?.stop();
  await t.context.dir?.cleanup();
});

let counter = 0;
const metadata = metadataForEntry({
  type: EntryType.File,
  mode: 0o100644,
  uid: 1000,
  gid: 1000,
  mtimeSec: 1717094160,
});
const md5 = (b: Buffer): Buffer => createHash("md5").update(b).digest();

/** A container on Azurite (direct) with one uploaded blob (Content-MD5 set) of `size` bytes. */
const withBlob = async (
  t: { context: { az: AzuriteFixture; dir: TempDir } },
  size: number,
): Promise<{ name: string; data: Buffer; containerName: string }> => {
  const id = ++counter;
  const containerName = `crc${process.pid}-${id}`;
  const c = openContainer(parseStorageTarget(t.context.az.connectionString)!, containerName, {
    retryDelayMs: 10,
  });
  await c.ensureExists();
  const name = "dir/big";
  const data = contentOf(id, Buffer.from(name), size);
  const src = join(t.context.dir.path, `src-${id}`);
  await writeFile(src, data);
  await uploadFile(c, Buffer.from(src), name, { metadata, blockSizeBytes: 4 * MiB });
  return { name, data, containerName };
};

/** The container again, reached through a proxy that answers range CRC64s. */
const throughProxy = async (
  t: { context: { az: AzuriteFixture }; teardown: (fn: () => unknown) => void },
  containerName: string,
  faults: Omit<FaultProxyOptions, "target" | "rangeCrc64"> = {},
): Promise<{ c: BlobContainer; proxy: FaultProxy }> => {
  const proxy = await startFaultProxy({
    target: t.context.az.blobEndpoint,
    rangeCrc64: (body) => crc64(body),
    ...faults,
  });
  t.teardown(() => proxy.stop());
  const target = parseStorageTarget(proxy.rewriteConnectionString(t.context.az.connectionString))!;
  return { c: openContainer(target, containerName, { retryDelayMs: 10 }), proxy };
};

const newFile = (t: { context: { dir: TempDir } }): string =>
  join(t.context.dir.path, `dst-${++counter}`);

test("Azurite sends no range CRC64: the download checks the Content-MD5 instead (read back once, then hashed as written)", async (t) => {
  const { name, data, containerName } = await withBlob(t, 10 * MiB + 3);
  const c = openContainer(parseStorageTarget(t.context.az.connectionString)!, containerName, {
    retryDelayMs: 10,
  });
  for (const round of ["first (finds out)", "second (knows)"]) {
    const dst = newFile(t);
    const fh = await open(dst, "w+");
    try {
      const r = await downloadBlobToFile(c, name, fh, Buffer.from(dst));
      t.is(r.bytes, data.length, round);
      t.true(r.md5Verified, `${round}: MD5 checked`);
      t.falsy(r.crc64Verified, `${round}: no range CRC64 from Azurite`);
    } finally {
      await fh.close();
    }
    t.true((await readFile(dst)).equals(data), `${round}: bytes`);
  }
});

test("where the endpoint answers range CRC64s every 4 MiB range is checked by it and no MD5 is computed", async (t) => {
  const size = 10 * MiB + 3;
  const { name, data, containerName } = await withBlob(t, size);
  const { c, proxy } = await throughProxy(t, containerName);
  const dst = newFile(t);
  const fh = await open(dst, "w+");
  try {
    // 8 MiB asked for: capped at 4 MiB, the largest range the service checksums.
    const r = await downloadBlobToFile(c, name, fh, Buffer.from(dst), { rangeSizeBytes: 8 * MiB });
    t.is(r.bytes, size);
    t.true(r.crc64Verified);
    t.false(r.md5Verified);
  } finally {
    await fh.close();
  }
  t.is(proxy.counters().crc64Answers, 3, "ranges of 4 + 4 + 2 MiB, each with its CRC64");
  const got = await readFile(dst);
  t.deepEqual(md5(got), md5(data));
});

test("one flipped byte in one range: the download fails naming the path and the range, after RANGE_CRC64_TRIES fetches of it", async (t) => {
  const { name, containerName } = await withBlob(t, 10 * MiB);
  const { c, proxy } = await throughProxy(t, containerName, {
    eligible: (req) => req.headers["x-ms-range"] === `bytes=${4 * MiB}-${8 * MiB - 1}`,
    rates: { flip: 1 },
  });
  const dst = newFile(t);
  const fh = await open(dst, "w+");
  let err: unknown;
  try {
    err = await t.throwsAsync(downloadBlobToFile(c, name, fh, Buffer.from(dst)), {
      instanceOf: RangeChecksumError,
    });
  } finally {
    await fh.close();
  }
  const e = err as RangeChecksumError;
  t.is(e.path, dst);
  t.is(e.offset, 4 * MiB);
  t.is(e.length, 4 * MiB);
  t.true(e.retryable);
  t.true(e.message.includes(dst), e.message);
  t.true(e.message.includes(`bytes ${4 * MiB}-${8 * MiB - 1}`), e.message);
  t.not(e.expectedCrc64, e.actualCrc64);
  t.is(proxy.counters().injected.flip, RANGE_CRC64_TRIES, "the range was fetched again");
});

test("a range corrupted once on the way is fetched again and the file ends up exact", async (t) => {
  const { name, data, containerName } = await withBlob(t, 9 * MiB + 17);
  const { c, proxy } = await throughProxy(t, containerName, {
    eligible: (req) => req.headers["x-ms-range"] !== undefined,
    onRequest: [{ n: 2, fault: "flip" }],
  });
  const dst = newFile(t);
  const fh = await open(dst, "w+");
  try {
    const r = await downloadBlobToFile(c, name, fh, Buffer.from(dst));
    t.true(r.crc64Verified);
  } finally {
    await fh.close();
  }
  t.is(proxy.counters().injected.flip, 1);
  t.is(proxy.counters().crc64Answers, 4, "3 ranges and one of them again");
  t.true((await readFile(dst)).equals(data));
});

test("downloadRangeChecked (a chunk) says whether each of its ranges was checked", async (t) => {
  const { name, data, containerName } = await withBlob(t, 12 * MiB);
  const { c } = await throughProxy(t, containerName);
  const dst = newFile(t);
  const fh = await open(dst, "w+");
  try {
    const r = await downloadRangeChecked(c, name, fh, Buffer.from(dst), 3 * MiB, 6 * MiB + 1);
    t.deepEqual(r, { bytes: 6 * MiB + 1, crc64Verified: true });
    // Turned off: the same chunk unchecked.
    const off = await downloadRangeChecked(c, name, fh, Buffer.from(dst), 3 * MiB, 6 * MiB + 1, {
      rangeCrc64: false,
    });
    t.deepEqual(off, { bytes: 6 * MiB + 1, crc64Verified: false });
  } finally {
    await fh.close();
  }
  const got = await readFile(dst);
  t.true(got.subarray(3 * MiB).equals(data.subarray(3 * MiB, 9 * MiB + 1)));
});

// Serial: ava runs serial tests before the others, so no other download holds a lane meanwhile.
test.serial(
  "two chunks of one file downloaded at once, through two descriptors, write through one lane (write-lane.ts); the file ends up exact and the lane is dropped",
  async (t) => {
    const { name, data, containerName } = await withBlob(t, 16 * MiB + 5);
    const { c } = await throughProxy(t, containerName);
    const dst = newFile(t);
    await writeFile(dst, "");
    const before = openWriteLanes();
    const fh1 = await open(dst, "r+");
    const fh2 = await open(dst, "r+");
    const seen = new Set<number>();
    const note = () => seen.add(openWriteLanes() - before);
    try {
      const [a, b] = await Promise.all([
        downloadRangeChecked(c, name, fh1, Buffer.from(dst), 0, 8 * MiB, { onProgress: note }),
        downloadRangeChecked(c, name, fh2, Buffer.from(dst), 8 * MiB, 8 * MiB + 5, {
          onProgress: note,
        }),
      ]);
      t.is(a.bytes + b.bytes, data.length);
    } finally {
      await Promise.all([fh1.close(), fh2.close()]);
    }
    // While both ran there was one lane for the file, never two.
    t.deepEqual([...seen], [1]);
    t.is(openWriteLanes(), before);
    t.true((await readFile(dst)).equals(data));
  },
);
