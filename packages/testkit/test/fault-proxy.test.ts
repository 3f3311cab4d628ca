import { createServer, request } from "node:http";
import type { IncomingHttpHeaders, Server } from "node:http";
import test from "ava";
import { BlobServiceClient } from "@azure/storage-blob";
import { startAzurite, startFaultProxy } from "../src/index.js";
import type { FaultKind } from "../src/index.js";

/** A real upstream on loopback: echoes the request body after a fixed 64 KiB payload marker. */
const startUpstream = async (): Promise<{ origin: string; server: Server }> => {
  const payload = Buffer.alloc(64 * 1024, 7);
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      const body = req.method === "PUT" ? Buffer.concat(chunks) : payload;
      res.writeHead(200, { "content-length": body.length, "x-path": req.url ?? "" });
      res.end(body);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", () => resolve()));
  const address = server.address();
  if (address === null || typeof address === "string") throw new Error("no port");
  return { origin: `http://127.0.0.1:${address.port}`, server };
};

interface Outcome {
  status?: number;
  headers?: IncomingHttpHeaders;
  body?: Buffer;
  error?: string;
}

const call = (url: string, method = "GET", body?: Buffer): Promise<Outcome> =>
  new Promise((resolve) => {
    const req = request(url, { method, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (c: Buffer) => chunks.push(c));
      res.on("end", () =>
        resolve({ status: res.statusCode, headers: res.headers, body: Buffer.concat(chunks) }),
      );
      res.on("error", (err) => resolve({ status: res.statusCode, error: err.message }));
      res.on("aborted", () => resolve({ status: res.statusCode, error: "aborted" }));
    });
    req.on("error", (err: NodeJS.ErrnoException) => resolve({ error: err.code ?? err.message }));
    req.end(body);
  });

test("faults on chosen request numbers; the rest goes through byte-exact; counters add up", async (t) => {
  const up = await startUpstream();
  t.teardown(() => new Promise<void>((r) => up.server.close(() => r())));
  const proxy = await startFaultProxy({
    target: up.origin,
    retryAfterSeconds: 3,
    onRequest: [
      { n: 2, fault: "status503" },
      { n: 3, fault: "status429" },
      { n: 4, fault: "reset" },
      { n: 5, fault: "truncate" },
      { n: 6, fault: "status403" },
    ],
  });
  t.teardown(() => proxy.stop());

  const ok = await call(`${proxy.url}/a?x=1`);
  t.is(ok.status, 200);
  t.is(ok.body?.length, 64 * 1024);
  t.is(ok.headers?.["x-path"], "/a?x=1");

  const busy = await call(`${proxy.url}/b`, "PUT", Buffer.from("hello"));
  t.is(busy.status, 503);
  t.is(busy.headers?.["retry-after"], "3");
  t.is(busy.headers?.["x-ms-error-code"], "ServerBusy");

  const throttled = await call(`${proxy.url}/c`);
  t.is(throttled.status, 429);
  t.is(throttled.headers?.["retry-after"], "3");

  const reset = await call(`${proxy.url}/d`);
  t.is(reset.status, undefined);
  t.truthy(reset.error, "the client sees a transport error");

  const cut = await call(`${proxy.url}/e`);
  t.true(
    cut.error !== undefined || (cut.body?.length ?? 0) < 64 * 1024,
    "a truncated answer is an error or short",
  );

  const denied = await call(`${proxy.url}/f`);
  t.is(denied.status, 403);
  t.is(denied.headers?.["x-ms-error-code"], "AuthorizationPermissionMismatch");

  const echo = await call(`${proxy.url}/g`, "PUT", Buffer.from("payload"));
  t.is(echo.status, 200);
  t.is(echo.body?.toString(), "payload");

  const c = proxy.counters();
  t.is(c.requests, 7);
  t.is(c.forwarded, 3); // ok, truncate (forwarded then cut), echo
  t.deepEqual(
    Object.entries(c.injected)
      .filter(([, n]) => n > 0)
      .map(([k]) => k)
      .sort(),
    ["reset", "status403", "status429", "status503", "truncate"],
  );
  t.is(proxy.totalInjected(), 5);
});

test("rates come from a seeded generator: the same seed gives the same faults", async (t) => {
  const up = await startUpstream();
  t.teardown(() => new Promise<void>((r) => up.server.close(() => r())));
  const run = async (seed: number): Promise<Record<FaultKind, number>> => {
    const proxy = await startFaultProxy({
      target: up.origin,
      seed,
      rates: { status503: 0.2, status429: 0.2, status500: 0.1 },
    });
    try {
      for (let i = 0; i < 60; i++) await call(`${proxy.url}/x${i}`);
      return proxy.counters().injected;
    } finally {
      await proxy.stop();
    }
  };
  const a = await run(42);
  const b = await run(42);
  t.deepEqual(a, b);
  const total = a.status503 + a.status429 + a.status500;
  t.true(total > 10 && total < 50, `about half of 60 requests failed (${total})`);
  await t.throwsAsync(
    startFaultProxy({ target: up.origin, rates: { status503: 0.8, reset: 0.5 } }),
    {
      message: /add up to/,
    },
  );
});

test("a stalled request is forwarded whole after the stall; eligible() limits faults", async (t) => {
  const up = await startUpstream();
  t.teardown(() => new Promise<void>((r) => up.server.close(() => r())));
  const proxy = await startFaultProxy({
    target: up.origin,
    stallMs: 200,
    rates: { stall: 1 },
    eligible: (req) => req.method === "PUT",
  });
  t.teardown(() => proxy.stop());
  const got = await call(`${proxy.url}/s`, "GET");
  t.is(got.status, 200);
  const put = await call(`${proxy.url}/s`, "PUT", Buffer.alloc(100_000, 3));
  t.is(put.status, 200);
  t.true(put.body?.equals(Buffer.alloc(100_000, 3)));
  t.is(proxy.counters().injected.stall, 1);
});

test("sits between the Azure SDK and Azurite through a rewritten connection string", async (t) => {
  const azurite = await startAzurite();
  t.teardown(() => azurite.stop());
  const proxy = await startFaultProxy({
    target: azurite.blobEndpoint,
    onRequest: [{ n: 2, fault: "status503" }],
    retryAfterSeconds: 0,
  });
  t.teardown(() => proxy.stop());
  const cs = proxy.rewriteConnectionString(azurite.connectionString);
  t.true(cs.includes(`BlobEndpoint=${proxy.url}/devstoreaccount1`));
  const service = BlobServiceClient.fromConnectionString(cs, {
    retryOptions: { maxTries: 3, retryDelayInMs: 10, maxRetryDelayInMs: 20 },
  });
  const container = service.getContainerClient("proxied");
  await container.create();
  const data = Buffer.alloc(10_000, 9);
  await container.getBlockBlobClient("one").uploadData(data); // 2nd request: 503, retried by the SDK
  const back = await container.getBlobClient("one").downloadToBuffer();
  t.true(back.equals(data));
  t.is(proxy.counters().injected.status503, 1);
});
