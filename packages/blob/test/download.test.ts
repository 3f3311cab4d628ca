import { createHash } from "node:crypto";
import { open, readFile, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import anyTest, { type TestFn } from "ava";
import { EntryType, metadataForEntry } from "@hsmfleet/core";
import {
  contentOf,
  startAzurite,
  tempDir,
  type AzuriteFixture,
  type TempDir,
} from "@hsmfleet/testkit";
import {
  BlobChangedError,
  BlobChecksumError,
  BlobOperationError,
  MemoryBudget,
  RangeBufferPool,
  downloadBlobToFile,
  downloadRange,
  downloadSmallBlobTo,
  openContainer,
  parseStorageTarget,
  uploadFile,
  type BlobContainer,
  type StorageTarget,
} from "../src/index.js";

const test = anyTest as TestFn<{ az: AzuriteFixture; target: StorageTarget; dir: TempDir }>;
const MiB = 1024 * 1024;
const KiB = 1024;

test.before(async (t) => {
  const [az, dir] = await Promise.all([startAzurite(), tempDir("hsmfleet-dl-")]);
  t.context = { az, target: parseStorageTarget(az.connectionString)!, dir };
});
test.after.always(async (t) => {
  await t.context.az?.stop();
  await t.context.dir?.cleanup();
});

let counter = 0;
const freshContainer = async (target: StorageTarget): Promise<BlobContainer> => {
  const c = openContainer(target, `d${process.pid}-${++counter}`, { retryDelayMs: 10 });
  await c.ensureExists();
  return c;
};
const md5 = (b: Buffer) => createHash("md5").update(b).digest();
const metadata = metadataForEntry({
  type: EntryType.File,
  mode: 0o100644,
  uid: 1000,
  gid: 1000,
  mtimeSec: 1717094160,
});

/** Writes a deterministic local file and uploads it with uploadFile (so Content-MD5 is set). */
const uploadBlob = async (
  t: { context: { dir: TempDir } },
  c: BlobContainer,
  blob: string,
  size: number,
  seed = 7,
): Promise<Buffer> => {
  const data = contentOf(seed, Buffer.from(blob), size);
  const src = join(t.context.dir.path, `src-${++counter}`);
  await writeFile(src, data);
  await uploadFile(c, Buffer.from(src), blob, { metadata, blockSizeBytes: 4 * MiB });
  return data;
};

const newTarget = (t: { context: { dir: TempDir } }): Buffer =>
  Buffer.from(join(t.context.dir.path, `dst-${++counter}`));

for (const size of [0, 1, 5 * MiB, 40 * MiB]) {
  test(`downloads a ${size}-byte blob byte-exact in 4 MiB ranges, MD5 verified`, async (t) => {
    const c = await freshContainer(t.context.target);
    const data = await uploadBlob(t, c, "data/file", size);
    const dst = newTarget(t);
    const budget = new MemoryBudget(64 * MiB);
    const progress: number[] = [];
    const fh = await open(dst, "w+");
    try {
      const result = await downloadBlobToFile(c, "data/file", fh, dst, {
        rangeSizeBytes: 4 * MiB,
        concurrency: 8,
        budget,
        onProgress: (n) => progress.push(n),
      });
      const props = await c.client.getBlobClient("data/file").getProperties();
      t.deepEqual(result, { bytes: size, md5Verified: true, etag: props.etag! });
      t.is(
        progress.reduce((a, b) => a + b, 0),
        size,
      );
      t.is(progress.length, Math.ceil(size / (4 * MiB)));
    } finally {
      await fh.close();
    }
    const got = await readFile(dst);
    t.is(got.length, size);
    t.deepEqual(md5(got), md5(data));
    t.is(budget.inUse, 0);
    t.true(budget.peak <= 64 * MiB);
  });
}

test("downloadRange writes a middle range at the same offsets; the rest stays zero", async (t) => {
  const c = await freshContainer(t.context.target);
  const data = await uploadBlob(t, c, "mid", 5 * MiB);
  const dst = newTarget(t);
  const offset = MiB + 123;
  const length = 2 * MiB + 7;
  const fh = await open(dst, "w+");
  try {
    const n = await downloadRange(c, "mid", fh, dst, offset, length, {
      rangeSizeBytes: 256 * KiB,
      concurrency: 4,
    });
    t.is(n, length);
  } finally {
    await fh.close();
  }
  const got = await readFile(dst);
  t.is(got.length, offset + length);
  t.true(got.subarray(0, offset).every((b) => b === 0));
  t.deepEqual(md5(got.subarray(offset)), md5(data.subarray(offset, offset + length)));
  // Several writers each take a range of one file: the ranges add up to the blob.
  const whole = newTarget(t);
  const fh2 = await open(whole, "w+");
  try {
    const parts = [0, 2 * MiB, 3 * MiB + 1].map((start, i, all) => {
      const stop = all[i + 1] ?? 5 * MiB;
      return downloadRange(c, "mid", fh2, whole, start, stop - start, {
        rangeSizeBytes: 512 * KiB,
      });
    });
    t.deepEqual(await Promise.all(parts), [2 * MiB, MiB + 1, 2 * MiB - 1]);
  } finally {
    await fh2.close();
  }
  t.deepEqual(md5(await readFile(whole)), md5(data));
});

test("length 0 reads nothing; a range beyond the end of the blob fails, not retryable", async (t) => {
  const c = await freshContainer(t.context.target);
  await uploadBlob(t, c, "short", 100 * KiB);
  const dst = newTarget(t);
  const fh = await open(dst, "w+");
  try {
    t.is(await downloadRange(c, "short", fh, dst, 5, 0), 0);
    const err = await t.throwsAsync(
      downloadRange(c, "short", fh, dst, 100 * KiB - 10, 20, { rangeSizeBytes: 64 * KiB }),
      { instanceOf: BlobOperationError },
    );
    t.is(err.retryable, false);
    t.regex(err.message, /^get-blob-range .*dst-\d+ → blob "short" in container/);
    await t.throwsAsync(downloadRange(c, "short", fh, dst, 0, 10, { rangeSizeBytes: 0 }), {
      instanceOf: RangeError,
    });
  } finally {
    await fh.close();
  }
});

/**
 * Overwrites the blob after the first range is written: the test takes the whole budget in
 * onProgress, so the next range waits until the new version is in place.
 */
const overwriteAfterFirstRange = (
  t: { context: { dir: TempDir } },
  c: BlobContainer,
  blob: string,
  size: number,
  budget: MemoryBudget,
): { onProgress: () => void; done: () => Promise<void> } => {
  let overwrite: Promise<void> | undefined;
  return {
    onProgress: () => {
      if (overwrite !== undefined) return;
      overwrite = (async () => {
        await budget.acquire(budget.limitBytes);
        try {
          await uploadBlob(t, c, blob, size, 99);
        } finally {
          budget.release(budget.limitBytes);
        }
      })();
    },
    done: async () => {
      await overwrite;
    },
  };
};

test("a blob overwritten mid-download is a BlobChangedError (If-Match)", async (t) => {
  const c = await freshContainer(t.context.target);
  await uploadBlob(t, c, "moving", 2 * MiB);
  const before = (await c.client.getBlobClient("moving").getProperties()).etag;
  const budget = new MemoryBudget(64 * KiB);
  const swap = overwriteAfterFirstRange(t, c, "moving", 2 * MiB, budget);
  const dst = newTarget(t);
  const fh = await open(dst, "w+");
  try {
    const err = await t.throwsAsync(
      downloadBlobToFile(c, "moving", fh, dst, {
        rangeSizeBytes: 64 * KiB,
        concurrency: 1,
        budget,
        onProgress: swap.onProgress,
      }),
      { instanceOf: BlobChangedError },
    );
    t.true(err.retryable);
    t.is(err.blobName, "moving");
    t.is(err.expectedEtag, before);
    t.regex(err.message, /changed while being downloaded to .*dst-\d+ \(ETag/);
    await swap.done();
    t.is(budget.inUse, 0);
    // A stale ETag given by the caller fails at once, at the properties request.
    await t.throwsAsync(downloadBlobToFile(c, "moving", fh, dst, { etag: before! }), {
      instanceOf: BlobChangedError,
    });
  } finally {
    await fh.close();
  }
});

test("downloadRange without an ETag still detects a change from the responses' ETags", async (t) => {
  const c = await freshContainer(t.context.target);
  await uploadBlob(t, c, "moving2", MiB);
  const budget = new MemoryBudget(64 * KiB);
  const swap = overwriteAfterFirstRange(t, c, "moving2", MiB, budget);
  const dst = newTarget(t);
  const fh = await open(dst, "w+");
  try {
    const err = await t.throwsAsync(
      downloadRange(c, "moving2", fh, dst, 0, MiB, {
        rangeSizeBytes: 64 * KiB,
        concurrency: 1,
        budget,
        onProgress: swap.onProgress,
      }),
      { instanceOf: BlobChangedError },
    );
    t.truthy(err.actualEtag);
    t.not(err.actualEtag, err.expectedEtag);
    await swap.done();
  } finally {
    await fh.close();
  }
});

test("a missing blob is BlobNotFound, not retryable", async (t) => {
  const c = await freshContainer(t.context.target);
  const dst = newTarget(t);
  const fh = await open(dst, "w+");
  try {
    const whole = await t.throwsAsync(downloadBlobToFile(c, "nope", fh, dst), {
      instanceOf: BlobOperationError,
    });
    t.is(whole.code, "BlobNotFound");
    t.is(whole.statusCode, 404);
    t.is(whole.retryable, false);
    t.is(whole.operation, "get-properties");
    const range = await t.throwsAsync(downloadRange(c, "nope", fh, dst, 0, 10), {
      instanceOf: BlobOperationError,
    });
    t.is(range.code, "BlobNotFound");
    t.is(range.retryable, false);
    t.is(range.operation, "get-blob-range");
    t.regex(range.message, /blob "nope" in container "d\d+-\d+": HTTP 404 BlobNotFound/);
  } finally {
    await fh.close();
  }
});

test("range buffers stay within a small memory budget at concurrency 8", async (t) => {
  const c = await freshContainer(t.context.target);
  const data = await uploadBlob(t, c, "budgeted", 5 * MiB);
  const budget = new MemoryBudget(MiB);
  const dst = newTarget(t);
  const fh = await open(dst, "w+");
  try {
    const result = await downloadBlobToFile(c, "budgeted", fh, dst, {
      rangeSizeBytes: 256 * KiB,
      concurrency: 8,
      budget,
    });
    t.true(result.md5Verified);
  } finally {
    await fh.close();
  }
  t.deepEqual(md5(await readFile(dst)), md5(data));
  t.true(budget.peak <= MiB, `peak ${budget.peak}`);
  t.true(budget.peak >= 512 * KiB, `peak ${budget.peak}: ranges ran in parallel`);
  t.is(budget.inUse, 0);
});

test("range buffers of a finished download are reused by the next one; an aborted range hands none back", async (t) => {
  const c = await freshContainer(t.context.target);
  const data = await uploadBlob(t, c, "pooled", 2 * MiB);
  const buffers = new RangeBufferPool({ maxBytes: 16 * MiB, slabBytes: 0 });
  const options = { rangeSizeBytes: 256 * KiB, concurrency: 4, buffers };
  for (const round of [1, 2]) {
    const dst = newTarget(t);
    const fh = await open(dst, "w+");
    try {
      t.true((await downloadBlobToFile(c, "pooled", fh, dst, options)).md5Verified);
    } finally {
      await fh.close();
    }
    t.deepEqual(md5(await readFile(dst)), md5(data), `round ${round}`);
  }
  // The first download allocated at most `concurrency` buffers; the second took them all back.
  t.true(buffers.freeBytes > 0 && buffers.freeBytes <= 4 * 256 * KiB, `${buffers.freeBytes}`);
  t.true(buffers.reused >= 8 - 4, `reused ${buffers.reused}`);
  const before = buffers.freeBytes;
  const dst = newTarget(t);
  const fh = await open(dst, "w+");
  const ac = new AbortController();
  try {
    await t.throwsAsync(
      downloadBlobToFile(c, "pooled", fh, dst, {
        ...options,
        abortSignal: ac.signal,
        onProgress: () => ac.abort(),
      }),
      { instanceOf: BlobOperationError },
    );
  } finally {
    await fh.close();
  }
  // Only the ranges that finished before the abort handed their buffers back.
  t.true(buffers.freeBytes < before, `${buffers.freeBytes} of ${before}`);
});

test("abort stops the download and releases the budget", async (t) => {
  const c = await freshContainer(t.context.target);
  await uploadBlob(t, c, "aborted", 4 * MiB);
  const budget = new MemoryBudget(MiB);
  const ac = new AbortController();
  let progress = 0;
  const dst = newTarget(t);
  const fh = await open(dst, "w+");
  try {
    const err = await t.throwsAsync(
      downloadBlobToFile(c, "aborted", fh, dst, {
        rangeSizeBytes: 64 * KiB,
        concurrency: 2,
        budget,
        abortSignal: ac.signal,
        onProgress: (n) => {
          progress += n;
          ac.abort();
        },
      }),
      { instanceOf: BlobOperationError },
    );
    t.is(err.code, "ABORTED");
    t.is(err.retryable, false);
    t.true(progress < 4 * MiB);
    t.is(budget.inUse, 0);
    const early = await t.throwsAsync(
      downloadRange(c, "aborted", fh, dst, 0, 10, { abortSignal: AbortSignal.abort() }),
      { instanceOf: BlobOperationError },
    );
    t.is(early.code, "ABORTED");
  } finally {
    await fh.close();
  }
});

test("an MD5 mismatch truncates the file and is a BlobChecksumError", async (t) => {
  const c = await freshContainer(t.context.target);
  await uploadBlob(t, c, "bad-md5", MiB + 5);
  await c.client
    .getBlobClient("bad-md5")
    .setHTTPHeaders({ blobContentMD5: md5(Buffer.from("something else")) });
  const dst = newTarget(t);
  const fh = await open(dst, "w+");
  try {
    const err = await t.throwsAsync(
      downloadBlobToFile(c, "bad-md5", fh, dst, { rangeSizeBytes: 256 * KiB }),
      { instanceOf: BlobChecksumError },
    );
    t.true(err.retryable);
    t.true(err.truncated);
    t.regex(err.message, /does not match .* truncated to 0 bytes/);
  } finally {
    await fh.close();
  }
  t.is((await stat(dst)).size, 0);
});

test("a blob without Content-MD5 downloads unverified; a longer old file is trimmed", async (t) => {
  const c = await freshContainer(t.context.target);
  const data = contentOf(3, Buffer.from("no-md5"), 300 * KiB);
  const block = c.client.getBlockBlobClient("no-md5");
  await block.stageBlock("YmxvY2sx", data, data.length);
  await block.commitBlockList(["YmxvY2sx"]);
  const dst = newTarget(t);
  await writeFile(dst, Buffer.alloc(MiB, 0xff));
  const fh = await open(dst, "r+");
  try {
    const result = await downloadBlobToFile(c, "no-md5", fh, dst, { rangeSizeBytes: 64 * KiB });
    t.is(result.bytes, data.length);
    t.false(result.md5Verified);
  } finally {
    await fh.close();
  }
  t.deepEqual(await readFile(dst), data);
});

test("with the expected size of a small blob: one GET, MD5 checked, a longer old file trimmed; another size takes the general path", async (t) => {
  const c = await freshContainer(t.context.target);
  const data = await uploadBlob(t, c, "small", 300 * KiB + 3);
  const dst = newTarget(t);
  await writeFile(dst, Buffer.alloc(MiB, 1));
  const budget = new MemoryBudget(8 * MiB);
  let fh = await open(dst, "r+");
  try {
    const r = await downloadBlobToFile(c, "small", fh, dst, { expectedSize: data.length, budget });
    t.like(r, { bytes: data.length, md5Verified: true });
  } finally {
    await fh.close();
  }
  t.deepEqual(md5(await readFile(dst)), md5(data));
  t.is(budget.inUse, 0);
  // The listing said another size: the blob's real size wins.
  fh = await open(dst, "r+");
  try {
    const r = await downloadBlobToFile(c, "small", fh, dst, { expectedSize: 10 });
    t.like(r, { bytes: data.length, md5Verified: true });
  } finally {
    await fh.close();
  }
  t.deepEqual(md5(await readFile(dst)), md5(data));
  // A wrong stored MD5 is caught on the one-GET path too.
  await c.client.getBlobClient("small").setHTTPHeaders({ blobContentMD5: md5(Buffer.from("x")) });
  fh = await open(dst, "r+");
  try {
    await t.throwsAsync(downloadBlobToFile(c, "small", fh, dst, { expectedSize: data.length }), {
      instanceOf: BlobChecksumError,
    });
  } finally {
    await fh.close();
  }
  t.is((await stat(dst)).size, 0);
});

test("downloadSmallBlobTo hands one GET's bytes and the stored MD5 to the writer; a mismatch it reports is a BlobChecksumError saying nothing was written", async (t) => {
  const c = await freshContainer(t.context.target);
  const data = await uploadBlob(t, c, "one", 5 * KiB + 1);
  const dst = newTarget(t);
  const budget = new MemoryBudget(MiB);
  const seen: Array<{ data: Buffer; md5: Uint8Array | undefined }> = [];
  let progress = 0;
  const r = await downloadSmallBlobTo(
    c,
    "one",
    dst,
    data.length,
    (got, expectMd5) => {
      t.is(budget.inUse, data.length); // the memory is held until the writer is done
      seen.push({ data: Buffer.from(got), md5: expectMd5 });
      return Promise.resolve({ md5Mismatch: false });
    },
    { budget, onProgress: (n) => (progress += n) },
  );
  t.like(r, { bytes: data.length, md5Verified: true });
  t.true(seen[0]!.data.equals(data));
  t.deepEqual(Buffer.from(seen[0]!.md5!), md5(data));
  t.is(progress, data.length);
  t.is(budget.inUse, 0);
  // Another size than the listing's, 0 bytes, or more than one range: not this path.
  const never = () => {
    t.fail("the writer must not be called");
    return Promise.resolve({ md5Mismatch: false });
  };
  t.is(await downloadSmallBlobTo(c, "one", dst, 10, never), undefined);
  t.is(await downloadSmallBlobTo(c, "one", dst, 0, never), undefined);
  t.is(await downloadSmallBlobTo(c, "one", dst, 9 * MiB, never), undefined);
  const err = await t.throwsAsync(
    downloadSmallBlobTo(c, "one", dst, data.length, () =>
      Promise.resolve({ md5Mismatch: true, actual: md5(Buffer.from("other")), notWritten: true }),
    ),
    { instanceOf: BlobChecksumError },
  );
  t.regex(err?.message ?? "", /the data was not written/);
  // A writer failure is a "write" error naming the local file.
  const failed = await t.throwsAsync(
    downloadSmallBlobTo(c, "one", dst, data.length, () =>
      Promise.reject(
        Object.assign(new Error("write: No space left on device"), { code: "ENOSPC" }),
      ),
    ),
    { instanceOf: BlobOperationError },
  );
  t.regex(failed?.message ?? "", /ENOSPC/);
  t.regex(failed?.message ?? "", new RegExp(`dst-`));
});
