import { existsSync } from "node:fs";
import test from "ava";
import { BlobServiceClient, StorageSharedKeyCredential } from "@azure/storage-blob";
import { AZURITE_ACCOUNT_KEY, startAzurite, tempDir } from "../src/index.js";
import { tcpOpen } from "./helpers.js";

test("serves blobs on a random loopback port; stop closes it and removes the workspace", async (t) => {
  const azurite = await startAzurite();
  t.teardown(() => azurite.stop());
  t.is(azurite.accountName, "devstoreaccount1");
  t.is(azurite.accountKey, AZURITE_ACCOUNT_KEY);
  t.is(azurite.blobEndpoint, `http://127.0.0.1:${azurite.port}/devstoreaccount1`);
  t.is(
    azurite.connectionString,
    `DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=${AZURITE_ACCOUNT_KEY};` +
      `BlobEndpoint=http://127.0.0.1:${azurite.port}/devstoreaccount1;`,
  );
  t.true(azurite.pid > 0);
  t.true(existsSync(azurite.location));

  const service = BlobServiceClient.fromConnectionString(azurite.connectionString);
  const container = service.getContainerClient("testkit");
  await container.create();
  const name = "dir/sub dir/ünïcödé %41.bin";
  const data = Buffer.from(Array.from({ length: 300_000 }, (_, i) => (i * 31) & 0xff));
  await container.getBlockBlobClient(name).uploadData(data, {
    metadata: { hsmfleet: "yes" },
    blockSize: 64 * 1024,
    maxSingleShotSize: 64 * 1024,
  });

  // A second client built from blobEndpoint + shared key sees the same blob.
  const viaKey = new BlobServiceClient(
    azurite.blobEndpoint,
    new StorageSharedKeyCredential(azurite.accountName, azurite.accountKey),
  );
  const blob = viaKey.getContainerClient("testkit").getBlobClient(name);
  const downloaded = await blob.downloadToBuffer();
  t.true(downloaded.equals(data));
  const props = await blob.getProperties();
  t.is(props.contentLength, data.length);
  t.deepEqual(props.metadata, { hsmfleet: "yes" });
  const names: string[] = [];
  for await (const item of container.listBlobsFlat()) names.push(item.name);
  t.deepEqual(names, [name]);

  await azurite.stop();
  t.false(await tcpOpen("127.0.0.1", azurite.port), "port closed after stop");
  t.false(existsSync(azurite.location), "temp workspace removed");
  await azurite.stop(); // idempotent
});

test("a caller-supplied location persists blobs across restarts", async (t) => {
  const dir = await tempDir("azurite-loc-");
  t.teardown(() => dir.cleanup());

  const first = await startAzurite({ location: dir.path });
  t.teardown(() => first.stop());
  const keep = BlobServiceClient.fromConnectionString(first.connectionString).getContainerClient(
    "keep",
  );
  await keep.create();
  await keep.uploadBlockBlob("a.txt", "persisted", 9);
  await first.stop();
  t.true(existsSync(dir.path), "caller's location is kept");

  const second = await startAzurite({ location: dir.path });
  t.teardown(() => second.stop());
  const text = await BlobServiceClient.fromConnectionString(second.connectionString)
    .getContainerClient("keep")
    .getBlobClient("a.txt")
    .downloadToBuffer();
  t.is(text.toString(), "persisted");
});
