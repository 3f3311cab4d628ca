import { createHash } from "node:crypto";
import { truncateSync, utimesSync, writeSync, openSync, closeSync } from "node:fs";
import { mkdir, stat, symlink, writeFile } from "node:fs/promises";
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
  BlobOperationError,
  FileChangedError,
  MemoryBudget,
  openContainer,
  parseStorageTarget,
  uploadFile,
  type BlobContainer,
  type StorageTarget,
} from "../src/index.js";

const test = anyTest as TestFn<{ az: AzuriteFixture; target: StorageTarget; dir: TempDir }>;
const MiB = 1024 * 1024;
const T = 1717094160;

test.before(async (t) => {
  const [az, dir] = await Promise.all([startAzurite(), tempDir("hsmfleet-blob-")]);
  t.context = { az, target: parseStorageTarget(az.connectionString)!, dir };
});
test.after.always(async (t) => {
  await t.context.az?.stop();
  await t.context.dir?.cleanup();
});

let counter = 0;
const freshContainer = async (target: StorageTarget): Promise<BlobContainer> => {
  const c = openContainer(target, `u${process.pid}-${++counter}`, { retryDelayMs: 10 });
  await c.ensureExists();
  return c;
};
const md5 = (b: Buffer) => createHash("md5").update(b).digest();
const metadata = metadataForEntry({
  type: EntryType.File,
  mode: 0o100644,
  uid: 1000,
  gid: 1000,
  mtimeSec: T,
});

/** Writes a deterministic file and returns its raw path and content. */
const makeFile = async (
  dir: string,
  name: string,
  size: number,
): Promise<{ path: Buffer; data: Buffer }> => {
  const data = contentOf(7, Buffer.from(name), size);
  const path = join(dir, name);
  await writeFile(path, data);
  return { path: Buffer.from(path), data };
};

const blockList = async (c: BlobContainer, name: string) =>
  (await c.client.getBlockBlobClient(name).getBlockList("all")).committedBlocks ?? [];

for (const [size, blocks] of [
  [0, 0],
  [1, 0],
  [5 * MiB, 2],
  [40 * MiB, 10],
] as const) {
  test(`uploads a ${size}-byte file byte-exact with 4 MiB blocks (${blocks} blocks)`, async (t) => {
    const c = await freshContainer(t.context.target);
    const { path, data } = await makeFile(t.context.dir.path, `exact-${size}`, size);
    const progress: number[] = [];
    const budget = new MemoryBudget(64 * MiB);
    const st = await stat(path, { bigint: true });
    const result = await uploadFile(c, path, "data/file", {
      metadata,
      blockSizeBytes: 4 * MiB,
      budget,
      onProgress: (n) => progress.push(n),
      expected: {
        size,
        mtimeSec: Number(st.mtimeNs / 1_000_000_000n),
        mtimeNsec: Number(st.mtimeNs % 1_000_000_000n),
      },
    });
    t.is(result.bytes, size);
    t.deepEqual(result.md5, md5(data));
    t.is(result.blocks, blocks);
    t.is(
      progress.reduce((a, b) => a + b, 0),
      size,
    );
    t.is(budget.inUse, 0);

    const props = await c.getProperties("data/file");
    t.is(props!.size, size);
    t.deepEqual(props!.contentMD5, md5(data), "stored Content-MD5 is the whole-file MD5");
    t.deepEqual(props!.metadata, metadata);
    t.deepEqual(md5(await c.download("data/file")), md5(data));

    const list = await blockList(c, "data/file");
    t.is(list.length, blocks);
    if (blocks > 0) {
      t.is(new Set(list.map((b) => b.name.length)).size, 1, "all block ids have the same length");
      t.is(new Set(list.map((b) => b.name)).size, blocks);
      t.deepEqual(
        list.map((b) => b.size),
        Array.from({ length: blocks }, (_, i) => Math.min(4 * MiB, size - i * 4 * MiB)),
      );
    }
  });
}

test("a file truncated while uploading is not committed", async (t) => {
  const c = await freshContainer(t.context.target);
  const { path } = await makeFile(t.context.dir.path, "shrinks", 40 * MiB);
  const budget = new MemoryBudget(64 * MiB);
  let truncated = false;
  const err = await t.throwsAsync(
    uploadFile(c, path, "shrinks", {
      metadata,
      blockSizeBytes: 4 * MiB,
      concurrency: 2,
      budget,
      onProgress: () => {
        if (!truncated) truncateSync(path, 1 * MiB);
        truncated = true;
      },
    }),
    { instanceOf: FileChangedError },
  );
  t.regex(
    err.message,
    /shrinks changed while being uploaded \(size 41943040→1048576.*\); not committed$/,
  );
  t.true(err.retryable);
  t.is(await c.getProperties("shrinks"), undefined, "no committed blob");
  t.is(budget.inUse, 0);
});

test("a file rewritten in place (same size) while uploading is not committed", async (t) => {
  const c = await freshContainer(t.context.target);
  const { path } = await makeFile(t.context.dir.path, "rewritten", 20 * MiB);
  utimesSync(path, T, T); // an old mtime, so the rewrite is visible whatever the clock granularity
  let written = false;
  const err = await t.throwsAsync(
    uploadFile(c, path, "rewritten", {
      metadata,
      blockSizeBytes: 4 * MiB,
      concurrency: 1,
      onProgress: () => {
        if (written) return;
        written = true;
        const fd = openSync(path, "r+");
        writeSync(fd, Buffer.from("changed"), 0, 7, 0);
        closeSync(fd);
      },
    }),
    { instanceOf: FileChangedError },
  );
  t.regex(err.message, /mtime 1717094160\.000000000→/);
  t.is(await c.getProperties("rewritten"), undefined);
});

test("a file that differs from the walk is refused before upload", async (t) => {
  const c = await freshContainer(t.context.target);
  const { path } = await makeFile(t.context.dir.path, "listed", 1000);
  utimesSync(path, T, T);
  const err = await t.throwsAsync(
    uploadFile(c, path, "listed", { metadata, expected: { size: 999, mtimeSec: T, mtimeNsec: 0 } }),
    { instanceOf: FileChangedError },
  );
  t.regex(err.message, /listed changed since it was listed \(size 999→1000\); not uploaded$/);
  await t.throwsAsync(
    uploadFile(c, path, "listed", {
      metadata,
      expected: { size: 1000, mtimeSec: T, mtimeNsec: 5 },
    }),
    { instanceOf: FileChangedError, message: /mtime 1717094160\.000000005→1717094160\.000000000/ },
  );
  t.is(await c.getProperties("listed"), undefined);
  await uploadFile(c, path, "listed", {
    metadata,
    expected: { size: 1000, mtimeSec: T, mtimeNsec: 0 },
  });
  t.is((await c.getProperties("listed"))!.size, 1000);
});

test("concurrent uploads stay under the shared memory budget", async (t) => {
  const c = await freshContainer(t.context.target);
  const files = await Promise.all(
    [0, 1, 2, 3].map((i) => makeFile(t.context.dir.path, `budget-${i}`, 18 * MiB + i)),
  );
  const budget = new MemoryBudget(10 * MiB);
  let maxInUse = 0;
  const results = await Promise.all(
    files.map(({ path }, i) =>
      uploadFile(c, path, `budget/${i}`, {
        metadata,
        blockSizeBytes: 2 * MiB,
        concurrency: 8,
        budget,
        onProgress: () => (maxInUse = Math.max(maxInUse, budget.inUse)),
      }),
    ),
  );
  t.true(budget.peak <= 10 * MiB, `peak ${budget.peak}`);
  t.true(budget.peak >= 6 * MiB, `the budget was actually used: peak ${budget.peak}`);
  t.true(maxInUse <= 10 * MiB);
  t.is(budget.inUse, 0);
  for (const [i, r] of results.entries()) {
    t.deepEqual(r.md5, md5(files[i]!.data));
    t.deepEqual((await c.getProperties(`budget/${i}`))!.contentMD5, md5(files[i]!.data));
  }
});

test("abort stops everything in flight and commits nothing", async (t) => {
  const c = await freshContainer(t.context.target);
  const { path } = await makeFile(t.context.dir.path, "aborted", 24 * MiB);
  const budget = new MemoryBudget(64 * MiB);
  const ac = new AbortController();
  const err = await t.throwsAsync(
    uploadFile(c, path, "aborted", {
      metadata,
      blockSizeBytes: 4 * MiB,
      concurrency: 2,
      budget,
      abortSignal: ac.signal,
      onProgress: () => ac.abort(),
    }),
    { instanceOf: BlobOperationError },
  );
  t.is(err.code, "ABORTED");
  t.false(err.retryable);
  t.is(await c.getProperties("aborted"), undefined);
  t.is(budget.inUse, 0);
  await t.throwsAsync(
    uploadFile(c, path, "aborted", { metadata, abortSignal: AbortSignal.abort() }),
    {
      instanceOf: BlobOperationError,
      message: /^open .*aborted → blob "aborted" in container "u\d+-\d+": aborted$/,
    },
  );
});

test("local and service errors name the path, the operation and the cause", async (t) => {
  const { dir, target } = t.context;
  const c = await freshContainer(target);
  const missing = Buffer.concat([Buffer.from(join(dir.path, "no-such-")), Buffer.from([0xff])]);
  const open = await t.throwsAsync(uploadFile(c, missing, "x", { metadata }), {
    instanceOf: BlobOperationError,
  });
  t.is(open.operation, "open");
  t.is(open.code, "ENOENT");
  t.false(open.retryable);
  t.is(
    open.message,
    `open ${dir.path}/no-such-\\xff → blob "x" in container "${c.name}": ENOENT: no such file or directory`,
  );

  await mkdir(join(dir.path, "a-directory"), { recursive: true });
  const notFile = await t.throwsAsync(
    uploadFile(c, Buffer.from(join(dir.path, "a-directory")), "d", { metadata }),
    {
      instanceOf: BlobOperationError,
    },
  );
  t.regex(notFile.message, /^stat .*a-directory → blob "d" .*: not a regular file$/);

  // A non-UTF-8 file name uploads fine.
  const oddPath = Buffer.concat([Buffer.from(join(dir.path, "odd-")), Buffer.from([0xe9])]);
  await writeFile(oddPath, "odd");
  await uploadFile(c, oddPath, "odd", { metadata });
  t.is((await c.download("odd")).toString(), "odd");

  const gone = openContainer(target, "never-created", { maxRetries: 0 });
  const { path: small } = await makeFile(dir.path, "small", 10);
  const put = await t.throwsAsync(uploadFile(gone, small, "s", { metadata }), {
    instanceOf: BlobOperationError,
  });
  t.is(put.operation, "put-blob");
  t.is(put.statusCode, 404);
  t.is(put.code, "ContainerNotFound");
  t.false(put.retryable);
  t.true(
    put.message.startsWith(
      `put-blob ${dir.path}/small → blob "s" in container "never-created": HTTP 404 ContainerNotFound`,
    ),
    put.message,
  );

  const { path: big } = await makeFile(dir.path, "big", 9 * MiB);
  const stage = await t.throwsAsync(
    uploadFile(gone, big, "b", { metadata, blockSizeBytes: 4 * MiB }),
    {
      instanceOf: BlobOperationError,
    },
  );
  t.is(stage.operation, "stage-block");
  t.is(stage.statusCode, 404);
  t.false(stage.retryable);
});

const listedOf = async (path: Buffer) => {
  const st = await stat(path, { bigint: true });
  return {
    size: Number(st.size),
    mtimeSec: Number(st.mtimeNs / 1_000_000_000n),
    mtimeNsec: Number(st.mtimeNs % 1_000_000_000n),
  };
};

test("small listed files take the one-job path: content, metadata and MD5 as the general path", async (t) => {
  const c = await freshContainer(t.context.target);
  for (const size of [0, 1, 4096, 256 * 1024]) {
    const { path, data } = await makeFile(t.context.dir.path, `small-${size}`, size);
    const progress: number[] = [];
    const r = await uploadFile(c, path, `small/${size}`, {
      metadata,
      expected: await listedOf(path),
      onProgress: (n) => progress.push(n),
    });
    t.deepEqual(r, { bytes: size, md5: md5(data), blocks: 0 });
    t.deepEqual(progress, [size]);
    const props = (await c.getProperties(`small/${size}`))!;
    t.is(props.size, size);
    t.deepEqual(props.contentMD5, md5(data));
    t.deepEqual(props.metadata, metadata);
    t.true((await c.download(`small/${size}`)).equals(data));
  }
});

test("small path: a symlink or a directory in the file's place, or a missing file, fail that file clearly", async (t) => {
  const c = await freshContainer(t.context.target);
  const { path } = await makeFile(t.context.dir.path, "small-target", 10);
  const listed = await listedOf(path);
  const link = join(t.context.dir.path, "small-link");
  await symlink(path.toString(), link);
  const loop = await t.throwsAsync(
    uploadFile(c, Buffer.from(link), "link", { metadata, expected: listed }),
    { instanceOf: BlobOperationError },
  );
  t.regex(
    loop.message,
    /^open .*small-link → blob "link" in container "[^"]+": ELOOP: is a symbolic link now \(not followed\)$/,
  );
  t.false(loop.retryable);
  const dirPath = join(t.context.dir.path, "small-dir");
  await mkdir(dirPath);
  const notFile = await t.throwsAsync(
    uploadFile(c, Buffer.from(dirPath), "dir", { metadata, expected: listed }),
    { instanceOf: BlobOperationError },
  );
  t.regex(notFile.message, /^stat .*small-dir → blob "dir" .*: not a regular file$/);
  const missing = await t.throwsAsync(
    uploadFile(c, Buffer.from(join(t.context.dir.path, "gone")), "gone", {
      metadata,
      expected: listed,
    }),
    { instanceOf: BlobOperationError },
  );
  t.regex(missing.message, /^open .*gone → blob "gone" .*: ENOENT: no such file or directory$/);
  t.is(await c.getProperties("link"), undefined);
});
