import { createHash } from "node:crypto";
import anyTest, { type TestFn } from "ava";
import { BlobServiceClient } from "@azure/storage-blob";
import { startAzurite, startFaultProxy, type AzuriteFixture } from "@hsmfleet/testkit";
import { BlobContainer, openContainer, parseStorageTarget, type RetryInfo } from "../src/index.js";

const test = anyTest as TestFn<{ az: AzuriteFixture }>;

test.before(async (t) => {
  t.context = { az: await startAzurite() };
});
test.after.always(async (t) => {
  await t.context.az?.stop();
});

const NAMES = ["a.txt", "dir/b & c <d>.txt", "dir/sub/ümlaut 'q' \"d\".bin", "dir/%41 pct", "stub"];

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
          : { Owner: "1000", permissions: "0640", note: `a & b ${i}`, empty: "" },
    });
  }
};

test("direct Get Blob Properties (no SDK) gives what the SDK's does: size, metadata (lower-case keys, empty values left out), MD5, mtime, ETag; a missing blob is undefined", async (t) => {
  const { az } = t.context;
  const container = `head${process.pid}`;
  await seed(az, container);
  const direct = openContainer(parseStorageTarget(az.connectionString)!, container);
  t.truthy(direct.direct, "the container has a direct transport");
  const sdk = new BlobContainer(
    BlobServiceClient.fromConnectionString(az.connectionString).getContainerClient(container),
  );
  t.is(sdk.direct, undefined);
  for (const name of NAMES) {
    const expected = await sdk.getProperties(name);
    t.truthy(expected, name);
    t.deepEqual(await direct.getProperties(name), expected, name);
  }
  const m = (await direct.getProperties("dir/sub/ümlaut 'q' \"d\".bin"))!.metadata;
  t.is(m["owner"], "1000");
  t.false("empty" in m);
  t.is(await direct.getProperties("no/such blob"), undefined);
  t.is(await sdk.getProperties("no/such blob"), undefined);
  // Missing container: a BlobOperationError naming the operation, as through the SDK.
  const missing = openContainer(parseStorageTarget(az.connectionString)!, `nohead${process.pid}`);
  t.is(await missing.getProperties("x"), undefined);
});

test("direct Get Blob Properties that gets a 503 or a reset is retried, and is sent without the SDK", async (t) => {
  const { az } = t.context;
  const container = `headf${process.pid}`;
  await seed(az, container);
  const agents: string[] = [];
  const proxy = await startFaultProxy({
    target: az.blobEndpoint,
    retryAfterSeconds: 0,
    onRequest: [
      { n: 1, fault: "status503" },
      { n: 2, fault: "reset" },
    ],
    eligible: (req) => {
      const head = req.method === "HEAD";
      if (head) agents.push(String(req.headers["user-agent"]));
      return head;
    },
  });
  t.teardown(() => proxy.stop());
  const retries: RetryInfo[] = [];
  const c = openContainer(
    parseStorageTarget(proxy.rewriteConnectionString(az.connectionString))!,
    container,
    { retryDelayMs: 1, onRetry: (i) => retries.push(i) },
  );
  const p = await c.getProperties("a.txt");
  t.is(p?.size, 0);
  t.is(p?.metadata["permissions"], "0640");
  t.is(retries.length, 2, retries.map((r) => r.reason).join(", "));
  t.true(
    agents.length > 0 && agents.every((a) => a.startsWith("hsmfleet-direct/")),
    agents.join(", "),
  );
});
