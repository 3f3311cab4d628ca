import { chmod, mkdir, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import test from "ava";
import { parseStorageTarget } from "@hsmfleet/blob";
import { runExportJob, runVerifyJob } from "@hsmfleet/coordinator";
import { listingWindowStats } from "@hsmfleet/worker";
import { tempDir } from "@hsmfleet/testkit";
import { startBus, startStorage, startWorkers } from "./helpers.js";

/** Blobs one directory's compare may hold (the worker option under test). */
const WINDOW = 40;
const FILES = 300;

const name = (i: number): string => `f${String(i).padStart(4, "0")}`;

test("verify compares a huge directory in windows of the listing: every difference and extra blob reported once, never more than one window held", async (t) => {
  const dir = await tempDir();
  t.teardown(() => dir.cleanup());
  const root = join(dir.path, "tree");
  const big = join(root, "big");
  await mkdir(big, { recursive: true });
  for (let i = 0; i < FILES; i++) await writeFile(join(big, name(i)), `file ${i}`);
  const azurite = await startStorage(t);
  const storage = parseStorageTarget(azurite.connectionString)!;
  const { server, nc } = await startBus(t);
  // Small directory pages too, so windows and pages interleave.
  await startWorkers(t, server.url, 2, undefined, {
    storage,
    listingWindowEntries: WINDOW,
    readBatchSize: 64,
  });
  const exported = await runExportJob({ nc, root, container: "vhuge", storage });
  t.like(exported, { state: "succeeded", filesExported: FILES, errors: 0 });

  listingWindowStats.reset();
  const same = await runVerifyJob({ nc, root, container: "vhuge", storage });
  t.like(same, { state: "succeeded", identical: true, differences: 0, errors: 0, files: FILES });
  t.true(
    listingWindowStats.peakEntries <= WINDOW + 1,
    `peak ${listingWindowStats.peakEntries} listing entries held`,
  );
  t.true(
    listingWindowStats.windows >= Math.ceil(FILES / WINDOW),
    `${listingWindowStats.windows} windows loaded (the directory's listing must be read in windows of ${WINDOW})`,
  );

  // Differences spread over the whole name range: removed from the tree (their blobs are extra),
  // a changed mode, new files (no blob), one that sorts before every other name.
  let removed = 0;
  let modes = 0;
  for (let i = 0; i < FILES; i++) {
    if (i % 7 === 2) {
      await rm(join(big, name(i)));
      removed++;
    } else if (i % 11 === 5) {
      await chmod(join(big, name(i)), 0o600);
      modes++;
    }
  }
  const added = 30;
  for (let i = 0; i < added; i++) await writeFile(join(big, `${name(FILES + i)}-new`), "new");
  await writeFile(join(big, "0-first"), "first");

  listingWindowStats.reset();
  const after = await runVerifyJob({ nc, root, container: "vhuge", storage });
  t.log(JSON.stringify(after.byCode));
  t.false(after.identical);
  t.is(after.errors, 0);
  t.deepEqual(after.byCode, {
    ExtraBlob: removed,
    ModeDiffers: modes,
    MissingBlob: added + 1,
  });
  t.is(after.files, FILES - removed + added + 1);
  t.true(
    listingWindowStats.peakEntries <= WINDOW + 1,
    `peak ${listingWindowStats.peakEntries} listing entries held`,
  );
  t.true(listingWindowStats.windows >= Math.ceil((FILES - removed) / WINDOW));
});
