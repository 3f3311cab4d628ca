/**
 * Block uploads carry x-ms-content-crc64, and it is right. Azurite (3.35) verifies Content-MD5 but
 * ignores x-ms-content-crc64, so these tests put a checking proxy between the client and Azurite:
 * it recomputes every Put Block's CRC64 with the Azure SDK's own calculator (@azure/storage-common's
 * StorageCRC64Calculator, independent of our native code), answers 400 Crc64Mismatch as the
 * service does when they differ, records the checksum headers, and forwards everything else.
 */
import { createHash } from "node:crypto";
import { statSync } from "node:fs";
import { writeFile } from "node:fs/promises";
import { createServer, request as httpRequest } from "node:http";
import type { IncomingHttpHeaders, Server } from "node:http";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { StorageCRC64Calculator } from "@azure/storage-common";
import anyTest, { type TestFn } from "ava";
import { EntryType, metadataForEntry } from "@hsmfleet/core";
import {
  contentOf,
  startAzurite,
  tempDir,
  type AzuriteFixture,
  type TempDir,
} from "@hsmfleet/testkit";
import {
  BlobOperationError,
  blockCrc64,
  openContainer,
  parseStorageTarget,
  stageFileRange,
  uploadFile,
  type BlobContainer,
} from "../src/index.js";

interface Seen {
  method: string;
  comp: string | null;
  headers: IncomingHttpHeaders;
  /** The SDK calculator's CRC64 of the body, base64 (Put Block only). */
  bodyCrc64?: string;
}

interface CheckingProxy {
  url: string;
  seen: Seen[];
  close(): Promise<void>;
}

const sdkCrc64 = (body: Buffer): string =>
  Buffer.from(new StorageCRC64Calculator().final(body, body.length)).toString("base64");

/** A reverse proxy to `target` that checks the x-ms-content-crc64 of every Put Block. */
const startCheckingProxy = async (target: string): Promise<CheckingProxy> => {
  await StorageCRC64Calculator.init();
  const upstream = new URL(target);
  const seen: Seen[] = [];
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.once("end", () => {
      const body = Buffer.concat(chunks);
      const comp = new URL(req.url ?? "/", "http://x").searchParams.get("comp");
      const entry: Seen = { method: req.method ?? "", comp, headers: req.headers };
      if (req.method === "PUT" && comp === "block") {
        entry.bodyCrc64 = sdkCrc64(body);
        const sent = req.headers["x-ms-content-crc64"];
        if (sent !== undefined && sent !== entry.bodyCrc64) {
          seen.push(entry);
          res.writeHead(400, { "x-ms-error-code": "Crc64Mismatch", "content-length": "0" });
          res.end();
          return;
        }
      }
      seen.push(entry);
      const out = httpRequest(
        {
          host: upstream.hostname,
          port: upstream.port,
          method: req.method,
          path: req.url,
          headers: req.headers,
        },
        (up) => {
          res.writeHead(up.statusCode ?? 502, up.headers);
          up.pipe(res);
        },
      );
      out.once("error", () => res.destroy());
      out.end(body);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    seen,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
};

const test = anyTest as TestFn<{ az: AzuriteFixture; proxy: CheckingProxy; dir: TempDir }>;
const MiB = 1024 * 1024;
const metadata = metadataForEntry({
  type: EntryType.File,
  mode: 0o100644,
  uid: 1000,
  gid: 1000,
  mtimeSec: 1717094160,
});
const md5 = (b: Buffer): Buffer => createHash("md5").update(b).digest();

test.before(async (t) => {
  const [az, dir] = await Promise.all([startAzurite(), tempDir("hsmfleet-crc64-")]);
  const proxy = await startCheckingProxy(new URL(az.blobEndpoint).origin);
  t.context = { az, proxy, dir };
});
test.after.always(async (t) => {
  await t.context.proxy?.close();
  await t.context.az?.stop();
  await t.context.dir?.cleanup();
});

let counter = 0;
const containerThroughProxy = async (ctx: {
  az: AzuriteFixture;
  proxy: CheckingProxy;
}): Promise<BlobContainer> => {
  const origin = new URL(ctx.az.blobEndpoint).origin;
  const target = parseStorageTarget(ctx.az.connectionString.replace(origin, ctx.proxy.url))!;
  const c = openContainer(target, `crc${process.pid}-${++counter}`, {
    retryDelayMs: 10,
    maxRetries: 0,
  });
  await c.ensureExists();
  return c;
};

test.serial(
  "every Put Block of a block upload carries the right x-ms-content-crc64 and no Content-MD5",
  async (t) => {
    const { proxy, dir } = t.context;
    const c = await containerThroughProxy(t.context);
    const size = 9 * MiB + 12_345; // 3 blocks of 4 MiB, the last one short
    const data = contentOf(11, Buffer.from("crc"), size);
    const path = join(dir.path, "three-blocks");
    await writeFile(path, data);
    const from = proxy.seen.length;
    const result = await uploadFile(c, Buffer.from(path), "dir/three-blocks", {
      metadata,
      blockSizeBytes: 4 * MiB,
    });
    t.is(result.blocks, 3);
    const requests = proxy.seen.slice(from);
    const blocks = requests.filter((r) => r.method === "PUT" && r.comp === "block");
    t.is(blocks.length, 3);
    for (const b of blocks) {
      t.is(b.headers["x-ms-content-crc64"], b.bodyCrc64, "header = the SDK calculator's CRC64");
      t.is(b.headers["content-md5"], undefined, "never both checksums");
    }
    // The whole-file MD5 is still stored at commit, and the blob reads back byte-exact.
    const commit = requests.find((r) => r.method === "PUT" && r.comp === "blocklist");
    t.is(commit?.headers["x-ms-blob-content-md5"], md5(data).toString("base64"));
    const props = await c.getProperties("dir/three-blocks");
    t.deepEqual(props?.contentMD5, md5(data));
    t.true((await c.download("dir/three-blocks")).equals(data));
  },
);

test.serial("a chunk's blocks (stageFileRange) carry x-ms-content-crc64 too", async (t) => {
  const { proxy, dir } = t.context;
  const c = await containerThroughProxy(t.context);
  const size = 6 * MiB;
  const data = contentOf(12, Buffer.from("range"), size);
  const path = join(dir.path, "range");
  await writeFile(path, data);
  const st = statSync(path, { bigint: true });
  const from = proxy.seen.length;
  const staged = await stageFileRange(c, Buffer.from(path), "range", {
    offset: 2 * MiB,
    length: 4 * MiB,
    blockSize: 2 * MiB,
    expected: {
      size,
      mtimeSec: Number(st.mtimeNs / 1_000_000_000n),
      mtimeNsec: Number(st.mtimeNs % 1_000_000_000n),
    },
  });
  t.is(staged.blocks, 2);
  const blocks = proxy.seen.slice(from).filter((r) => r.comp === "block");
  t.is(blocks.length, 2);
  for (const b of blocks) t.is(b.headers["x-ms-content-crc64"], b.bodyCrc64);
});

test.serial(
  "a wrong CRC64 is refused (what the service does), as a stage-block error",
  async (t) => {
    const c = await containerThroughProxy(t.context);
    const body = Buffer.from("a block whose checksum is wrong");
    const wrong = await blockCrc64(Buffer.from("other bytes"));
    const err = await t.throwsAsync(
      c.stageBlock("bad", Buffer.from("b1").toString("base64"), body, { contentCrc64: wrong }),
      { instanceOf: BlobOperationError },
    );
    t.is(err?.operation, "stage-block");
    t.is(err?.statusCode, 400);
    // Given the right one (computed by default), the same block is accepted.
    await c.stageBlock("bad", Buffer.from("b1").toString("base64"), body);
    t.pass();
  },
);
