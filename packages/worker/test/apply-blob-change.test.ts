// BlobChangeApplier (autoimport) against a real Azurite and a real target directory: a created
// file whose parent directory has a stub blob, made lazily (only when the create finds it missing).
import { lstat, mkdir } from "node:fs/promises";
import { join } from "node:path";
import anyTest, { type TestFn } from "ava";
import { BlobServiceClient } from "@azure/storage-blob";
import { openContainer, parseStorageTarget } from "@hsmfleet/blob";
import type { BlobChange } from "@hsmfleet/protocol";
import { startAzurite, startFaultProxy, tempDir, type AzuriteFixture } from "@hsmfleet/testkit";
import { BlobChangeApplier } from "../src/autoimport/apply-blob-change.js";
import { ImportTarget } from "../src/import/import-target.js";

const test = anyTest as TestFn<{ az: AzuriteFixture }>;
test.before(async (t) => {
  t.context = { az: await startAzurite() };
});
test.after.always(async (t) => {
  await t.context.az?.stop();
});

const created = (container: string, blob: string): BlobChange => ({
  eventId: blob,
  kind: "created",
  schema: "eventgrid",
  container,
  blob,
  sequencer: "1",
  eventTime: new Date().toISOString(),
});

const seed = async (az: AzuriteFixture, container: string, dir: string): Promise<void> => {
  const c = BlobServiceClient.fromConnectionString(az.connectionString).getContainerClient(
    container,
  );
  await c.create();
  await c.getBlockBlobClient(dir).upload("", 0, {
    metadata: { hdi_isfolder: "true", permissions: "0750" },
  });
  await c.getBlockBlobClient(`${dir}/f`).upload("abc", 3, { metadata: { permissions: "0644" } });
};

const applierFor = async (root: string, connectionString: string, container: string) => {
  const target = await ImportTarget.open({
    root,
    mode: "namespace",
    conflict: "skip",
    archiveId: 1,
    backend: "hsm-emulation",
    hsmXattr: "trusted.hsm",
    container,
  });
  const blobs = openContainer(parseStorageTarget(connectionString)!, container, {
    retryDelayMs: 1,
  });
  return new BlobChangeApplier(target, blobs, {
    hasHsm: true,
    hsmState: () => Promise.resolve(undefined),
  });
};

test("a file created before its directory's stub event: the directory is made from its stub blob (mode 0750) when the create finds it missing", async (t) => {
  const { az } = t.context;
  const tmp = await tempDir();
  t.teardown(() => tmp.cleanup());
  const root = join(tmp.path, "t");
  await mkdir(root);
  await seed(az, "lazy1", "dir");
  const applier = await applierFor(root, az.connectionString, "lazy1");
  const out = await applier.apply(created("lazy1", "dir/f"));
  t.is(out.counters.totalErrors, 0, JSON.stringify(out.errors));
  t.is(out.counters.importedFiles, 1);
  t.is(out.counters.importedDirectories, 1, "the parent made from its stub");
  t.is((await lstat(join(root, "dir"))).mode & 0o7777, 0o750);
  const f = await lstat(join(root, "dir/f"));
  t.is(f.size, 3);
  t.is(f.mode & 0o7777, 0o644);
  // A second file in the same, now existing directory: its parent is not read again.
  const again = await applier.apply(created("lazy1", "dir/f"));
  t.is(again.counters.importedDirectories, 0);
  t.is(again.counters.preexistingFiles, 1);
});

test("reading a missing parent's stub blob fails: the change fails (its message comes again), it is not counted as the file's error, and nothing is made", async (t) => {
  const { az } = t.context;
  const tmp = await tempDir();
  t.teardown(() => tmp.cleanup());
  const root = join(tmp.path, "t");
  await mkdir(root);
  await seed(az, "lazy2", "dir2");
  // The HEAD of the parent's stub blob "dir2" is refused (403: not retried).
  const proxy = await startFaultProxy({
    target: az.blobEndpoint,
    onRequest: [{ n: 1, fault: "status403" }],
    eligible: (req) => req.method === "HEAD" && (req.url ?? "").split("?")[0]!.endsWith("/dir2"),
  });
  t.teardown(() => proxy.stop());
  const applier = await applierFor(
    root,
    proxy.rewriteConnectionString(az.connectionString),
    "lazy2",
  );
  const err = await t.throwsAsync(applier.apply(created("lazy2", "dir2/f")));
  t.regex(err.message, /get-properties|403|dir2/);
  await t.throwsAsync(lstat(join(root, "dir2")), { code: "ENOENT" });
});
