import test from "ava";
import { startAzurite, startFaultProxy } from "@hsmfleet/testkit";
import {
  BlobContainer,
  BlobOperationError,
  RETRY_POLICY_NAME,
  blobRetryStats,
  createBlobServiceClient,
  parseStorageTarget,
  retryAfterMs,
  retryDelayMs,
} from "../src/index.js";
import type { RetryInfo } from "../src/index.js";

const headers = (h: Record<string, string>) => ({ get: (name: string) => h[name.toLowerCase()] });

test("Retry-After is read in seconds, as an HTTP date, and from x-ms-retry-after-ms", (t) => {
  t.is(retryAfterMs(headers({ "retry-after": "3" })), 3000);
  t.is(retryAfterMs(headers({ "x-ms-retry-after-ms": "250" })), 250);
  const now = Date.parse("2026-01-01T00:00:00Z");
  t.is(retryAfterMs(headers({ "retry-after": "Thu, 01 Jan 2026 00:00:05 GMT" }), now), 5000);
  t.is(retryAfterMs(headers({ "retry-after": "soon" })), undefined);
  t.is(retryAfterMs(headers({})), undefined);
});

test("backoff doubles with jitter between half and all of it, is capped, and never undercuts Retry-After", (t) => {
  const low = () => 0;
  const high = () => 0.999999;
  t.is(retryDelayMs(1, 500, 30_000, low), 250);
  t.is(retryDelayMs(1, 500, 30_000, high), 500);
  t.is(retryDelayMs(3, 500, 30_000, low), 1000);
  t.is(retryDelayMs(3, 500, 30_000, high), 2000);
  t.is(retryDelayMs(20, 500, 30_000, high), 30_000, "capped");
  t.is(retryDelayMs(1, 500, 30_000, low, 4000), 4000, "Retry-After wins over a shorter backoff");
  t.is(retryDelayMs(1, 500, 30_000, low, 120_000), 30_000, "Retry-After is capped too");
});

test("through the fault proxy: 503/429/500/resets/truncations are retried, Retry-After honoured, data intact", async (t) => {
  const azurite = await startAzurite();
  t.teardown(() => azurite.stop());
  const proxy = await startFaultProxy({
    target: azurite.blobEndpoint,
    retryAfterSeconds: 1,
    onRequest: [
      { n: 2, fault: "status429" },
      { n: 4, fault: "status503" },
      { n: 6, fault: "reset" },
      { n: 8, fault: "status500" },
      { n: 10, fault: "truncate" },
    ],
  });
  t.teardown(() => proxy.stop());
  const retries: RetryInfo[] = [];
  const target = parseStorageTarget(proxy.rewriteConnectionString(azurite.connectionString))!;
  const service = createBlobServiceClient(target, {
    retryDelayMs: 10,
    maxRetryDelayMs: 2000,
    onRetry: (info) => retries.push(info),
  });
  const core = (
    service as unknown as {
      pipeline: { _corePipeline: { getOrderedPolicies(): Array<{ name: string }> } };
    }
  ).pipeline._corePipeline;
  const names = core.getOrderedPolicies().map((p) => p.name);
  t.true(names.includes(RETRY_POLICY_NAME), "our policy is installed");
  t.false(names.includes("storageRetryPolicy"), "the SDK's policy is gone");

  const container = new BlobContainer(service.getContainerClient("retries"));
  await container.ensureExists();
  const before = blobRetryStats.retries;
  const payloads = Array.from({ length: 6 }, (_, i) => Buffer.alloc(5000 + i, i + 1));
  for (const [i, data] of payloads.entries())
    await container.putBlob(`b${i}`, data, { metadata: {} });
  const client = service.getContainerClient("retries");
  for (const [i, data] of payloads.entries()) {
    const back = await client.getBlobClient(`b${i}`).downloadToBuffer();
    t.true(back.equals(data), `b${i} intact`);
  }
  t.is(proxy.totalInjected(), 5);
  t.is(retries.length, 5, "every injected fault was retried once");
  t.is(blobRetryStats.retries - before, 5);
  const throttled = retries.find((r) => r.reason === "429")!;
  t.true(
    throttled.delayMs >= 1000,
    `429 waited at least its Retry-After (${throttled.delayMs} ms)`,
  );
  const reasons = retries.map((r) => r.reason);
  for (const r of ["429", "500", "503"]) t.true(reasons.includes(r), `${r} retried`);
  t.log("retry reasons:", reasons.join(", "));
});

test("a 403 is not retried: one request, a clear error", async (t) => {
  const azurite = await startAzurite();
  t.teardown(() => azurite.stop());
  const proxy = await startFaultProxy({
    target: azurite.blobEndpoint,
    rates: { status403: 1 },
    eligible: (req) => req.method === "PUT" && (req.url ?? "").includes("/denied/"),
  });
  t.teardown(() => proxy.stop());
  const retries: RetryInfo[] = [];
  const target = parseStorageTarget(proxy.rewriteConnectionString(azurite.connectionString))!;
  const service = createBlobServiceClient(target, {
    retryDelayMs: 10,
    onRetry: (i) => retries.push(i),
  });
  const container = new BlobContainer(service.getContainerClient("denied"));
  await container.ensureExists();
  const err = await t.throwsAsync(container.putBlob("x", Buffer.from("data"), { metadata: {} }));
  t.true(err instanceof BlobOperationError);
  t.regex(err.message, /put-blob.*"x".*HTTP 403 AuthorizationPermissionMismatch/);
  t.false((err as BlobOperationError).retryable);
  t.is(proxy.counters().injected.status403, 1, "sent once");
  t.is(retries.length, 0);
});
