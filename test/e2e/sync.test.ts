import { appendFile, chmod, chown, mkdir, rename, rm, symlink, writeFile } from "node:fs/promises";
import { join } from "node:path";
import test from "ava";
import { BlobServiceClient } from "@azure/storage-blob";
import { parseStorageTarget } from "@hsmfleet/blob";
import { runVerifyJob } from "@hsmfleet/coordinator";
import { tempDir } from "@hsmfleet/testkit";
import { runCli, startBus, startStorage, startWorkers } from "./helpers.js";
import { spawnSync, stopSync, syncStatus, waitInStep } from "./sync-helpers.js";

const names = async (connection: string, container: string, prefix = ""): Promise<string[]> => {
  const out: string[] = [];
  const client = BlobServiceClient.fromConnectionString(connection).getContainerClient(container);
  for await (const b of client.listBlobsFlat({ prefix })) out.push(b.name);
  return out.sort();
};

test("sync of a source that does not exist, or is a file: a usage error naming it, before any storage or NATS is started", async (t) => {
  const dir = await tempDir();
  t.teardown(() => dir.cleanup());
  await writeFile(join(dir.path, "file"), "x");
  const env = { HSMFLEET_STATE_DIR: dir.path, AZURE_STORAGE_CONNECTION_STRING: "" };
  for (const [name, why] of [
    ["missing", "does not exist"],
    ["file", "is not a directory"],
  ] as const) {
    const run = await runCli(["sync", join(dir.path, name), "--container", "abc"], { env });
    t.is(run.code, 2, run.stderr);
    t.true(run.stderr.includes(`sync source ${join(dir.path, name)} ${why}`), run.stderr);
    t.false(/local Azurite/.test(run.stderr), `nothing started: ${run.stderr}`);
  }
});

test("sync (posix, inotify): create, append, chmod/chown, mkdir, symlink, renames of a file and a 1,000-file directory, deletes — then verify passes and deleted paths are gone after the remove delay", async (t) => {
  t.timeout(600_000);
  const dir = await tempDir();
  t.teardown(() => dir.cleanup());
  const root = join(dir.path, "tree");
  await mkdir(join(root, "old"), { recursive: true });
  await writeFile(join(root, "old", "kept.txt"), "present before the service started");
  const azurite = await startStorage(t);
  const storage = parseStorageTarget(azurite.connectionString)!;
  const { server, nc } = await startBus(t);
  await startWorkers(t, server.url, 2, undefined, { storage });
  const sync = spawnSync(t, server.url, azurite.connectionString, [
    root,
    "--container",
    "synced",
    "--name",
    "e2e",
    "--settle",
    "1s",
    "--remove-delay",
    "3s",
  ]);
  // The first start compares every directory with its (missing) blobs: the initial sync.
  await waitInStep(nc, "e2e", 0, { service: sync });
  t.deepEqual(await names(azurite.connectionString, "synced"), ["old", "old/kept.txt"]);

  let mark = Date.now();
  await writeFile(join(root, "a.txt"), "first line\n");
  await appendFile(join(root, "a.txt"), "second line\n");
  await chmod(join(root, "a.txt"), 0o600);
  await chown(join(root, "old", "kept.txt"), 1234, 4321);
  await mkdir(join(root, "newdir"));
  await writeFile(join(root, "newdir", "inner.bin"), Buffer.alloc(100_000, 7));
  await symlink("../a.txt", join(root, "newdir", "link"));
  await writeFile(join(root, "to-rename.txt"), "renamed content");
  await mkdir(join(root, "big"));
  for (let i = 0; i < 1000; i++) await writeFile(join(root, "big", `f${i}`), `file ${i}\n`);
  await waitInStep(nc, "e2e", mark, { service: sync });
  t.is((await names(azurite.connectionString, "synced", "big/")).length, 1000);
  const before = (await syncStatus(nc, "e2e"))!;

  mark = Date.now();
  await rename(join(root, "to-rename.txt"), join(root, "newdir", "renamed.txt"));
  await rename(join(root, "big"), join(root, "big2"));
  await rm(join(root, "old"), { recursive: true });
  await rm(join(root, "newdir", "inner.bin"));
  const after = await waitInStep(nc, "e2e", mark, { service: sync, deletes: true });
  t.true(after.renames >= 1001, `renames ${after.renames}`);
  t.true(after.metadataUpdates >= 1, `metadata updates ${after.metadataUpdates}`);
  t.true(after.deletions > before.deletions);
  t.is(after.failures, 0, after.lastError);

  const all = await names(azurite.connectionString, "synced");
  t.false(all.includes("to-rename.txt"));
  t.false(all.includes("old/kept.txt"));
  t.false(all.includes("newdir/inner.bin"));
  t.false(all.some((n) => n.startsWith("big/")));
  t.is(all.filter((n) => n.startsWith("big2/")).length, 1000);

  const verified = await runVerifyJob({ nc, root, container: "synced", storage });
  t.like(verified, { identical: true, differences: 0, errors: 0 });

  // `hsmfleet status` shows the service's counters (AMLFS autoExportJobs-like) from its job record.
  const shown = await runCli(["--nats", server.url, "status", "sync-e2e", "--json"]);
  t.is(shown.code, 0, shown.stderr);
  const json = JSON.parse(shown.stdout) as Record<string, unknown>;
  t.like(json, { kind: "sync", syncState: "running", source: "posix", failures: 0, backlog: 0 });
  t.true((json["renames"] as number) >= 1001);
  t.true((json["recordsApplied"] as number) > 1000);
  t.is(typeof json["lastFullySynchronized"], "string");
  const text = await runCli(["--nats", server.url, "status", "sync-e2e"]);
  t.regex(text.stdout, /records read \d+, applied \d+; backlog 0/);

  const stopped = await stopSync(sync);
  t.is(stopped.code, 0, sync.stderr());
  t.is((await syncStatus(nc, "e2e"))?.state, "stopped");
});
