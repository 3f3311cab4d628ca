import { lstat, mkdir } from "node:fs/promises";
import { join } from "node:path";
import test from "ava";
import { BlobServiceClient } from "@azure/storage-blob";
import { parseStorageTarget } from "@hsmfleet/blob";
import { runImportJob } from "@hsmfleet/coordinator";
import { importLevelStats } from "@hsmfleet/worker";
import { tempDir } from "@hsmfleet/testkit";
import { startBus, startStorage, startWorkers } from "./helpers.js";

/** Subdirectories of the one wide level. */
const DIRS = 240;
const name = (i: number): string => `top/d${String(i).padStart(4, "0")}`;

test("import streams a level's subdirectories: a wide level is not held whole, stubs and prefixes still pair up (issue 22)", async (t) => {
  const tmp = await tempDir();
  t.teardown(() => tmp.cleanup());
  const azurite = await startStorage(t);
  const storage = parseStorageTarget(azurite.connectionString)!;
  const { server, nc } = await startBus(t);
  await startWorkers(t, server.url, 2, undefined, { storage });
  const container = BlobServiceClient.fromConnectionString(
    azurite.connectionString,
  ).getContainerClient("wide");
  await container.create();

  // One level "top/" of DIRS subdirectories, in three shapes: a prefix only (a file inside, no
  // stub), a folder stub only (an empty directory with its own mode), and a stub and a prefix
  // with siblings whose names sort between the two ("dNNNN" < "dNNNN-x" < "dNNNN.y" < "dNNNN/").
  const uploads: Array<() => Promise<unknown>> = [];
  const put = (blob: string, data: string, metadata: Record<string, string> = {}): void =>
    void uploads.push(() =>
      container.getBlockBlobClient(blob).upload(data, Buffer.byteLength(data), { metadata }),
    );
  let files = 0;
  for (let i = 0; i < DIRS; i++) {
    const d = name(i);
    if (i % 3 !== 1) {
      put(`${d}/f`, `inside ${i}`);
      files++;
    }
    if (i % 3 === 1) put(d, "", { hdi_isfolder: "true", permissions: "0750" });
    if (i % 3 === 2) {
      put(d, "", { hdi_isfolder: "true", permissions: "0711" });
      put(`${d}-x`, `beside ${i}`);
      put(`${d}.y`, `beside ${i}`);
      files += 2;
    }
  }
  for (let k = 0; k < uploads.length; k += 32)
    await Promise.all(uploads.slice(k, k + 32).map((u) => u()));

  const target = join(tmp.path, "t");
  await mkdir(target);
  importLevelStats.reset();
  const summary = await runImportJob({ nc, target, container: "wide", storage });
  t.like(summary, {
    state: "succeeded",
    totalErrors: 0,
    importedFiles: files,
    // The subdirectories and "top" itself.
    importedDirectories: DIRS + 1,
  });

  // Every subdirectory exists with the mode of its stub (or the default without one), and its
  // file inside when it had a prefix.
  for (let i = 0; i < DIRS; i++) {
    const d = join(target, name(i));
    const st = await lstat(d);
    t.true(st.isDirectory(), name(i));
    if (i % 3 === 1) t.is(st.mode & 0o7777, 0o750, name(i));
    if (i % 3 === 2) t.is(st.mode & 0o7777, 0o711, name(i));
    if (i % 3 !== 1) t.true((await lstat(join(d, "f"))).isFile(), `${name(i)}/f`);
    if (i % 3 === 2) {
      t.true((await lstat(`${d}-x`)).isFile(), `${name(i)}-x`);
      t.true((await lstat(`${d}.y`)).isFile(), `${name(i)}.y`);
    }
  }

  // The level's subdirectories were handled as the listing passed them, not gathered first: a
  // stub waits only until the listing is past its prefix's place.
  t.true(importLevelStats.levels >= 2, `${importLevelStats.levels} levels`);
  t.true(
    importLevelStats.peakHeldDirectories <= 4,
    `peak ${importLevelStats.peakHeldDirectories} subdirectory names held of a level of ${DIRS}`,
  );
});
