import { createHash } from "node:crypto";
import anyTest, { type TestFn } from "ava";
import {
  ContainerSASPermissions,
  StorageSharedKeyCredential,
  generateBlobSASQueryParameters,
} from "@azure/storage-blob";
import { UsageError, blobNameForPath, metadataForEntry, EntryType } from "@hsmfleet/core";
import { startAzurite, type AzuriteFixture } from "@hsmfleet/testkit";
import {
  BlobOperationError,
  openContainer,
  parseStorageTarget,
  type BlobContainer,
  type BlobLevelEntry,
  type StorageTarget,
} from "../src/index.js";

const test = anyTest as TestFn<{ az: AzuriteFixture; target: StorageTarget }>;

test.before(async (t) => {
  const az = await startAzurite();
  t.context = { az, target: parseStorageTarget(az.connectionString)! };
});
test.after.always(async (t) => {
  await t.context.az?.stop();
});

let counter = 0;
const freshContainer = async (target: StorageTarget): Promise<BlobContainer> => {
  const c = openContainer(target, `c${process.pid}-${++counter}`, { retryDelayMs: 10 });
  await c.ensureExists();
  return c;
};
const md5 = (b: Buffer) => createHash("md5").update(b).digest();
const T = 1717094160;

test("putBlob stores metadata and the MD5 in one request; getProperties reads them back", async (t) => {
  const c = await freshContainer(t.context.target);
  const data = Buffer.from("exact bytes\x00\xff", "latin1");
  const metadata = metadataForEntry({
    type: EntryType.File,
    mode: 0o100640,
    uid: 1000,
    gid: 100,
    mtimeSec: T,
  });
  await c.putBlob("dir/file.bin", data, { metadata });
  const props = await c.getProperties("dir/file.bin");
  t.truthy(props);
  t.is(props!.size, data.length);
  t.deepEqual(props!.metadata, {
    owner: "1000",
    group: "100",
    permissions: "0640",
    modtime: "2024-05-30 18:36:00 +0000",
  });
  t.deepEqual(props!.contentMD5, md5(data));
  t.deepEqual(await c.download("dir/file.bin"), data);
  t.is(await c.getProperties("dir/missing"), undefined);

  await c.putBlob("empty-dir", Buffer.alloc(0), {
    metadata: metadataForEntry({
      type: EntryType.Directory,
      mode: 0o40755,
      uid: 0,
      gid: 0,
      mtimeSec: T,
    }),
  });
  const stub = await c.getProperties("empty-dir");
  t.is(stub!.size, 0);
  t.is(stub!.metadata.hdi_isfolder, "true");
  t.deepEqual(stub!.contentMD5, md5(Buffer.alloc(0)));

  await c.putText("logs/run.txt", "line 1\nline 2\n");
  t.is((await c.download("logs/run.txt")).toString(), "line 1\nline 2\n");
  const text = await c.client.getBlobClient("logs/run.txt").getProperties();
  t.is(text.contentType, "text/plain; charset=utf-8");

  t.true(await c.deleteBlob("logs/run.txt"));
  t.false(await c.deleteBlob("logs/run.txt"));
  const err = await t.throwsAsync(c.download("logs/run.txt"), { instanceOf: BlobOperationError });
  t.is(err.statusCode, 404);
  t.is(err.code, "BlobNotFound");
  t.false(err.retryable);
  t.regex(
    err.message,
    /^download blob "logs\/run.txt" in container "c\d+-\d+": HTTP 404 BlobNotFound/,
  );
});

const collect = async (it: AsyncIterable<BlobLevelEntry>): Promise<BlobLevelEntry[]> => {
  const out: BlobLevelEntry[] = [];
  for await (const e of it) out.push(e);
  return out;
};

test("listLevel returns exactly one level, with metadata, across pages", async (t) => {
  const c = await freshContainer(t.context.target);
  const meta = (i: number) => ({ owner: String(i), permissions: "0644" });
  const puts: Array<Promise<void>> = [];
  for (let i = 0; i < 20; i++) {
    puts.push(
      c.putBlob(`tree/f${String(i).padStart(2, "0")}`, Buffer.from([i]), { metadata: meta(i) }),
    );
  }
  for (let d = 0; d < 5; d++)
    puts.push(c.putBlob(`tree/d${d}/x`, Buffer.from("x"), { metadata: {} }));
  puts.push(c.putBlob("tree/d0", Buffer.alloc(0), { metadata: { hdi_isfolder: "true" } }));
  puts.push(c.putBlob("tree/d1/sub/deep", Buffer.from("y"), { metadata: {} }));
  puts.push(c.putBlob("treehouse", Buffer.from("z"), { metadata: {} }));
  puts.push(c.putBlob("other/z", Buffer.from("z"), { metadata: {} }));
  await Promise.all(puts);

  // Azurite honours maxresults, so a page size of 4 takes several requests.
  let pages = 0;
  for await (const _ of c.client
    .listBlobsByHierarchy("/", { prefix: "tree/" })
    .byPage({ maxPageSize: 4 }))
    pages++;
  t.true(pages >= 7, `${pages} pages`);

  const level = await collect(c.listLevel("tree/", { pageSize: 4 }));
  const prefixes = level
    .filter((e) => e.kind === "prefix")
    .map((e) => e.name)
    .sort();
  const blobs = level.filter((e) => e.kind === "blob");
  t.deepEqual(prefixes, ["tree/d0/", "tree/d1/", "tree/d2/", "tree/d3/", "tree/d4/"]);
  t.deepEqual(
    blobs.map((b) => b.name).sort(),
    [
      ...Array.from({ length: 20 }, (_, i) => `tree/f${String(i).padStart(2, "0")}`),
      "tree/d0",
    ].sort(),
  );
  t.is(level.length, 26, "no entry twice");
  for (const b of blobs) {
    if (b.kind !== "blob") continue;
    if (b.name === "tree/d0") {
      t.deepEqual(b.metadata, { hdi_isfolder: "true" });
      t.is(b.size, 0);
      continue;
    }
    const i = Number(b.name.slice(6));
    t.deepEqual(b.metadata, meta(i));
    t.is(b.size, 1);
    t.deepEqual(b.contentMD5, md5(Buffer.from([i])));
    t.true(b.lastModified instanceof Date);
  }
  // Same answer in one page.
  t.is((await collect(c.listLevel("tree/"))).length, 26);

  const root = await collect(c.listLevel(""));
  t.deepEqual(root.map((e) => `${e.kind}:${e.name}`).sort(), [
    "blob:treehouse",
    "prefix:other/",
    "prefix:tree/",
  ]);
  const d1 = await collect(c.listLevel("tree/d1/"));
  t.deepEqual(d1.map((e) => `${e.kind}:${e.name}`).sort(), [
    "blob:tree/d1/x",
    "prefix:tree/d1/sub/",
  ]);
  t.deepEqual(await collect(c.listLevel("nothing/")), []);
  await t.throwsAsync(collect(c.listLevel("tree")), { instanceOf: UsageError });

  // nameOrder: prefixes merged among the blobs, in name order across pages of every size.
  await Promise.all([
    c.putBlob("tree/d2-x", Buffer.from("x"), { metadata: {} }),
    c.putBlob("tree/d2.y", Buffer.from("y"), { metadata: {} }),
    c.putBlob("tree/d2", Buffer.alloc(0), { metadata: { hdi_isfolder: "true" } }),
  ]);
  const all = (await collect(c.listLevel("tree/"))).map((e) => e.name).sort();
  t.is(all.length, 29);
  for (const pageSize of [1, 2, 3, 4, 7, 100]) {
    const ordered = (await collect(c.listLevel("tree/", { pageSize, nameOrder: true }))).map(
      (e) => e.name,
    );
    t.deepEqual(ordered, all, `page size ${pageSize}`);
  }
  t.true(all.indexOf("tree/d2") < all.indexOf("tree/d2-x"));
  t.true(all.indexOf("tree/d2.y") < all.indexOf("tree/d2/"));
});

test("escaped names survive Azurite byte for byte, in listings too", async (t) => {
  const c = await freshContainer(t.context.target);
  const paths = [
    Buffer.from("new\nline"),
    Buffer.from("back\\slash"),
    Buffer.from("trailing."),
    Buffer.from("日本 %20 + #?&="),
    Buffer.from([0x66, 0xff, 0xfe]),
    Buffer.from("pua\uef41"),
  ];
  const names = paths.map((p) => blobNameForPath(p, "pre"));
  await Promise.all(names.map((n, i) => c.putBlob(n, Buffer.from([i]), { metadata: {} })));
  const listed = (await collect(c.listLevel("pre/"))).map((e) => e.name).sort();
  t.deepEqual(listed, [...names].sort());
  for (const [i, n] of names.entries()) t.deepEqual(await c.download(n), Buffer.from([i]));
});

test("ensureExists: creates once, explains a refused credential without leaking it", async (t) => {
  const { az, target } = t.context;
  const c = openContainer(target, `made-${process.pid}`);
  await c.ensureExists();
  await c.ensureExists();
  t.true(await c.client.exists());

  const wrongKey = Buffer.alloc(64, 7).toString("base64");
  const bad = parseStorageTarget(
    az.connectionString.replace(/AccountKey=[^;]+/, `AccountKey=${wrongKey}`),
  )!;
  const err = await t.throwsAsync(openContainer(bad, "other", { maxRetries: 0 }).ensureExists(), {
    instanceOf: BlobOperationError,
  });
  t.is(err.statusCode, 403);
  t.false(err.retryable);
  t.is(err.operation, "create-container");
  t.true(
    err.message.startsWith(
      `create-container container "other" (${az.blobEndpoint}/other): HTTP 403`,
    ),
    err.message,
  );
  t.regex(err.message, /role assignment/);
  t.false(err.message.includes(wrongKey));
  t.false(err.message.includes(az.accountKey));
});

test("exists and ensureExists go out without the SDK: false before, true after, a second create finds it made, a refused key is a container-properties error", async (t) => {
  const { az, target } = t.context;
  const c = openContainer(target, `direct-${process.pid}`, { maxRetries: 0 });
  t.true(c.directPutBlob, "the connection-string client has the direct transport");
  t.false(await c.exists());
  t.false(await c.client.exists(), "the SDK agrees");
  await c.ensureExists();
  t.true(await c.exists());
  t.true(await c.client.exists(), "the SDK sees it made");
  await c.ensureExists(); // 409 ContainerAlreadyExists: fine

  const wrongKey = Buffer.alloc(64, 9).toString("base64");
  const bad = parseStorageTarget(
    az.connectionString.replace(/AccountKey=[^;]+/, `AccountKey=${wrongKey}`),
  )!;
  const err = await t.throwsAsync(openContainer(bad, c.name, { maxRetries: 0 }).exists(), {
    instanceOf: BlobOperationError,
  });
  t.is(err.statusCode, 403);
  t.is(err.operation, "container-properties");
  t.regex(err.message, new RegExp(`container "${c.name}"`));
  t.false(err.message.includes(wrongKey));
});

test("SAS URL targets: a container SAS can use (but not create) its container", async (t) => {
  const { az, target } = t.context;
  const owner = await freshContainer(target);
  const sas = generateBlobSASQueryParameters(
    {
      containerName: owner.name,
      permissions: ContainerSASPermissions.parse("racwl"),
      expiresOn: new Date(Date.now() + 3600_000),
    },
    new StorageSharedKeyCredential(az.accountName, az.accountKey),
  ).toString();
  const sasTarget = parseStorageTarget(`${az.blobEndpoint}/${owner.name}?${sas}`)!;
  t.like(sasTarget, { kind: "sas-url", container: owner.name });
  const c = openContainer(sasTarget);
  await c.ensureExists(); // 403 on create, but listable: fine
  await c.putBlob("via-sas", Buffer.from("s"), { metadata: { owner: "7" } });
  t.is((await owner.getProperties("via-sas"))!.metadata.owner, "7");
  const sig = new URLSearchParams(sas).get("sig")!;
  const err = await t.throwsAsync(
    openContainer(sasTarget, "elsewhere", { maxRetries: 0 }).ensureExists(),
    {
      instanceOf: BlobOperationError,
    },
  );
  t.is(err.statusCode, 403);
  t.false(err.message.includes(sig));
  t.false(err.message.includes(encodeURIComponent(sig)));
});
