/**
 * Files that change, shrink, grow or vanish between the walk and their upload.
 */
import { appendFile, rm, truncate, utimes, writeFile } from "node:fs/promises";
import { mkdir } from "node:fs/promises";
import { join } from "node:path";
import test from "ava";
import { parseStorageTarget } from "@hsmfleet/blob";
import { runExportJob, runVerifyJob } from "@hsmfleet/coordinator";
import { tempDir } from "@hsmfleet/testkit";
import { startBus, startStorage, startWorkers } from "./helpers.js";

test("files that change, shrink, grow or vanish during export are reported per file; a re-run fixes them and verify passes", async (t) => {
  const dir = await tempDir();
  t.teardown(() => dir.cleanup());
  const root = join(dir.path, "tree");
  await mkdir(root);
  const names = ["steady", "changes", "shrinks", "grows", "vanishes"];
  for (const n of names) await writeFile(join(root, n), Buffer.alloc(50_000, n.charCodeAt(0)));
  const azurite = await startStorage(t);
  const storage = parseStorageTarget(azurite.connectionString)!;
  const { server, nc } = await startBus(t);
  let tampered = false;
  await startWorkers(
    t,
    server.url,
    1,
    {
      // The root's entries are listed and its transfer batch is built; before it is published,
      // the files move under the job's feet.
      beforeWalkResult: async (shard) => {
        if (tampered || shard.depth !== 0) return;
        tampered = true;
        await writeFile(join(root, "changes"), Buffer.alloc(50_000, 0x7a));
        await utimes(join(root, "changes"), new Date(), new Date(Date.now() + 5000));
        await truncate(join(root, "shrinks"), 1000);
        await appendFile(join(root, "grows"), Buffer.alloc(30_000, 1));
        await rm(join(root, "vanishes"));
      },
    },
    { storage, retryDelayMs: 10 },
  );
  const first = await runExportJob({ nc, root, container: "moving", storage, maxErrors: -1 });
  t.like(first, { state: "completed-with-errors", errors: 4, filesExported: 1 });
  const byPath = new Map(first.errorSamples.map((e) => [e.path, e]));
  for (const n of ["changes", "shrinks", "grows"]) {
    t.regex(
      byPath.get(n)?.message ?? "",
      /changed since it was listed|changed while being uploaded/,
      n,
    );
  }
  t.regex(byPath.get("shrinks")!.message, /size 50000→1000/);
  t.regex(byPath.get("grows")!.message, /size 50000→80000/);
  t.like(byPath.get("vanishes"), { operation: "open", code: "ENOENT" });

  const second = await runExportJob({ nc, root, container: "moving", storage });
  t.like(second, { state: "succeeded", errors: 0, filesExported: 3, skipped: 1 });
  const verify = await runVerifyJob({ nc, root, container: "moving", storage, content: true });
  t.like(verify, { identical: true, differences: 0 });
});
