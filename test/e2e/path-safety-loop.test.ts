/**
 * Path safety under random swaps (issue 14): 100 iterations, each an export and an import running
 * side by side (library-level jobs on in-process workers, real nats-server and Azurite) while a
 * tight loop swaps a directory of each tree for a symlink to a directory outside the job and back.
 * Afterwards the outside file's content appears in no blob, and nothing outside was created,
 * written or tagged with an HSM xattr. Odd iterations force the openat fallback walk.
 */
import {
  lstat,
  mkdir,
  readFile,
  readdir,
  rename,
  symlink,
  unlink,
  utimes,
  writeFile,
} from "node:fs/promises";
import { join } from "node:path";
import test from "ava";
import { BlobServiceClient } from "@azure/storage-blob";
import { parseStorageTarget } from "@hsmfleet/blob";
import { runExportJob, runImportJob } from "@hsmfleet/coordinator";
import { getXattr, setOpenat2Disabled } from "@hsmfleet/fs";
import { tempDir } from "@hsmfleet/testkit";
import { startBus, startStorage, startWorkers } from "./helpers.js";

const ITERATIONS = 100;
const SECRET = "OUTSIDE-SECRET-never-in-a-blob-42";
const MTIME = new Date("2022-02-03T04:05:06Z");

const inventory = async (dir: string): Promise<string> => {
  const rows: string[] = [];
  for (const name of (await readdir(dir)).sort()) {
    const p = join(dir, name);
    const st = await lstat(p);
    const hsm = await getXattr(Buffer.from(p), "trusted.hsm");
    const loc = await getXattr(Buffer.from(p), "trusted.hsmfleet.archive");
    rows.push(
      `${name} ${st.mode} ${st.size} ${st.mtimeMs} ${st.isFile() ? await readFile(p, "latin1") : ""} ${hsm ? "HSM" : ""} ${loc ? "LOC" : ""}`,
    );
  }
  return rows.join("\n");
};

/** Swaps `dir` for a symlink to `outside` and back as fast as it can until `stop()`. */
const swapLoop = (dir: string, outside: string) => {
  let running = true;
  let swaps = 0;
  const done = (async () => {
    await new Promise((r) => setTimeout(r, Math.random() * 20));
    while (running) {
      try {
        await rename(dir, `${dir}.real`);
        await symlink(outside, dir);
        swaps++;
        await new Promise((r) => setTimeout(r, Math.random() * 3));
        await unlink(dir);
        await rename(`${dir}.real`, dir);
      } catch {
        // Not there yet (the import makes it), or mid-swap: try again.
      }
      await new Promise((r) => setImmediate(r));
    }
    // Leave the real directory in place.
    try {
      if ((await lstat(dir)).isSymbolicLink()) {
        await unlink(dir);
        await rename(`${dir}.real`, dir);
      }
    } catch {
      // nothing to undo
    }
  })();
  return {
    stop: async () => {
      running = false;
      await done;
      return swaps;
    },
  };
};

test("100 random directory swaps beside a running export and import never read or write outside the job", async (t) => {
  t.timeout(20 * 60_000);
  const tmp = await tempDir();
  t.teardown(() => tmp.cleanup());
  const azurite = await startStorage(t);
  const storage = parseStorageTarget(azurite.connectionString)!;
  const { server, nc } = await startBus(t);
  await startWorkers(t, server.url, 2, undefined, { storage });
  t.teardown(() => setOpenat2Disabled(false));
  const service = BlobServiceClient.fromConnectionString(azurite.connectionString);

  // Import source: small blobs under d/ (implicit directory d).
  const src = service.getContainerClient("loop-src");
  await src.create();
  for (let k = 0; k < 12; k++)
    await src.getBlockBlobClient(`d/f${k}`).upload(`data ${k}`, `data ${k}`.length);

  const outside = join(tmp.path, "outside");
  await mkdir(outside);
  for (let k = 0; k < 12; k++) {
    await writeFile(join(outside, `f${k}`), SECRET);
    await utimes(join(outside, `f${k}`), MTIME, MTIME);
  }
  const before = await inventory(outside);
  let totalSwaps = 0;
  let exportErrors = 0;
  let importErrors = 0;

  for (let i = 0; i < ITERATIONS; i++) {
    setOpenat2Disabled(i % 2 === 1);
    const root = join(tmp.path, `e${i}`);
    await mkdir(join(root, "d"), { recursive: true });
    for (let k = 0; k < 12; k++) {
      // Same size and mtime as the outside files: only the path walk and the inode tell them apart.
      const decoy = join(root, "d", `f${k}`);
      await writeFile(decoy, `inside-${String(k).padStart(2, "0")}`.padEnd(SECRET.length, "."));
      await utimes(decoy, MTIME, MTIME);
    }
    const target = join(tmp.path, `i${i}`);
    await mkdir(target);
    const swapExport = swapLoop(join(root, "d"), outside);
    const swapImport = swapLoop(join(target, "d"), outside);
    const container = `loop-e${i}`;
    const [exported, imported] = await Promise.all([
      runExportJob({ nc, root, container, storage, maxErrors: -1 }),
      runImportJob({
        nc,
        target,
        container: "loop-src",
        storage,
        conflict: "overwrite-always",
        maxErrors: -1,
      }),
    ]);
    totalSwaps += (await swapExport.stop()) + (await swapImport.stop());
    exportErrors += exported.errors;
    importErrors += imported.totalErrors;
    for await (const b of service.getContainerClient(container).listBlobsFlat()) {
      const body = (
        await service.getContainerClient(container).getBlobClient(b.name).downloadToBuffer()
      ).toString("latin1");
      if (body.includes(SECRET)) t.fail(`iteration ${i}: blob ${b.name} holds the outside file`);
    }
    const after = await inventory(outside);
    if (after !== before) {
      t.fail(`iteration ${i}: the outside directory changed:\n${after}`);
      break;
    }
  }
  t.log(
    `${ITERATIONS} iterations, ${totalSwaps} swaps; refused/failed entries: export ${exportErrors}, import ${importErrors}`,
  );
  t.true(totalSwaps > ITERATIONS, "the swap loops really swapped");
  t.is(await inventory(outside), before);
});
