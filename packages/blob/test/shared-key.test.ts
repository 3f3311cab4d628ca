import { createServer, type IncomingMessage } from "node:http";
import type { AddressInfo } from "node:net";
import test from "ava";
import { BlobServiceClient, StorageSharedKeyCredential } from "@azure/storage-blob";
import { compareHeaderNames, SharedKeySigner, sharedKeyStringToSign } from "../src/shared-key.js";
import { encodeBlobName } from "../src/direct-put.js";

const ACCOUNT = "devstoreaccount1";
const KEY =
  "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

interface Seen {
  method: string;
  url: string;
  headers: IncomingMessage["headers"];
}

/** A loopback server that records each request and answers 201 (a recording device, not storage). */
const recorder = async () => {
  const seen: Seen[] = [];
  const server = createServer((req, res) => {
    req.resume();
    req.on("end", () => {
      seen.push({ method: req.method!, url: req.url!, headers: req.headers });
      res.writeHead(201, { "content-length": "0" });
      res.end();
    });
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const port = (server.address() as AddressInfo).port;
  return { seen, url: `http://127.0.0.1:${port}/${ACCOUNT}`, close: () => server.close() };
};

/** Re-signs a recorded SDK request with SharedKeySigner. */
const resign = (s: Seen): string => {
  const u = new URL(s.url, "http://x");
  const headers: Record<string, string> = {};
  for (const [k, v] of Object.entries(s.headers)) {
    if (k !== "authorization" && v !== undefined) headers[k] = Array.isArray(v) ? v.join(",") : v;
  }
  const query = [...u.searchParams.entries()];
  return new SharedKeySigner(ACCOUNT, KEY).authorization(s.method, u.pathname, query, headers);
};

test("Shared Key: the signature of requests the SDK signed is reproduced exactly", async (t) => {
  const rec = await recorder();
  t.teardown(() => rec.close());
  const service = new BlobServiceClient(rec.url, new StorageSharedKeyCredential(ACCOUNT, KEY));
  const c = service.getContainerClient("box");
  const names = ["plain", "a b/c%d/e'f(g)!*~.txt", "ü/x+y=z&q?#h", "dir/", "-_.x"];
  for (const name of names) {
    await c.getBlockBlobClient(name).upload("hello", 5, {
      metadata: {
        owner: "1000",
        group: "100",
        permissions: "0644",
        modtime: "2024-01-02 03:04:05 +0000",
        hdi_isfolder: "true",
        Zeta: "z",
        a_b: "1",
        ab: "2",
        a1: "3",
      },
      blobHTTPHeaders: { blobContentType: "text/plain", blobContentMD5: Buffer.alloc(16, 1) },
    });
  }
  await c.getBlockBlobClient("blocks").stageBlock("QUJD", "xyz", 3);
  await c.getBlockBlobClient("empty").upload("", 0);
  t.is(rec.seen.length, names.length + 2);
  for (const s of rec.seen) {
    t.is(resign(s), s.headers["authorization"] ?? "(none)", `${s.method} ${s.url}`);
  }
});

test("the string to sign follows the REST reference (empty Content-Length 0, order, resource)", (t) => {
  const s = sharedKeyStringToSign(
    "acct",
    "put",
    "/box/a%20b",
    [
      ["Comp", "block"],
      ["blockid", "QUJD"],
    ],
    {
      "content-length": "0",
      "content-type": "application/octet-stream",
      "x-ms-version": "2026-04-06",
      "x-ms-date": "Sat, 21 Nov 2026 18:00:00 GMT",
      "x-ms-meta-b": "  two",
      "x-ms-meta-a": "one",
    },
  );
  t.is(
    s,
    [
      "PUT",
      "",
      "",
      "",
      "",
      "application/octet-stream",
      "",
      "",
      "",
      "",
      "",
      "",
      "x-ms-date:Sat, 21 Nov 2026 18:00:00 GMT",
      "x-ms-meta-a:one",
      "x-ms-meta-b:two",
      "x-ms-version:2026-04-06",
      "/acct/box/a%20b",
      "blockid:QUJD",
      "comp:block",
    ].join("\n"),
  );
});

test("header names sort in the service's culture order (hyphens count last)", (t) => {
  const names = ["x-ms-meta-a-b", "x-ms-meta-ab", "x-ms-meta-a_b", "x-ms-meta-aa", "x-ms-date"];
  t.deepEqual([...names].sort(compareHeaderNames), [
    "x-ms-date",
    "x-ms-meta-a_b",
    "x-ms-meta-aa",
    "x-ms-meta-ab",
    "x-ms-meta-a-b",
  ]);
});

test("blob names are encoded into the URL path exactly as the SDK does", (t) => {
  const service = new BlobServiceClient(
    `http://127.0.0.1:1/${ACCOUNT}`,
    new StorageSharedKeyCredential(ACCOUNT, KEY),
  );
  const c = service.getContainerClient("box");
  const ascii = Array.from({ length: 95 }, (_, i) => String.fromCharCode(32 + i)).join("");
  const names = [
    ascii,
    `d/${ascii}/x`,
    "ü/日本語/emoji 😀",
    "a//b",
    "%41%2F",
    "\u0001\u007f\u0080",
    "trailing/",
  ];
  for (const name of names) {
    const sdk = new URL(c.getBlockBlobClient(name).url).pathname;
    t.is(`/${ACCOUNT}/box/${encodeBlobName(name)}`, sdk, JSON.stringify(name));
  }
});
