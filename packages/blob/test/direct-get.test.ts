import { createHash, randomBytes } from "node:crypto";
import { open, readFile } from "node:fs/promises";
import { join } from "node:path";
import anyTest, { type TestFn } from "ava";
import {
  BlobServiceClient,
  ContainerSASPermissions,
  StorageSharedKeyCredential,
  generateBlobSASQueryParameters,
} from "@azure/storage-blob";
import { startAzurite, startFaultProxy, tempDir, type AzuriteFixture } from "@hsmfleet/testkit";
import {
  BlobChangedError,
  downloadBlobToFile,
  openContainer,
  parseStorageTarget,
  type RetryInfo,
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

const md5 = (b: Buffer): Buffer => createHash("md5").update(b).digest();
let counter = 0;
const name = (what: string): string => `g${process.pid}-${what}-${++counter}`.slice(0, 63);
const MiB = 1024 * 1024;

/** A container holding `blobs` (put with the SDK, Content-MD5 stored). */
const seed = async (
  az: AzuriteFixture,
  container: string,
  blobs: Record<string, Buffer>,
): Promise<void> => {
  const c = BlobServiceClient.fromConnectionString(az.connectionString).getContainerClient(
    container,
  );
  await c.createIfNotExists();
  for (const [n, body] of Object.entries(blobs))
    await c.getBlockBlobClient(n).upload(body, body.length, {
      blobHTTPHeaders: { blobContentMD5: md5(body) },
    });
};

test("downloads go out without the SDK (direct GETs, Shared Key and SAS): ranged and whole, byte-exact, MD5 checked", async (t) => {
  const { az } = t.context;
  const container = name("direct");
  const big = randomBytes(9 * MiB + 5);
  const small = randomBytes(4096);
  await seed(az, container, { big, "dir/small file": small });
  const agents: string[] = [];
  const proxy = await startFaultProxy({
    target: az.blobEndpoint,
    eligible: (req) => {
      if (req.method === "GET" && !(req.url ?? "").includes("comp="))
        agents.push(String(req.headers["user-agent"]));
      return false;
    },
  });
  t.teardown(() => proxy.stop());
  const dir = await tempDir();
  t.teardown(() => dir.cleanup());
  const cred = new StorageSharedKeyCredential(az.accountName, az.accountKey);
  const sas = generateBlobSASQueryParameters(
    {
      containerName: container,
      permissions: ContainerSASPermissions.parse("r"),
      expiresOn: new Date(Date.now() + 3600_000),
    },
    cred,
  ).toString();
  const sharedKey = parseStorageTarget(proxy.rewriteConnectionString(az.connectionString))!;
  const sasTarget = parseStorageTarget(`${proxy.url}/${az.accountName}/${container}?${sas}`)!;
  for (const [label, target] of [
    ["shared key", sharedKey],
    ["SAS", sasTarget],
  ] as const) {
    const c = openContainer(target, container, { retryDelayMs: 10 });
    t.truthy(c.direct, `${label}: the container has a direct transport`);
    agents.length = 0;
    for (const [blob, body, expectedSize] of [
      ["big", big, undefined],
      ["dir/small file", small, small.length],
    ] as const) {
      const path = join(dir.path, `${label}-${blob.replace(/\W/g, "_")}`);
      const fh = await open(path, "w+");
      try {
        const r = await downloadBlobToFile(c, blob, fh, Buffer.from(path), {
          rangeSizeBytes: 4 * MiB,
          ...(expectedSize !== undefined ? { expectedSize } : {}),
        });
        t.true(r.md5Verified, `${label} ${blob}: MD5 verified`);
        t.is(r.bytes, body.length);
      } finally {
        await fh.close();
      }
      t.true((await readFile(path)).equals(body), `${label} ${blob}: byte-exact`);
    }
    // big: 3 ranges; small: one whole GET. All of them direct.
    t.is(agents.length, 4, `${label}: ${agents.join(", ")}`);
    t.true(
      agents.every((a) => a.startsWith("hsmfleet-direct/")),
      `${label}: ${agents.join(", ")}`,
    );
    // Read over the raw socket pool (socket-get.ts), not node:http.
    t.true(
      agents.every((a) => a.includes("(socket)")),
      `${label}: ${agents.join(", ")}`,
    );
  }
});

test("a direct GET whose body breaks off, or that gets a 503, is retried; a changed blob is BlobChangedError", async (t) => {
  const { az } = t.context;
  const container = name("faults");
  const body = randomBytes(6 * MiB);
  await seed(az, container, { f: body });
  const proxy = await startFaultProxy({
    target: az.blobEndpoint,
    retryAfterSeconds: 0,
    onRequest: [
      { n: 1, fault: "truncate" },
      { n: 2, fault: "status503" },
    ],
    eligible: (req) => req.method === "GET" && !(req.url ?? "").includes("comp="),
  });
  t.teardown(() => proxy.stop());
  const retries: RetryInfo[] = [];
  const c = openContainer(
    parseStorageTarget(proxy.rewriteConnectionString(az.connectionString))!,
    container,
    { retryDelayMs: 10, onRetry: (i) => retries.push(i) },
  );
  const dir = await tempDir();
  t.teardown(() => dir.cleanup());
  const path = join(dir.path, "f");
  const fh = await open(path, "w+");
  try {
    const r = await downloadBlobToFile(c, "f", fh, Buffer.from(path), {
      rangeSizeBytes: 4 * MiB,
      concurrency: 1,
    });
    t.true(r.md5Verified);
    t.true((await readFile(path)).equals(body));
    t.is(retries.length, 2, retries.map((x) => x.reason).join(", "));
    t.true(retries.some((x) => x.reason === "503"));
    // The ETag no longer matches: 412 ConditionNotMet through the direct path.
    await t.throwsAsync(
      downloadBlobToFile(c, "f", fh, Buffer.from(path), {
        etag: '"0x8D000000000000"',
        expectedSize: body.length,
      }),
      { instanceOf: BlobChangedError },
    );
  } finally {
    await fh.close();
  }
});

test("a body that keeps breaking off fails after the retries with an error naming the path and the blob", async (t) => {
  const { az } = t.context;
  const container = name("broken");
  const body = randomBytes(2 * MiB);
  await seed(az, container, { "d/f": body });
  const proxy = await startFaultProxy({
    target: az.blobEndpoint,
    onRequest: Array.from({ length: 20 }, (_, i) => ({ n: i + 1, fault: "truncate" as const })),
    eligible: (req) => req.method === "GET" && !(req.url ?? "").includes("comp="),
  });
  t.teardown(() => proxy.stop());
  const c = openContainer(
    parseStorageTarget(proxy.rewriteConnectionString(az.connectionString))!,
    container,
    { retryDelayMs: 1, maxRetries: 2 },
  );
  const dir = await tempDir();
  t.teardown(() => dir.cleanup());
  for (const expectedSize of [undefined, body.length]) {
    const path = join(dir.path, `target ${expectedSize ?? "ranged"}`);
    const fh = await open(path, "w+");
    try {
      const err = await t.throwsAsync(
        downloadBlobToFile(c, "d/f", fh, Buffer.from(path), {
          rangeSizeBytes: MiB,
          ...(expectedSize !== undefined ? { expectedSize } : {}),
        }),
      );
      t.true(err.message.includes(path), err.message);
      t.true(err.message.includes("d/f"), err.message);
    } finally {
      await fh.close();
    }
  }
});
