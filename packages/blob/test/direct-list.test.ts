import { createHash } from "node:crypto";
import anyTest, { type TestFn } from "ava";
import { BlobServiceClient } from "@azure/storage-blob";
import { startAzurite, startFaultProxy, type AzuriteFixture } from "@hsmfleet/testkit";
import {
  BlobContainer,
  openContainer,
  parseStorageTarget,
  type BlobLevelEntry,
  type RetryInfo,
} from "../src/index.js";
import { parseListBlobs } from "../src/direct-list.js";

const test = anyTest as TestFn<{ az: AzuriteFixture }>;

test.before(async (t) => {
  t.context = { az: await startAzurite() };
});
test.after.always(async (t) => {
  await t.context.az?.stop();
});

const NAMES = [
  "a.txt",
  "dir/b & c <d>.txt",
  "dir/sub/ümlaut 'quoted' \"double\".bin",
  "dir/sub/%41 percent",
  "dir/stub",
  "z/empty",
];

const seed = async (az: AzuriteFixture, container: string): Promise<void> => {
  const c = BlobServiceClient.fromConnectionString(az.connectionString).getContainerClient(
    container,
  );
  await c.create();
  for (const [i, name] of NAMES.entries()) {
    const body = Buffer.alloc(i * 100, i);
    await c.getBlockBlobClient(name).upload(body, body.length, {
      ...(i % 2 === 0
        ? { blobHTTPHeaders: { blobContentMD5: createHash("md5").update(body).digest() } }
        : {}),
      metadata:
        i === 4
          ? { hdi_isfolder: "true" }
          : { owner: "1000", note: `a & b < c > "d" 'e' ${i}`, empty: "" },
    });
  }
};

/** Every level of the tree, depth first, as listLevel yields it. */
const walk = async (c: BlobContainer, pageSize?: number): Promise<BlobLevelEntry[]> => {
  const out: BlobLevelEntry[] = [];
  const level = async (prefix: string): Promise<void> => {
    for await (const e of c.listLevel(prefix, pageSize !== undefined ? { pageSize } : {})) {
      out.push(e);
      if (e.kind === "prefix") await level(e.name);
    }
  };
  await level("");
  return out;
};

test("a direct listing (no SDK) yields what the SDK's does: names with XML specials and non-ASCII, sizes, ETags, MD5s, metadata, prefixes, across pages", async (t) => {
  const { az } = t.context;
  const container = `list${process.pid}`;
  await seed(az, container);
  const target = parseStorageTarget(az.connectionString)!;
  const direct = openContainer(target, container);
  t.truthy(direct.direct, "the container has a direct transport");
  const sdk = new BlobContainer(
    BlobServiceClient.fromConnectionString(az.connectionString).getContainerClient(container),
  );
  t.is(sdk.direct, undefined);
  const expected = await walk(sdk);
  t.is(expected.filter((e) => e.kind === "blob").length, NAMES.length);
  t.deepEqual(await walk(direct), expected);
  // One entry per page: markers carry the listing on.
  t.deepEqual(await walk(direct, 1), await walk(sdk, 1));
  // Missing container: the same BlobOperationError as through the SDK.
  const missing = openContainer(target, `nolist${process.pid}`);
  const err = await t.throwsAsync(walk(missing));
  t.regex(err.message, /list-blobs|ContainerNotFound|404/);
});

test("a direct listing (sent without the SDK) that breaks off or gets a 503 is retried", async (t) => {
  const { az } = t.context;
  const container = `listf${process.pid}`;
  await seed(az, container);
  const agents: string[] = [];
  const proxy = await startFaultProxy({
    target: az.blobEndpoint,
    retryAfterSeconds: 0,
    onRequest: [
      { n: 1, fault: "truncate" },
      { n: 2, fault: "status503" },
    ],
    eligible: (req) => {
      const list = (req.url ?? "").includes("comp=list");
      if (list) agents.push(String(req.headers["user-agent"]));
      return list;
    },
  });
  t.teardown(() => proxy.stop());
  const retries: RetryInfo[] = [];
  const c = openContainer(
    parseStorageTarget(proxy.rewriteConnectionString(az.connectionString))!,
    container,
    { retryDelayMs: 1, onRetry: (i) => retries.push(i) },
  );
  const names = (await walk(c)).filter((e) => e.kind === "blob").map((e) => e.name);
  t.deepEqual([...names].sort(), [...NAMES].sort());
  t.is(retries.length, 2, retries.map((r) => r.reason).join(", "));
  // Sent without the SDK.
  t.true(
    agents.length > 0 && agents.every((a) => a.startsWith("hsmfleet-direct/")),
    agents.join(", "),
  );
});

test("the scanner: character references, Encoded names, self-closing metadata, NextMarker", (t) => {
  const page = parseListBlobs(
    `<?xml version="1.0" encoding="utf-8"?><EnumerationResults ContainerName="c"><Blobs>` +
      `<Blob><Name Encoded="true">a%0Bb</Name><Properties><Last-Modified>Sun, 06 Dec 2026 01:00:00 GMT</Last-Modified><Etag>0x1</Etag><Content-Length>12</Content-Length></Properties><Metadata><k>x &#x26; y &#60; &amp;lt;</k><e /></Metadata></Blob>` +
      `<BlobPrefix><Name>p &amp; q/</Name></BlobPrefix>` +
      `</Blobs><NextMarker>m&amp;1</NextMarker></EnumerationResults>`,
  );
  t.deepEqual(page.prefixes, ["p & q/"]);
  t.is(page.blobs[0]!.name, "a\u000bb");
  t.is(page.blobs[0]!.size, 12);
  t.is(page.blobs[0]!.etag, "0x1");
  t.deepEqual(page.blobs[0]!.metadata, { k: "x & y < &lt;", e: "" });
  t.is(page.blobs[0]!.lastModified.toISOString(), "2026-12-06T01:00:00.000Z");
  t.is(page.nextMarker, "m&1");
  t.throws(() => parseListBlobs("<html>"), { message: /EnumerationResults/ });
});
