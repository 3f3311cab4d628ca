import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { mkdir } from "node:fs/promises";
import test from "ava";
import { BlobServiceClient } from "@azure/storage-blob";
import { parseStorageTarget } from "@hsmfleet/blob";
import { runVerifyJob } from "@hsmfleet/coordinator";
import { LustreRecorder, lfsChangelogStandIn, tempDir } from "@hsmfleet/testkit";
import { startBus, startStorage, startWorkers } from "./helpers.js";
import { spawnSync, stopSync, waitInStep } from "./sync-helpers.js";

const SOURCE = "lustre:fs-MDT0000";

const clears = async (file: string): Promise<number[]> =>
  (await readFile(file, "utf8"))
    .split("\n")
    .filter((l) => l !== "")
    .map((l) => {
      const [mdt, user, end] = l.split(" ");
      if (mdt !== "fs-MDT0000" || user !== "cl1") throw new Error(`unexpected clear: ${l}`);
      return Number(end);
    });

test("sync (lustre source, STAND-IN lfs with recorded changelog text): the posix scenario; verify passes; changelog_clear only after apply", async (t) => {
  t.timeout(600_000);
  const dir = await tempDir();
  t.teardown(() => dir.cleanup());
  const root = join(dir.path, "mnt");
  await mkdir(root);
  const standIn = lfsChangelogStandIn(dir.path);
  const fs = new LustreRecorder(standIn, root);
  const azurite = await startStorage(t);
  const storage = parseStorageTarget(azurite.connectionString)!;
  const { server, nc } = await startBus(t);
  await startWorkers(t, server.url, 2, undefined, { storage });
  const client = BlobServiceClient.fromConnectionString(
    azurite.connectionString,
  ).getContainerClient("lustre");
  const names = async (prefix = ""): Promise<string[]> => {
    const out: string[] = [];
    for await (const b of client.listBlobsFlat({ prefix })) out.push(b.name);
    return out.sort();
  };
  const sync = spawnSync(t, server.url, azurite.connectionString, [
    root,
    "--container",
    "lustre",
    "--name",
    "lu",
    "--source",
    "lustre",
    "--mdt",
    "fs-MDT0000",
    "--changelog-user",
    "cl1",
    "--lfs",
    standIn.lfs,
    "--settle",
    "2s",
    "--remove-delay",
    "3s",
  ]);
  let mark = Date.now();
  await fs.mkdir("old");
  await fs.create("old/kept.txt", "present early");
  await fs.create("a.txt", "first line\n");
  await fs.append("a.txt", "second line\n");
  await fs.chmod("a.txt", 0o600);
  await fs.mkdir("newdir");
  await fs.create("newdir/inner.bin", Buffer.alloc(100_000, 7));
  await fs.symlink("../a.txt", "newdir/link");
  await fs.create("to-rename.txt", "renamed content");
  await fs.mkdir("big");
  for (let i = 0; i < 1000; i++) await fs.create(`big/f${i}`, `file ${i}\n`);
  await waitInStep(nc, "lu", mark, {
    service: sync,
    checkpoint: { source: SOURCE, index: fs.lastIndex },
  });
  t.is((await names("big/")).length, 1000);
  t.is(Math.max(...(await clears(standIn.clears))), fs.lastIndex);

  // A file still settling: its CREAT is not cleared before its upload.
  await fs.create("late.txt", "late");
  const lateIndex = fs.lastIndex - 1; // CREAT, then CLOSE
  await new Promise((r) => setTimeout(r, 800));
  t.true(Math.max(...(await clears(standIn.clears))) < lateIndex, "cleared before applied");
  t.false((await names()).includes("late.txt"));

  mark = Date.now();
  await fs.chown("old/kept.txt", 1234, 4321);
  // old/kept.txt is deleted below: when its SATTR and UNLNK land in one batch they coalesce to
  // the delete alone, so the metadata update this phase must show comes from a file that stays.
  await fs.chown("a.txt", 1234, 4321);
  await fs.rename("to-rename.txt", "newdir/renamed.txt");
  await fs.rename("big", "big2");
  await fs.unlink("old/kept.txt");
  await fs.rmdir("old");
  await fs.unlink("newdir/inner.bin");
  const after = await waitInStep(nc, "lu", mark, {
    service: sync,
    deletes: true,
    checkpoint: { source: SOURCE, index: fs.lastIndex },
  });
  t.is(after.failures, 0, after.lastError);
  t.true(after.renames >= 1001, `renames ${after.renames}`);
  t.true(after.metadataUpdates >= 1, `metadata updates ${after.metadataUpdates}`);
  const all = await names();
  t.true(all.includes("late.txt"), "late.txt uploaded once settled");
  for (const gone of ["to-rename.txt", "old", "old/kept.txt", "newdir/inner.bin"])
    t.false(all.includes(gone), gone);
  t.false(all.some((n) => n.startsWith("big/")));
  t.is(all.filter((n) => n.startsWith("big2/")).length, 1000);
  const cleared = await clears(standIn.clears);
  t.is(Math.max(...cleared), fs.lastIndex);
  t.deepEqual(
    [...cleared].sort((a, b) => a - b),
    cleared,
    "clears in order",
  );
  t.is(after.checkpoint["lustre:fs-MDT0000"], String(fs.lastIndex));

  const verified = await runVerifyJob({ nc, root, container: "lustre", storage });
  t.like(verified, { identical: true, differences: 0, errors: 0 });
  t.is((await stopSync(sync)).code, 0, sync.stderr());
});
