import { createHash } from "node:crypto";
import { createServer, Agent, type IncomingHttpHeaders } from "node:http";
import type { AddressInfo } from "node:net";
import anyTest, { type TestFn } from "ava";
import {
  BlobServiceClient,
  ContainerSASPermissions,
  StorageSharedKeyCredential,
  generateBlobSASQueryParameters,
} from "@azure/storage-blob";
import { crc64, crc64Bytes } from "@hsmfleet/fs/crc64";
import { startAzurite, startFaultProxy, type AzuriteFixture } from "@hsmfleet/testkit";
import {
  BlobOperationError,
  createRetryPolicy,
  openContainer,
  parseStorageTarget,
  redactSecrets,
  type RetryInfo,
  type StorageTarget,
} from "../src/index.js";
import { BearerTokenCache, type AccessTokenLike } from "../src/bearer-token.js";
import { DirectBlobTransport, containerAddress } from "../src/direct-put.js";

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
const name = (what: string): string => `d${process.pid}-${what}-${++counter}`.slice(0, 63);

test("Put Blob goes out directly (Shared Key) and Azurite stores content, metadata, type and Content-MD5", async (t) => {
  const container = openContainer(t.context.target, name("sk"), { retryDelayMs: 10 });
  await container.ensureExists();
  t.true(container.directPutBlob, "a client from createBlobServiceClient puts directly");
  const body = Buffer.from("small file body\n");
  const metadata = {
    owner: "1000",
    group: "1000",
    permissions: "0644",
    modtime: "2024-01-02 03:04:05 +0000",
    hdi_isfolder: "true",
  };
  const names = ["plain.txt", "odd names/a b%c'd(e)!~*+=&;.bin", "ünïcödé/日本/x", "dir/", "a_b-c"];
  for (const n of names) {
    await container.putBlob(n, body, { metadata, contentType: "text/plain" });
  }
  await container.putBlob("empty", Buffer.alloc(0), { metadata: {} });
  const sdk = BlobServiceClient.fromConnectionString(t.context.az.connectionString);
  const c = sdk.getContainerClient(container.name);
  for (const n of names) {
    const blob = c.getBlobClient(n);
    const props = await blob.getProperties();
    t.deepEqual(props.metadata, metadata, n);
    t.is(props.contentType, "text/plain");
    t.is(props.blobType, "BlockBlob");
    t.deepEqual(Buffer.from(props.contentMD5!), md5(body), "the whole-blob MD5 is stored");
    t.true((await blob.downloadToBuffer()).equals(body), n);
  }
  const empty = await c.getBlobClient("empty").getProperties();
  t.is(empty.contentLength, 0);
  t.deepEqual(Buffer.from(empty.contentMD5!), md5(Buffer.alloc(0)));
  // The names the SDK lists are the names that were put.
  const listed: string[] = [];
  for await (const b of c.listBlobsFlat()) listed.push(b.name);
  t.deepEqual(listed.sort(), [...names, "empty"].sort());
});

test("Put Block goes out directly too: CRC64 or MD5 per block, ids with + / =, committed byte-exact", async (t) => {
  const container = openContainer(t.context.target, name("blocks"), { retryDelayMs: 10 });
  await container.ensureExists();
  t.true(container.directPutBlob);
  const parts = [0, 1, 2].map((i) => Buffer.alloc(1000 + i, 65 + i));
  // Base64 ids with every character that needs escaping in a query ('+', '/', '=').
  const ids = parts.map((_, i) => Buffer.from([0xfb, 0xef, 0xff, i]).toString("base64"));
  t.true(ids.every((id) => id.includes("+") && id.includes("/") && id.includes("=")));
  // Azurite checks the Shared Key signature (which covers comp and blockid) and Content-MD5.
  await container.stageBlock("odd name/ü b%.bin", ids[0]!, parts[0]!, {
    contentCrc64: crc64Bytes(crc64(parts[0]!)),
  });
  await container.stageBlock("odd name/ü b%.bin", ids[1]!, parts[1]!, {
    contentMD5: md5(parts[1]!),
  });
  await container.stageBlock("odd name/ü b%.bin", ids[2]!, parts[2]!); // CRC64 computed
  await container.commitBlockList("odd name/ü b%.bin", ids, { metadata: { owner: "3" } });
  const blob = BlobServiceClient.fromConnectionString(t.context.az.connectionString)
    .getContainerClient(container.name)
    .getBlobClient("odd name/ü b%.bin");
  t.true((await blob.downloadToBuffer()).equals(Buffer.concat(parts)));
  t.is((await blob.getProperties()).metadata?.["owner"], "3");
  // A block whose body does not match its Content-MD5 is refused by the service, not retried.
  const err = await t.throwsAsync(
    container.stageBlock("bad", ids[0]!, parts[0]!, {
      contentMD5: md5(parts[1]!),
      localPath: "/x",
    }),
    { instanceOf: BlobOperationError },
  );
  t.is(err.operation, "stage-block");
  t.is(err.statusCode, 400);
  t.regex(err.message, /^stage-block \/x → blob "bad" in container "d\d+-blocks-\d+": HTTP 400/);
});

test("a Put Block answered 503 or reset is retried by the same policy", async (t) => {
  const { az } = t.context;
  const proxy = await startFaultProxy({
    target: az.blobEndpoint,
    retryAfterSeconds: 0,
    onRequest: [
      { n: 1, fault: "status503" },
      { n: 2, fault: "reset" },
    ],
    eligible: (req) => req.method === "PUT" && (req.url ?? "").includes("comp=block&"),
  });
  t.teardown(() => proxy.stop());
  const target = parseStorageTarget(proxy.rewriteConnectionString(az.connectionString))!;
  const retries: RetryInfo[] = [];
  const container = openContainer(target, name("blockfaults"), {
    retryDelayMs: 10,
    onRetry: (i) => retries.push(i),
  });
  await container.ensureExists();
  const body = Buffer.from("block body ".repeat(500));
  const id = Buffer.from("block-0").toString("base64");
  await container.stageBlock("f", id, body);
  await container.commitBlockList("f", [id], { metadata: {} });
  t.deepEqual(
    retries.map((r) => r.reason),
    ["503", "ECONNRESET"],
  );
  t.true((await container.download("f")).equals(body));
});

test("a SAS target puts directly with the token appended", async (t) => {
  const { az } = t.context;
  const cname = name("sas");
  await openContainer(t.context.target, cname).ensureExists();
  const sas = generateBlobSASQueryParameters(
    {
      containerName: cname,
      permissions: ContainerSASPermissions.parse("racwl"),
      expiresOn: new Date(Date.now() + 3600_000),
    },
    new StorageSharedKeyCredential(az.accountName, az.accountKey),
  ).toString();
  const target = parseStorageTarget(`${az.blobEndpoint}/${cname}?${sas}`)!;
  const container = openContainer(target, undefined, { retryDelayMs: 10 });
  t.true(container.directPutBlob);
  await container.putBlob("via-sas", Buffer.from("sas body"), { metadata: { owner: "7" } });
  const got = await BlobServiceClient.fromConnectionString(az.connectionString)
    .getContainerClient(cname)
    .getBlobClient("via-sas")
    .downloadToBuffer();
  t.is(got.toString(), "sas body");
});

test("a wrong account key: HTTP 403 AuthenticationFailed, not retried, no secret in the message", async (t) => {
  const { az } = t.context;
  const wrongKey = Buffer.alloc(64, 7).toString("base64");
  const target = parseStorageTarget(
    az.connectionString.replace(/AccountKey=[^;]+/, `AccountKey=${wrongKey}`),
  )!;
  const retries: RetryInfo[] = [];
  const container = openContainer(target, name("denied"), {
    retryDelayMs: 10,
    onRetry: (i) => retries.push(i),
  });
  const err = await t.throwsAsync(
    container.putBlob("x", Buffer.from("x"), { metadata: {}, localPath: "/data/x" }),
    { instanceOf: BlobOperationError },
  );
  t.is(err.statusCode, 403);
  t.regex(err.code ?? "", /^(AuthenticationFailed|AuthorizationFailure)$/, "Azurite checked it");
  t.false(err.retryable);
  t.is(retries.length, 0, "403 is not retried");
  t.regex(err.message, /^put-blob \/data\/x → blob "x" in container "d\d+-denied-\d+": HTTP 403/);
  t.false(err.message.includes(wrongKey));
  t.false(/SharedKey \w+:/.test(err.message));
  t.is(redactSecrets(err.message), err.message);
});

test("a missing container: HTTP 404 ContainerNotFound with the service's message", async (t) => {
  const container = openContainer(t.context.target, name("missing"), { retryDelayMs: 10 });
  const err = await t.throwsAsync(container.putBlob("x", Buffer.from("x"), { metadata: {} }), {
    instanceOf: BlobOperationError,
  });
  t.is(err.statusCode, 404);
  t.is(err.code, "ContainerNotFound");
  t.false(err.retryable);
  t.regex(err.message, /HTTP 404 ContainerNotFound: The specified container does not exist/);
});

test("through the fault proxy: 503 and 429 (Retry-After), resets and 500s are retried by the same policy", async (t) => {
  const { az } = t.context;
  const proxy = await startFaultProxy({
    target: az.blobEndpoint,
    retryAfterSeconds: 0,
    onRequest: [
      { n: 1, fault: "status503" },
      { n: 2, fault: "status429" },
      { n: 4, fault: "reset" },
      { n: 6, fault: "status500" },
      { n: 7, fault: "truncate" },
    ],
    eligible: (req) => req.method === "PUT" && !(req.url ?? "").includes("restype=container"),
  });
  t.teardown(() => proxy.stop());
  const target = parseStorageTarget(proxy.rewriteConnectionString(az.connectionString))!;
  const retries: RetryInfo[] = [];
  const container = openContainer(target, name("faults"), {
    retryDelayMs: 10,
    onRetry: (i) => retries.push(i),
  });
  await container.ensureExists();
  const bodies = [0, 1, 2, 3].map((i) => Buffer.from(`body ${i} `.repeat(100 + i)));
  for (const [i, b] of bodies.entries()) {
    await container.putBlob(`f${i}`, b, { metadata: { owner: String(i) } });
  }
  t.deepEqual(
    retries.map((r) => r.reason),
    ["503", "429", "ECONNRESET", "500", "ECONNRESET"],
  );
  const c = BlobServiceClient.fromConnectionString(az.connectionString).getContainerClient(
    container.name,
  );
  for (const [i, b] of bodies.entries()) {
    const blob = c.getBlobClient(`f${i}`);
    t.true((await blob.downloadToBuffer()).equals(b));
    t.is((await blob.getProperties()).metadata?.["owner"], String(i));
  }
});

test("retries that run out end in a retryable BlobOperationError with the last status", async (t) => {
  const { az } = t.context;
  const proxy = await startFaultProxy({
    target: az.blobEndpoint,
    retryAfterSeconds: 0,
    rates: { status503: 1 },
    eligible: (req) => req.method === "PUT" && !(req.url ?? "").includes("restype=container"),
  });
  t.teardown(() => proxy.stop());
  const container = openContainer(
    parseStorageTarget(proxy.rewriteConnectionString(az.connectionString))!,
    name("busy"),
    { retryDelayMs: 5, maxRetries: 2 },
  );
  await container.ensureExists();
  const err = await t.throwsAsync(container.putBlob("b", Buffer.from("b"), { metadata: {} }), {
    instanceOf: BlobOperationError,
  });
  t.is(err.statusCode, 503);
  t.is(err.code, "ServerBusy");
  t.true(err.retryable);
  t.is(proxy.counters().injected.status503, 3, "1 try + 2 retries");
});

test("an aborted Put Blob is reported as aborted and not retried", async (t) => {
  const container = openContainer(t.context.target, name("abort"), { retryDelayMs: 10 });
  await container.ensureExists();
  const ac = new AbortController();
  ac.abort();
  const err = await t.throwsAsync(
    container.putBlob("a", Buffer.from("a"), { metadata: {}, abortSignal: ac.signal }),
    { instanceOf: BlobOperationError },
  );
  t.is(err.code, "ABORTED");
  t.false(err.retryable);
});

// ---------------------------------------------------------------------------------------------
// Bearer tokens: Azurite accepts OAuth over https only, so these use a loopback recorder that
// answers like the service (a recording device, not storage).

const bearerServer = async (accept: (auth: string | undefined) => boolean) => {
  const seen: IncomingHttpHeaders[] = [];
  const server = createServer((req, res) => {
    req.resume();
    req.on("end", () => {
      seen.push(req.headers);
      if (accept(req.headers.authorization)) {
        res.writeHead(201, { "content-length": "0" });
        res.end();
        return;
      }
      const body =
        '<?xml version="1.0" encoding="utf-8"?><Error><Code>InvalidAuthenticationInfo</Code>' +
        "<Message>Server failed to authenticate the request.</Message></Error>";
      res.writeHead(401, {
        "x-ms-error-code": "InvalidAuthenticationInfo",
        "content-length": Buffer.byteLength(body),
      });
      res.end(body);
    });
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const port = (server.address() as AddressInfo).port;
  return { seen, url: `http://127.0.0.1:${port}/acct/box`, close: () => server.close() };
};

test("bearer: the token is fetched once, reused, refreshed near expiry and after a 401", async (t) => {
  let valid = "tok-1";
  const srv = await bearerServer((auth) => auth === `Bearer ${valid}`);
  t.teardown(() => srv.close());
  let now = 1_000_000;
  let issued = 0;
  const source = {
    getToken: (): Promise<AccessTokenLike> => {
      issued++;
      return Promise.resolve({ token: `tok-${issued}`, expiresOnTimestamp: now + 3600_000 });
    },
  };
  const agent = new Agent({ keepAlive: true });
  t.teardown(() => agent.destroy());
  const transport = new DirectBlobTransport({
    auth: { kind: "bearer", credential: source },
    agent,
    retryPolicy: createRetryPolicy({ retryDelayMs: 1 }),
    allowInsecureBearer: true,
  });
  const address = containerAddress(srv.url);
  const put = (n: string) =>
    transport.putBlob(address, n, Buffer.from(n), {
      metadata: { owner: "1" },
      contentMD5: md5(Buffer.from(n)),
    });
  await Promise.all([put("a"), put("b"), put("c")]);
  t.is(issued, 1, "one token for concurrent requests");
  // The service stops accepting it: one fresh token, one resend.
  valid = "tok-2";
  await put("d");
  t.is(issued, 2);
  t.is(srv.seen.at(-1)?.authorization, "Bearer tok-2");
  // Two minutes before expiry the token is renewed.
  now += 3600_000 - 60_000;
  valid = "tok-3";
  const cache = new BearerTokenCache(source, { now: () => now });
  t.is(await cache.get(), "tok-3");
  t.is(await cache.get(), "tok-3");
  t.is(issued, 3);
  // A token that keeps being refused is a non-retryable 401.
  valid = "never";
  const err = await t.throwsAsync(put("e"));
  t.is((err as { statusCode?: number }).statusCode, 401);
  t.false(err.message.includes("tok-"), "no token in the message");
  t.true(
    srv.seen.every(
      (h) => h["x-ms-version"] === "2026-04-06" && h["x-ms-blob-type"] === "BlockBlob",
    ),
  );
});

test("bearer tokens are not sent over http:// unless allowed (as the SDK)", (t) => {
  const transport = new DirectBlobTransport({
    auth: { kind: "bearer", credential: { getToken: () => Promise.resolve(null) } },
    agent: new Agent(),
    retryPolicy: createRetryPolicy(),
  });
  t.false(transport.supports(containerAddress("http://127.0.0.1:1/acct/box")));
  t.true(transport.supports(containerAddress("https://acct.blob.core.windows.net/box")));
});

test("directPutBlob: false (or HSMFLEET_DIRECT_PUT=0) keeps Put Blob on the SDK", async (t) => {
  const container = openContainer(t.context.target, name("sdk"), { directPutBlob: false });
  t.false(container.directPutBlob);
  await container.ensureExists();
  await container.putBlob("via-sdk", Buffer.from("sdk body"), { metadata: { owner: "1" } });
  t.is((await container.download("via-sdk")).toString(), "sdk body");
});
