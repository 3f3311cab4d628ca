import { createHash } from "node:crypto";
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import test from "ava";
import { crc64, crc64Bytes } from "@hsmfleet/fs/crc64";
import { BlobContainer, BlobOperationError, createBlobServiceClient } from "../src/index.js";

interface Seen {
  method: string;
  url: string;
  headers: IncomingMessage["headers"];
  body: Buffer;
  remoteAddress: string | undefined;
  socket: number;
}

/**
 * A stand-in for the Blob service on 127.0.0.1 that records every request. `respond` decides
 * the answer; the default is 201 Created.
 */
const fakeBlobService = async (
  respond: (seen: Seen, res: ServerResponse) => void = (_s, res) => {
    res.writeHead(201, { "x-ms-request-id": "r" }).end();
  },
) => {
  const seen: Seen[] = [];
  let sockets = 0;
  let open = 0;
  let maxOpen = 0;
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      const s: Seen = {
        method: req.method ?? "",
        url: req.url ?? "",
        headers: req.headers,
        body: Buffer.concat(chunks),
        remoteAddress: req.socket.remoteAddress,
        socket: (req.socket as unknown as { hsmId: number }).hsmId,
      };
      seen.push(s);
      respond(s, res);
    });
  });
  server.on("connection", (socket) => {
    (socket as unknown as { hsmId: number }).hsmId = ++sockets;
    open++;
    maxOpen = Math.max(maxOpen, open);
    socket.on("close", () => open--);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const port = (server.address() as AddressInfo).port;
  return {
    seen,
    accountUrl: `http://127.0.0.1:${port}/acct`,
    sockets: () => sockets,
    maxOpen: () => maxOpen,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
};

const md5b64 = (b: Buffer) => createHash("md5").update(b).digest("base64");

test("requests carry their checksums (Content-MD5 or CRC64), the stored MD5 and metadata; connections are kept alive and bound to localAddress", async (t) => {
  const fake = await fakeBlobService();
  t.teardown(() => fake.close());
  const client = createBlobServiceClient(
    { kind: "sas-url", accountUrl: fake.accountUrl, sas: "sv=2024-08-04&sp=rw&sig=c2VjcmV0" },
    { localAddress: "127.0.0.2", maxRetries: 0 },
  );
  const container = new BlobContainer(client.getContainerClient("box"));
  const body = Buffer.from("hello world");
  await container.putBlob("dir/file", body, { metadata: { owner: "1000", permissions: "0644" } });
  await container.stageBlock("big", "YmxvY2sx", Buffer.from("block one"));
  await container.commitBlockList("big", ["YmxvY2sx"], {
    metadata: { owner: "0" },
    contentMD5: createHash("md5").update("block one").digest(),
  });

  t.is(fake.seen.length, 3);
  const [put, stage, commit] = fake.seen as [Seen, Seen, Seen];
  for (const s of fake.seen) {
    t.is(s.remoteAddress, "127.0.0.2", "localAddress is the source address");
    t.true(s.url.includes("sig=c2VjcmV0"));
  }
  t.is(fake.sockets(), 1, "one keep-alive connection for all requests");

  t.is(put.method, "PUT");
  t.true(put.url.startsWith("/acct/box/dir/file?"));
  t.is(put.headers["x-ms-blob-type"], "BlockBlob");
  t.is(put.headers["content-md5"], md5b64(body));
  t.is(put.headers["x-ms-blob-content-md5"], md5b64(body));
  t.is(put.headers["x-ms-meta-owner"], "1000");
  t.is(put.headers["x-ms-meta-permissions"], "0644");
  t.deepEqual(put.body, body);

  t.true(stage.url.includes("comp=block"));
  t.true(stage.url.includes("blockid=YmxvY2sx"));
  t.is(
    stage.headers["x-ms-content-crc64"],
    crc64Bytes(crc64(Buffer.from("block one"))).toString("base64"),
    "Put Block carries its CRC64",
  );
  t.is(stage.headers["content-md5"], undefined, "never both checksums");

  t.true(commit.url.includes("comp=blocklist"));
  t.is(commit.headers["x-ms-blob-content-md5"], md5b64(Buffer.from("block one")));
  t.is(commit.headers["x-ms-meta-owner"], "0");
  t.regex(commit.body.toString(), /<Latest>YmxvY2sx<\/Latest>/);
});

test("maxSockets bounds the connections of one client", async (t) => {
  const fake = await fakeBlobService((_s, res) => {
    setTimeout(() => res.writeHead(201).end(), 50);
  });
  t.teardown(() => fake.close());
  const client = createBlobServiceClient(
    { kind: "sas-url", accountUrl: fake.accountUrl, sas: "sig=x" },
    { maxSockets: 2, maxRetries: 0 },
  );
  const container = new BlobContainer(client.getContainerClient("box"));
  await Promise.all(
    Array.from({ length: 8 }, (_, i) =>
      container.putBlob(`f${i}`, Buffer.from([i]), { metadata: {} }),
    ),
  );
  t.is(fake.seen.length, 8);
  t.is(fake.maxOpen(), 2);
});

const busy = (res: ServerResponse) =>
  res
    .writeHead(503, { "content-type": "application/xml", "x-ms-error-code": "ServerBusy" })
    .end(
      '<?xml version="1.0" encoding="utf-8"?><Error><Code>ServerBusy</Code><Message>Ingress is over the account limit.</Message></Error>',
    );

test("503 is retried by the retry policy, then reported as retryable with status and code", async (t) => {
  let n = 0;
  const fake = await fakeBlobService((_s, res) => {
    n++;
    if (n <= 2) busy(res);
    else res.writeHead(201).end();
  });
  t.teardown(() => fake.close());
  const target = { kind: "sas-url", accountUrl: fake.accountUrl, sas: "sig=c2VjcmV0" } as const;
  const quick = { retryDelayMs: 1, maxRetryDelayMs: 5 };
  const container = new BlobContainer(
    createBlobServiceClient(target, { ...quick, maxRetries: 2 }).getContainerClient("box"),
  );
  await container.putBlob("x", Buffer.from("x"), { metadata: {} });
  t.is(fake.seen.length, 3, "two retries, then success");

  n = -100; // busy from now on
  const before = fake.seen.length;
  const err = await t.throwsAsync(
    container.putBlob("y", Buffer.from("y"), { metadata: {}, localPath: "/mnt/fs/y" }),
    { instanceOf: BlobOperationError },
  );
  t.is(fake.seen.length - before, 3);
  t.is(err.statusCode, 503);
  t.is(err.code, "ServerBusy");
  t.true(err.retryable);
  t.is(err.operation, "put-blob");
  t.regex(err.message, /^put-blob \/mnt\/fs\/y → blob "y" in container "box": HTTP 503 ServerBusy/);
  t.false(err.message.includes("c2VjcmV0"));
});

test("403 is not retried and not retryable", async (t) => {
  const fake = await fakeBlobService((_s, res) =>
    res
      .writeHead(403, {
        "content-type": "application/xml",
        "x-ms-error-code": "AuthorizationPermissionMismatch",
      })
      .end(
        '<?xml version="1.0" encoding="utf-8"?><Error><Code>AuthorizationPermissionMismatch</Code><Message>This request is not authorized to perform this operation using this permission.</Message></Error>',
      ),
  );
  t.teardown(() => fake.close());
  const container = new BlobContainer(
    createBlobServiceClient(
      { kind: "sas-url", accountUrl: fake.accountUrl, sas: "sp=r&sig=c2VjcmV0" },
      { retryDelayMs: 1 },
    ).getContainerClient("box"),
  );
  const err = await t.throwsAsync(container.stageBlock("b", "YQ==", Buffer.from("a")), {
    instanceOf: BlobOperationError,
  });
  t.is(fake.seen.length, 1);
  t.is(err.statusCode, 403);
  t.is(err.code, "AuthorizationPermissionMismatch");
  t.false(err.retryable);
  t.regex(
    err.message,
    /stage-block blob "b" in container "box": HTTP 403 AuthorizationPermissionMismatch/,
  );
});

test("a connection refused is retryable", async (t) => {
  const fake = await fakeBlobService();
  const accountUrl = fake.accountUrl;
  await fake.close();
  const container = new BlobContainer(
    createBlobServiceClient(
      { kind: "sas-url", accountUrl, sas: "sig=x" },
      { maxRetries: 1, retryDelayMs: 1, maxRetryDelayMs: 2 },
    ).getContainerClient("box"),
  );
  const err = await t.throwsAsync(container.putBlob("x", Buffer.from("x"), { metadata: {} }), {
    instanceOf: BlobOperationError,
  });
  t.is(err.statusCode, undefined);
  t.true(err.retryable, err.message);
});
