import { mkdir, rm, symlink, writeFile } from "node:fs/promises";
import { join } from "node:path";
import test from "ava";
import { tempDir } from "@hsmfleet/testkit";
import { EntryType } from "@hsmfleet/core";
import { decodeTransferBatch } from "@hsmfleet/protocol";
import { checkExportSource, singleFileBatch } from "../src/export/export-source.js";

test("a single file's export: its directory is the job root, its base name the one entry's relative path", async (t) => {
  const dir = await tempDir();
  t.teardown(() => dir.cleanup());
  await mkdir(join(dir.path, "d"));
  await writeFile(join(dir.path, "d", "f.bin"), Buffer.alloc(1234, 7));
  const source = await checkExportSource(join(dir.path, "d", "f.bin"));
  t.is(source.file, "f.bin");
  t.true(source.root.endsWith("/d"));
  t.is(source.lockPath, join(source.root, "f.bin"));
  const item = await singleFileBatch("job-1", { ...source, file: "f.bin" });
  t.is(item.batchId, "job-1.file");
  const batch = decodeTransferBatch(item.data);
  t.is(batch.entries.length, 1);
  t.is(batch.entries[0]!.path.toString(), "f.bin");
  t.is(batch.entries[0]!.type, EntryType.File);
  t.is(batch.entries[0]!.size, 1234);
});

test("a single file swapped for a symlink after the check is refused, never followed", async (t) => {
  const dir = await tempDir();
  t.teardown(() => dir.cleanup());
  await writeFile(join(dir.path, "secret"), "x");
  await writeFile(join(dir.path, "f"), "y");
  const source = await checkExportSource(join(dir.path, "f"));
  // The swap: the name now is a symlink to another file.
  await rm(join(dir.path, "f"));
  await symlink(join(dir.path, "secret"), join(dir.path, "f"));
  const err = await t.throwsAsync(singleFileBatch("job-2", { ...source, file: "f" }));
  t.regex(err.message, /no longer a regular file/);
  t.true(err.message.includes(join(source.root, "f")));
});
