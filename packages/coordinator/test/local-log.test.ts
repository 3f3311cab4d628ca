import { readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import test from "ava";
import { tempDir } from "@hsmfleet/testkit";
import { LocalLog } from "../src/index.js";

test("a resumed log is cut back to the checkpointed length, so no line appears twice", async (t) => {
  const dir = await tempDir();
  t.teardown(() => dir.cleanup());
  const path = join(dir.path, "list.ndjson");
  const log = await LocalLog.open(path);
  await log.append('{"n":1}');
  await log.append('{"n":2}');
  await log.flush();
  const checkpoint = log.bytes;
  await log.append('{"n":3}');
  await log.close();
  t.is(checkpoint, 16);
  // Crash after line 3 was written but before the checkpoint recorded it: resume cuts it off.
  const resumed = await LocalLog.open(path, checkpoint);
  await resumed.append('{"n":3}');
  await resumed.close();
  t.is(await readFile(path, "utf8"), '{"n":1}\n{"n":2}\n{"n":3}\n');
});

test("a log that cannot be written names the path", async (t) => {
  const dir = await tempDir();
  t.teardown(() => dir.cleanup());
  await writeFile(join(dir.path, "file"), "");
  await t.throwsAsync(LocalLog.open(join(dir.path, "file", "under-a-file.ndjson")), {
    message: /open .*file\/under-a-file\.ndjson: ENOTDIR/,
  });
});
