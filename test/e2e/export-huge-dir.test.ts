import { mkdir, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import test from "ava";
import { BlobServiceClient } from "@azure/storage-blob";
import { parseStorageTarget } from "@hsmfleet/blob";
import { runExportJob } from "@hsmfleet/coordinator";
import { listingWindowStats } from "@hsmfleet/worker";
import { tempDir } from "@hsmfleet/testkit";
import { startBus, startStorage, startWorkers } from "./helpers.js";

/** Blobs one directory's compare may hold (the worker option under test). */
const WINDOW = 40;
const FILES = 300;

const content = (i: number, version: number): string => `file ${i} v${version} `.repeat(version);

test("a huge directory is compared in windows of the listing: new, changed, unchanged and deleted-in-tree entries over several windows", async (t) => {
  const dir = await tempDir();
  t.teardown(() => dir.cleanup());
  const root = join(dir.path, "tree");
  const big = join(root, "big");
  await mkdir(big, { recursive: true });
  for (let i = 0; i < FILES; i++)
    await writeFile(join(big, `f${String(i).padStart(4, "0")}`), content(i, 1));
  const azurite = await startStorage(t);
  const storage = parseStorageTarget(azurite.connectionString)!;
  const { server, nc } = await startBus(t);
  // Small directory pages too, so windows and pages interleave.
  await startWorkers(t, server.url, 2, undefined, {
    storage,
    listingWindowEntries: WINDOW,
    readBatchSize: 64,
  });

  const first = await runExportJob({ nc, root, container: "huge", storage });
  t.like(first, { state: "succeeded", filesExported: FILES, directoriesExported: 1, errors: 0 });

  // Changed (a different size), deleted from the tree, and new entries, spread over the name range.
  const changed: number[] = [];
  const deleted: number[] = [];
  for (let i = 0; i < FILES; i++) {
    const name = join(big, `f${String(i).padStart(4, "0")}`);
    if (i % 10 === 3) {
      changed.push(i);
      await writeFile(name, content(i, 2));
    } else if (i % 6 === 1) {
      deleted.push(i);
      await rm(name);
    }
  }
  const added = 45;
  for (let i = 0; i < added; i++)
    await writeFile(join(big, `f${String(FILES + i).padStart(4, "0")}-new`), "new");
  await writeFile(join(big, "0-first"), "sorts before every other name");
  const unchanged = FILES - changed.length - deleted.length;

  listingWindowStats.reset();
  const second = await runExportJob({ nc, root, container: "huge", storage });
  t.like(second, {
    state: "succeeded",
    errors: 0,
    filesExported: changed.length + added + 1,
    // Every unchanged file and the directory "big" itself.
    skipped: unchanged + 1,
  });
  // The compare never held more than one window (and the first blob of the next one).
  t.true(
    listingWindowStats.peakEntries <= WINDOW + 1,
    `peak ${listingWindowStats.peakEntries} listing entries held`,
  );
  t.true(
    listingWindowStats.windows >= Math.ceil(FILES / WINDOW),
    `${listingWindowStats.windows} windows`,
  );

  // Every entry of the tree is in the container as it is now; deleted ones stay (export never deletes).
  const container = BlobServiceClient.fromConnectionString(
    azurite.connectionString,
  ).getContainerClient("huge");
  const sizes = new Map<string, number>();
  for await (const b of container.listBlobsFlat())
    sizes.set(b.name, b.properties.contentLength ?? 0);
  for (let i = 0; i < FILES; i++) {
    const name = `big/f${String(i).padStart(4, "0")}`;
    const version = changed.includes(i) ? 2 : 1;
    t.is(sizes.get(name), Buffer.byteLength(content(i, version)), name);
  }
  t.is(sizes.get("big/0-first"), Buffer.byteLength("sorts before every other name"));
  for (let i = 0; i < added; i++)
    t.is(sizes.get(`big/f${String(FILES + i).padStart(4, "0")}-new`), 3);

  // Nothing left to do: a third run skips everything, still window by window.
  const third = await runExportJob({ nc, root, container: "huge", storage });
  t.like(third, {
    state: "succeeded",
    filesExported: 0,
    skipped: unchanged + changed.length + added + 2,
  });
});
