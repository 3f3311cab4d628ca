// Auto-import from Blob Storage events: blobs written to Azurite, the matching Event Grid events
// (built from the real writes: ETag, size, sequencer order) sent through the Service Bus STAND-IN
// with the real @azure/service-bus client, applied by the autoimport service; the target must
// equal a full import of the container.
import { lstat, mkdir, readFile, readdir } from "node:fs/promises";
import { join } from "node:path";
import test from "ava";
import type { ExecutionContext } from "ava";
import type { ServiceBusClient } from "@azure/service-bus";
import type { ServiceBusMessage } from "@azure/service-bus";
import { BlobServiceClient } from "@azure/storage-blob";
import type { ContainerClient } from "@azure/storage-blob";
import { parseStorageTarget } from "@hsmfleet/blob";
import { decodeHsmAttrs } from "@hsmfleet/core";
import { openJobStore, runImportJob } from "@hsmfleet/coordinator";
import { startDashboard } from "@hsmfleet/dashboard";
import type { JobView, Snapshot } from "@hsmfleet/dashboard";
import { getXattr } from "@hsmfleet/fs";
import { blobEvent, tempDir } from "@hsmfleet/testkit";
import type { BlobEventFields, ServiceBusStandIn } from "@hsmfleet/testkit";
import { AutoImportLedger, autoImportJobSpec, runAutoImportService } from "@hsmfleet/worker";
import { putWithEvent } from "./blob-writes.js";
import {
  runCli,
  startBus,
  startServiceBus,
  startStorage,
  startWorkers,
  waitFor,
} from "./helpers.js";

const SLASH = Buffer.from("/");

/** type, mode, owner, size, HSM flags and (files, symlinks) mtime of every entry. */
const snapshot = async (root: string): Promise<Record<string, string>> => {
  const out: Record<string, string> = {};
  const walk = async (rel: Buffer) => {
    const abs = rel.length ? Buffer.concat([Buffer.from(root), SLASH, rel]) : Buffer.from(root);
    for (const name of await readdir(abs, { encoding: "buffer" })) {
      const childRel = rel.length ? Buffer.concat([rel, SLASH, name]) : name;
      const st = await lstat(Buffer.concat([abs, SLASH, name]));
      const hsm = st.isFile()
        ? await getXattr(Buffer.concat([abs, SLASH, name]), "trusted.hsm")
        : undefined;
      const type = st.isFile()
        ? "file"
        : st.isDirectory()
          ? "dir"
          : st.isSymbolicLink()
            ? "link"
            : "other";
      // A directory's mtime moves whenever an entry is added to it later: not compared.
      const mtime = st.isDirectory() ? "" : String(Math.floor(st.mtimeMs / 1000));
      out[childRel.toString()] = [
        type,
        (st.mode & 0o7777).toString(8),
        `${st.uid}:${st.gid}`,
        st.isDirectory() ? 0 : st.size,
        mtime,
        hsm ? decodeHsmAttrs(hsm).flags.toString(16) : "-",
      ].join(" ");
      if (st.isDirectory()) await walk(childRel);
    }
  };
  await walk(Buffer.alloc(0));
  return out;
};

interface World {
  t: ExecutionContext;
  sb: ServiceBusStandIn;
  client: ServiceBusClient;
  container: ContainerClient;
  containerName: string;
  storage: NonNullable<ReturnType<typeof parseStorageTarget>>;
  dir: string;
  nc: Awaited<ReturnType<typeof startBus>>["nc"];
  serverUrl: string;
  events: Record<string, unknown>[];
  sequencer: number;
}

const setup = async (t: ExecutionContext, containerName: string): Promise<World> => {
  const tmp = await tempDir();
  t.teardown(() => tmp.cleanup());
  const azurite = await startStorage(t);
  const storage = parseStorageTarget(azurite.connectionString)!;
  const { server, nc } = await startBus(t);
  const { sb, client } = await startServiceBus(t);
  sb.createQueue("blob-events", { lockDurationMs: 3000, maxDeliveryCount: 10 });
  const container = BlobServiceClient.fromConnectionString(
    azurite.connectionString,
  ).getContainerClient(containerName);
  await container.create();
  await startWorkers(t, server.url, 2, undefined, { storage });
  return {
    t,
    sb,
    client,
    container,
    containerName,
    storage,
    dir: tmp.path,
    nc,
    serverUrl: server.url,
    events: [],
    sequencer: 0x4420,
  };
};

/** Writes a blob and records its BlobCreated event (ETag and size from the real write). */
const put = async (
  w: World,
  name: string,
  body: string,
  metadata: Record<string, string> = {},
  schema: BlobEventFields["schema"] = "eventgrid",
) => {
  w.events.push(await putWithEvent(w.container, name, body, w.sequencer++, { metadata, schema }));
};

const remove = async (w: World, name: string, sendEvent = true) => {
  await w.container.getBlockBlobClient(name).delete();
  if (sendEvent)
    w.events.push(
      blobEvent({
        type: "BlobDeleted",
        container: w.containerName,
        blob: name,
        sequencer: w.sequencer++,
        schema: "cloudevents",
      }),
    );
};

const send = async (w: World, messages: ServiceBusMessage[]) => {
  const sender = w.client.createSender("blob-events");
  let batch = await sender.createMessageBatch();
  for (const m of messages) {
    if (!batch.tryAddMessage(m)) {
      await sender.sendMessages(batch);
      batch = await sender.createMessageBatch();
      batch.tryAddMessage(m);
    }
  }
  await sender.sendMessages(batch);
  await sender.close();
};

const meta = (mode: string, uid = 1000, gid = 1000) => ({
  owner: String(uid),
  group: String(gid),
  permissions: mode,
  modtime: "2024-05-06 07:08:09 +0000",
});

const drain = async (
  w: World,
  target: string,
  options: { enableDeletions?: boolean; prefixes?: string[]; mode?: "namespace" | "full" } = {},
) => {
  const ledger = await AutoImportLedger.open(w.nc, "e2e");
  const receiver = w.client.createReceiver("blob-events");
  const stop = new AbortController();
  // The changes go to the fleet: the two workers of setup() apply them.
  const running = runAutoImportService({
    nc: w.nc,
    spec: autoImportJobSpec({
      name: "e2e",
      target,
      container: w.containerName,
      mode: options.mode ?? "namespace",
      conflict: "skip",
      archiveId: 1,
      backend: "hsm-emulation",
      hsmXattr: "trusted.hsm",
      startedAtMs: Date.now(),
    }),
    receiver,
    ledger,
    enableDeletions: options.enableDeletions ?? true,
    signal: stop.signal,
    ...(options.prefixes ? { prefixes: options.prefixes } : {}),
  });
  const queue = w.sb.entity("blob-events")!;
  const deadline = Date.now() + 60_000;
  while (queue.count > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
  stop.abort();
  const status = await running;
  await receiver.close();
  return status;
};

test("events from real writes, with duplicates, out-of-order deliveries and a vanished blob, give the tree of a full import", async (t) => {
  const w = await setup(t, "autoimp");
  await put(w, "a.txt", "alpha", meta("0644"));
  await put(w, "dir", "", { ...meta("0750", 0, 0), hdi_isfolder: "true" }, "cloudevents");
  await put(w, "dir/b.bin", "bravo bravo", meta("0600", 1234, 5678), "cloudevents");
  await put(w, "dir/deep/c", "charlie", meta("0640"));
  await put(w, "dir/link", "../a.txt", { ...meta("0777"), ftype: "LNK" });
  await put(w, "over.txt", "first version", meta("0644"));
  await put(w, "over.txt", "second, longer version", meta("0600"));
  await put(w, "gone.txt", "short-lived", meta("0644"));
  await remove(w, "gone.txt");
  await put(w, "vanished.txt", "never imported", meta("0644"));
  await remove(w, "vanished.txt", false); // its BlobCreated arrives after the blob is gone
  await put(w, "other/d.txt", "x", meta("0644"));
  w.events.push(
    blobEvent({
      type: "BlobCreated",
      container: "another-container",
      blob: "x",
      size: 1,
      etag: "0x1",
      sequencer: w.sequencer++,
    }),
  );

  // One message per event (as Event Grid sends them); Service Bus message ids stable per event.
  const messages: ServiceBusMessage[] = w.events.map((e) => ({
    body: e,
    messageId: String(e.id),
    contentType: "application/json",
  }));
  // Out of order: the newest version of over.txt first, then the older one; duplicates of three.
  const [olderOver, newerOver] = messages.filter((m) =>
    JSON.stringify(m.body).includes("/blobs/over.txt"),
  );
  const rest = messages.filter((m) => m !== olderOver && m !== newerOver).reverse();
  await send(w, [newerOver!, ...rest, messages[0]!, messages[2]!, messages[4]!]);
  // Not a blob event: dead-lettered with the reason.
  await send(w, [{ body: { hello: "not an event" }, messageId: "junk" }]);

  const target = join(w.dir, "auto");
  await mkdir(target);
  let status = await drain(w, target);
  t.is(status.duplicates, 3, "a message id seen again changes nothing");
  t.is(status.deadLettered, 1);
  t.is(
    status.vanished,
    2,
    "gone.txt and vanished.txt no longer exist when their BlobCreated is applied",
  );
  // The older event of over.txt, delivered late (and a redelivery of an applied message).
  await send(w, [olderOver!, { ...messages[1]! }]);
  status = await drain(w, target);
  t.is(status.staleEvents, 1, "the older over.txt event came after the newer one");
  t.is(status.duplicates, 4);
  t.is(status.totalErrors, 0);
  t.truthy(status.lastChangeFeedEventConsumedTime);
  const [dead] = await w.client
    .createReceiver("blob-events", { subQueueType: "deadLetter" })
    .receiveMessages(1, { maxWaitTimeInMs: 2000 });
  t.is(dead?.deadLetterReason, "InvalidEvent");
  t.regex(dead?.deadLetterErrorDescription ?? "", /field/);

  // `hsmfleet status` shows the service's counters (AMLFS autoImportJobs names) from its job
  // record (job id = the service name), as it shows a sync service's.
  const shown = await runCli(["--nats", w.serverUrl, "status", "e2e", "--json"]);
  t.is(shown.code, 0, shown.stderr);
  const json = JSON.parse(shown.stdout) as Record<string, unknown>;
  t.like(json, {
    kind: "autoimport",
    jobId: "e2e",
    state: "succeeded",
    autoimportState: "Disabled",
    root: target,
    container: w.containerName,
    totalBlobsWalked: status.totalBlobsWalked,
    totalBlobsImported: status.totalBlobsImported,
    importedFiles: status.importedFiles,
    importedDirectories: status.importedDirectories,
    importedSymlinks: status.importedSymlinks,
    deletions: status.deletions,
    totalConflicts: 0,
    totalErrors: 0,
    messagesConsumed: status.messagesConsumed,
    duplicates: 4,
    staleEvents: 1,
    deadLettered: 1,
    vanished: 2,
    lastTimeFullySynchronized: null,
  });
  t.true(status.totalBlobsImported >= 6, `imported ${status.totalBlobsImported}`);
  t.is(
    Date.parse(json["lastChangeFeedEventConsumedTime"] as string),
    Math.floor(Date.parse(status.lastChangeFeedEventConsumedTime)),
  );
  const text = await runCli(["--nats", w.serverUrl, "status", "e2e"]);
  t.is(text.code, 0, text.stderr);
  t.regex(text.stdout, /^autoimport e2e: Disabled, container autoimp -> /m);
  t.regex(
    text.stdout,
    new RegExp(`blobs walked ${status.totalBlobsWalked}, imported ${status.totalBlobsImported} `),
  );
  t.regex(text.stdout, /duplicates 4, stale 1, dead-lettered 1, blobs gone 2/);
  t.regex(text.stdout, /last event consumed \d{4}-\d\d-\d\dT/);
  // The dashboard's job row: blobs imported of walked, errors, in the kind's own counters.
  const store = await openJobStore(w.nc);
  const dashboard = await startDashboard({
    nc: w.nc,
    listJobs: () => store.list(),
    port: 0,
    intervalMs: 200,
  });
  t.teardown(() => dashboard.close());
  let row: JobView | undefined;
  await waitFor("the autoimport row on the dashboard", async () => {
    const snap = (await (await fetch(new URL("api/snapshot", dashboard.url))).json()) as Snapshot;
    row = snap.jobs.find((j) => j.jobId === "e2e");
    return row !== undefined;
  });
  t.like(row, {
    kind: "autoimport",
    state: "succeeded",
    filesDone: status.totalBlobsImported,
    filesFound: status.totalBlobsWalked,
    errors: 0,
  });
  const jobs = await runCli(["--nats", w.serverUrl, "jobs", "--json"]);
  t.like((JSON.parse(jobs.stdout) as Record<string, unknown>[])[0], {
    kind: "autoimport",
    jobId: "e2e",
  });

  // The reference: a full (namespace) import of the container as it is now.
  const full = join(w.dir, "full");
  await mkdir(full);
  const summary = await runImportJob({
    nc: w.nc,
    target: full,
    container: w.containerName,
    storage: w.storage,
  });
  t.is(summary.state, "succeeded");
  const got = await snapshot(target);
  const want = await snapshot(full);
  t.deepEqual(got, want);
  t.truthy(got["over.txt"]?.includes(" 22 "), "over.txt has the size of its second version");
  t.is(got["gone.txt"], undefined);
  t.is(got["vanished.txt"], undefined);
});

test("--prefix (repeatable): events outside every prefix are completed without changing the tree, events inside are applied", async (t) => {
  const w = await setup(t, "prefixed");
  const target = join(w.dir, "auto");
  await mkdir(target);
  // First, without a prefix: one file inside and one outside the prefixes used below.
  await put(w, "keep/old.txt", "kept, then deleted", meta("0644"));
  await put(w, "out/old.txt", "outside, deleted later", meta("0644"));
  await send(
    w,
    w.events.map((e) => ({ body: e, messageId: String(e.id) })),
  );
  const first = await drain(w, target);
  t.is(first.totalBlobsImported, 2);
  const before = await snapshot(target);
  t.truthy(before["out/old.txt"]);

  w.events = [];
  await put(w, "keep/a.txt", "inside the first prefix", meta("0644"));
  await put(w, "also/deep/b.txt", "inside the second prefix", meta("0600"));
  await put(w, "out/c.txt", "outside every prefix", meta("0644"));
  await put(w, "keeper.txt", "shares no prefix with keep/", meta("0644"));
  await put(w, "top.txt", "at the top", meta("0644"));
  await remove(w, "keep/old.txt"); // inside: deleted
  await remove(w, "out/old.txt"); // outside: left alone
  const sent = w.events.length;
  await send(
    w,
    w.events.map((e) => ({ body: e, messageId: String(e.id) })),
  );
  const status = await drain(w, target, { prefixes: ["keep/", "/also/"] });
  t.is(w.sb.entity("blob-events")!.count, 0, "every message is settled");
  t.is(status.messagesConsumed - first.messagesConsumed, sent, "every message completed");
  t.is(status.deadLettered, 0);
  t.is(status.totalErrors, 0);
  t.is(status.totalBlobsImported - first.totalBlobsImported, 2, "keep/a.txt and also/deep/b.txt");
  t.is(status.deletions, 1, "keep/old.txt");

  const after = await snapshot(target);
  t.truthy(after["keep/a.txt"]);
  t.truthy(after["also/deep/b.txt"]);
  t.is(after["keep/old.txt"], undefined);
  for (const outside of ["out/c.txt", "keeper.txt", "top.txt"]) t.is(after[outside], undefined);
  t.is(after["out/old.txt"], before["out/old.txt"], "an outside BlobDeleted changes nothing");
  const [dead] = await w.client
    .createReceiver("blob-events", { subQueueType: "deadLetter" })
    .receiveMessages(1, { maxWaitTimeInMs: 1000 });
  t.is(dead, undefined, "nothing dead-lettered");
});

test("--mode full: BlobCreated downloads the data (state exists archived, 0x9), as a full-mode import makes it", async (t) => {
  const w = await setup(t, "fullmode");
  const big = "0123456789abcdef".repeat(70_000); // 1.1 MB: several ranged reads
  await put(w, "small.txt", "small data", meta("0640"));
  await put(w, "sub/big.bin", big, meta("0600", 1234, 5678));
  await put(w, "sub/link", "../small.txt", { ...meta("0777"), ftype: "LNK" });
  await put(w, "empty.txt", "", meta("0644"));
  await send(
    w,
    w.events.map((e) => ({ body: e, messageId: String(e.id) })),
  );
  const target = join(w.dir, "auto");
  await mkdir(target);
  const status = await drain(w, target, { mode: "full" });
  t.is(status.totalErrors, 0);
  t.is(status.importedFiles, 3);
  t.is(await readFile(join(target, "small.txt"), "utf8"), "small data");
  t.is(await readFile(join(target, "sub/big.bin"), "utf8"), big);

  const full = join(w.dir, "full");
  await mkdir(full);
  const summary = await runImportJob({
    nc: w.nc,
    target: full,
    container: w.containerName,
    storage: w.storage,
    mode: "full",
  });
  t.is(summary.state, "succeeded");
  const got = await snapshot(target);
  t.deepEqual(got, await snapshot(full));
  t.is(got["small.txt"]?.split(" ").pop(), "9", "exists archived, not released");
  t.is(got["sub/big.bin"]?.split(" ").pop(), "9");
});
