import { open, writeFile } from "node:fs/promises";
import { join } from "node:path";
import test from "ava";
import { EntryType, metadataForEntry } from "@hsmfleet/core";
import { contentOf, startAzurite, startFaultProxy, tempDir } from "@hsmfleet/testkit";
import {
  BlobContainer,
  MemoryBudget,
  RequestSlots,
  TokenBucket,
  createBlobServiceClient,
  downloadBlobToFile,
  isDataRequest,
  parseStorageTarget,
  rangeLength,
  uploadFile,
} from "../src/index.js";

const MiB = 1024 * 1024;
const metadata = metadataForEntry({
  type: EntryType.File,
  mode: 0o100644,
  uid: 1000,
  gid: 1000,
  mtimeSec: 1717094160,
});

test("data requests are Put Blob, Put Block and blob GETs; a range header gives the bytes", (t) => {
  const base = "http://127.0.0.1:10000/devstoreaccount1/c/a/b";
  t.true(isDataRequest("PUT", base));
  t.true(isDataRequest("PUT", `${base}?comp=block&blockid=AAAA`));
  t.true(isDataRequest("GET", base));
  t.false(isDataRequest("PUT", `${base}?comp=blocklist`));
  t.false(isDataRequest("PUT", `${base}?comp=metadata`));
  t.false(isDataRequest("HEAD", base));
  t.false(
    isDataRequest("GET", "http://127.0.0.1:10000/devstoreaccount1/c?restype=container&comp=list"),
  );
  t.false(isDataRequest("PUT", "http://127.0.0.1:10000/devstoreaccount1/c?restype=container"));
  const h = (v: string) => ({ get: (n: string) => (n === "x-ms-range" ? v : undefined) });
  t.is(rangeLength(h("bytes=0-8388607")), 8 * MiB);
  t.is(rangeLength(h("bytes=100-")), undefined);
});

test("through a real client: data requests take slots, every try takes a request token, payload takes byte tokens, 503s are counted", async (t) => {
  const [az, dir] = await Promise.all([startAzurite(), tempDir("hsmfleet-pacing-")]);
  // The 3rd and 5th data requests answer 503 (retried by the retry policy: each try is paced).
  const proxy = await startFaultProxy({
    target: az.blobEndpoint,
    onRequest: [
      { n: 3, fault: "status503" },
      { n: 5, fault: "status503" },
    ],
    eligible: (req) => req.method === "PUT" && (req.url ?? "").includes("comp=block&"),
    retryAfterSeconds: 0,
  });
  t.teardown(async () => {
    await proxy.stop();
    await az.stop();
    await dir.cleanup();
  });
  const slots = new RequestSlots(3);
  const requests = new TokenBucket(10_000);
  const bytes = new TokenBucket(1024 * MiB);
  const target = parseStorageTarget(proxy.rewriteConnectionString(az.connectionString))!;
  const service = createBlobServiceClient(target, {
    retryDelayMs: 1,
    pacing: { slots, limits: { requests, bytes } },
  });
  const container = new BlobContainer(service.getContainerClient("paced"));
  await container.ensureExists();
  const size = 20 * MiB;
  const content = contentOf(7, Buffer.from("f.bin"), size);
  const src = join(dir.path, "src.bin");
  await writeFile(src, content);
  await uploadFile(container, Buffer.from(src), "f.bin", {
    metadata,
    blockSizeBytes: 4 * MiB,
    concurrency: 8,
  });
  const fh = await open(join(dir.path, "dst.bin"), "w+");
  try {
    await downloadBlobToFile(container, "f.bin", fh, Buffer.from(join(dir.path, "dst.bin")), {
      rangeSizeBytes: 4 * MiB,
      concurrency: 8,
    });
  } finally {
    await fh.close();
  }
  const injected = proxy.counters().injected.status503;
  t.is(injected, 2);
  t.is(slots.totalThrottled, 2, "both 503 answers reached the controller's counters");
  // 5 blocks + 2 retried tries up, 5 ranges down: all held a slot.
  t.is(slots.totalRequests, 5 + 2 + 5);
  t.is(slots.inUse, 0, "every slot came back (GET bodies included)");
  t.true(slots.limit === 3);
  // Payload: 20 MiB up (+ 2 × 4 MiB tried again) and 20 MiB down.
  t.is(bytes.spent, size + 2 * 4 * MiB + size);
  // Every try of every request: at least the data ones, plus create, commit, properties.
  t.true(requests.spent >= 12 + 3, `request tokens ${requests.spent}`);
});

test("a small-blob download waits for memory before it takes a request slot (no slot held while waiting)", async (t) => {
  const [az, dir] = await Promise.all([startAzurite(), tempDir("hsmfleet-order-")]);
  t.teardown(async () => {
    await az.stop();
    await dir.cleanup();
  });
  const slots = new RequestSlots(1);
  const target = parseStorageTarget(az.connectionString)!;
  const container = new BlobContainer(
    createBlobServiceClient(target, { pacing: { slots } }).getContainerClient("order"),
  );
  await container.ensureExists();
  const content = contentOf(3, Buffer.from("small"), 300_000);
  const src = join(dir.path, "small.bin");
  await writeFile(src, content);
  await uploadFile(container, Buffer.from(src), "small.bin", { metadata });
  const budget = new MemoryBudget(1024 * 1024);
  await budget.acquire(1024 * 1024); // all memory taken, e.g. by uploads waiting for a slot
  const dst = join(dir.path, "dst.bin");
  const fh = await open(dst, "w+");
  t.teardown(() => fh.close());
  const download = downloadBlobToFile(container, "small.bin", fh, Buffer.from(dst), {
    budget,
    expectedSize: content.length,
  });
  for (let i = 0; i < 1000 && budget.waiting === 0; i++)
    await new Promise((r) => setTimeout(r, 10));
  t.is(budget.waiting, 1, "the download waits for memory");
  t.is(slots.inUse, 0, "and holds no request slot meanwhile");
  t.is(slots.totalRequests, 1, "only the upload went out so far");
  budget.release(1024 * 1024);
  const result = await download;
  t.true(result.md5Verified);
  t.is(slots.inUse, 0);
});

test("Put Blob sent without the SDK (direct-put.ts) is paced too: one slot, one request token and its bytes per try", async (t) => {
  const az = await startAzurite();
  // The 1st Put Blob answers 503 (retried: the second try is paced again).
  const proxy = await startFaultProxy({
    target: az.blobEndpoint,
    onRequest: [{ n: 1, fault: "status503" }],
    eligible: (req) => req.method === "PUT" && !/[?&](comp|restype)=/.test(req.url ?? ""),
    retryAfterSeconds: 0,
  });
  t.teardown(async () => {
    await proxy.stop();
    await az.stop();
  });
  const slots = new RequestSlots(2);
  const requests = new TokenBucket(10_000);
  const bytes = new TokenBucket(1024 * MiB);
  const target = parseStorageTarget(proxy.rewriteConnectionString(az.connectionString))!;
  const container = new BlobContainer(
    createBlobServiceClient(target, {
      retryDelayMs: 1,
      pacing: { slots, limits: { requests, bytes } },
    }).getContainerClient("direct-paced"),
  );
  await container.ensureExists();
  const spentBefore = requests.spent;
  const body = Buffer.alloc(3000, 7);
  await container.putBlob("small.bin", body, { metadata });
  t.is(proxy.counters().injected.status503, 1);
  t.is(slots.totalRequests, 2, "both tries of the Put Blob held a slot");
  t.is(slots.totalThrottled, 1, "the 503 reached the controller's counters");
  t.is(slots.inUse, 0);
  t.is(requests.spent - spentBefore, 2, "one request token per try");
  t.is(bytes.spent, 2 * body.length, "its bytes per try");
});

test("isDataRequest: a URL without a query answers as the parsed URL does (no URL object made for it)", (t) => {
  const parsed = (method: string, url: string): boolean => {
    const q = new URL(url).searchParams;
    if (q.has("restype")) return false;
    const comp = q.get("comp");
    return method === "PUT" ? comp === null || comp === "block" : method === "GET" && comp === null;
  };
  for (const url of [
    "http://direct/devstoreaccount1/c/d%20x/f",
    "https://acct.blob.core.windows.net/c/a/b",
    "http://127.0.0.1:10000/devstoreaccount1/c",
    "http://direct/c/name?comp=metadata",
    "http://direct/c?restype=container&comp=list",
    "http://direct/c/b#frag",
  ])
    for (const method of ["GET", "PUT", "HEAD", "DELETE"])
      t.is(isDataRequest(method, url), parsed(method, url), `${method} ${url}`);
  t.false(isDataRequest("GET", "not a url"));
});
