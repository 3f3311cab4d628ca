import test from "ava";
import {
  BlobEventError,
  compareSequencers,
  decodeBlobChange,
  encodeBlobChange,
  parseBlobEvents,
} from "../src/index.js";

const subject = (blob: string) => `/blobServices/default/containers/data/blobs/${blob}`;
const eventGrid = {
  topic: "/subscriptions/x/resourceGroups/rg/providers/Microsoft.Storage/storageAccounts/acct",
  subject: subject("dir/a b.txt"),
  eventType: "Microsoft.Storage.BlobCreated",
  eventTime: "2026-12-06T01:02:03.456Z",
  id: "e1",
  data: {
    api: "PutBlob",
    eTag: "0x8DC0000000000001",
    contentLength: 524288,
    blobType: "BlockBlob",
    url: "https://acct.blob.core.windows.net/data/dir/a%20b.txt",
    sequencer: "00000000000004420000000000028963",
  },
  dataVersion: "",
  metadataVersion: "1",
};

test("an Event Grid BlobCreated: container, blob, etag, size, sequencer", (t) => {
  const [c] = parseBlobEvents(eventGrid);
  t.like(c, {
    kind: "created",
    schema: "eventgrid",
    container: "data",
    blob: "dir/a b.txt",
    etag: "0x8DC0000000000001",
    contentLength: 524288,
    sequencer: "00000000000004420000000000028963",
    eventId: "e1",
  });
  t.deepEqual(decodeBlobChange(encodeBlobChange(c!)), c);
});

test("CloudEvents, arrays, JSON text and bytes are read alike", (t) => {
  const cloud = {
    specversion: "1.0",
    type: "Microsoft.Storage.BlobDeleted",
    source: eventGrid.topic,
    subject: subject("x"),
    id: "c1",
    time: "2026-12-06T01:02:03Z",
    data: { api: "DeleteBlob", sequencer: "0a" },
  };
  const changes = parseBlobEvents(Buffer.from(JSON.stringify([eventGrid, cloud])));
  t.deepEqual(
    changes.map((c) => [c.kind, c.schema, c.blob]),
    [
      ["created", "eventgrid", "dir/a b.txt"],
      ["deleted", "cloudevents", "x"],
    ],
  );
  t.is(parseBlobEvents(JSON.stringify(cloud))[0]!.kind, "deleted");
});

test("HNS renames take source and destination from the URLs; DirectoryDeleted keeps recursive", (t) => {
  const [r] = parseBlobEvents({
    ...eventGrid,
    eventType: "Microsoft.Storage.DirectoryRenamed",
    subject: subject("old"),
    data: {
      sequencer: "10",
      sourceUrl: "https://acct.dfs.core.windows.net/data/old",
      destinationUrl: "https://acct.dfs.core.windows.net/data/new/d%C3%A9j%C3%A0",
    },
  });
  t.like(r, { kind: "directoryRenamed", blob: "old", destination: "new/déjà" });
  const [d] = parseBlobEvents({
    ...eventGrid,
    eventType: "Microsoft.Storage.DirectoryDeleted",
    data: { sequencer: "11", recursive: "true", url: "https://acct.dfs.core.windows.net/data/dir" },
  });
  t.is(d!.recursive, true);
});

test("untrusted input: each wrong field is named", (t) => {
  const bad = (v: unknown, re: RegExp) =>
    t.throws(() => parseBlobEvents(v), { instanceOf: BlobEventError, message: re });
  bad("not json", /not JSON/);
  bad({ ...eventGrid, eventType: "Microsoft.Storage.BlobTierChanged" }, /not a blob change/);
  bad({ ...eventGrid, subject: "/foo" }, /not a blob subject/);
  bad({ ...eventGrid, data: { ...eventGrid.data, sequencer: "zz" } }, /sequencer/);
  bad({ ...eventGrid, data: { ...eventGrid.data, contentLength: -1 } }, /contentLength/);
  bad({ ...eventGrid, id: 3 }, /field id/);
  t.throws(() => decodeBlobChange(Buffer.from('{"kind":"created"}')), { message: /schema/ });
});

test("sequencers compare lexicographically after padding", (t) => {
  t.true(compareSequencers("0a", "00000000000000000009") > 0);
  t.true(
    compareSequencers("00000000000004420000000000028963", "00000000000004420000000000028964") < 0,
  );
  t.is(compareSequencers("1", "001"), 0);
});
