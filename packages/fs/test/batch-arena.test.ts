import { mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";
import test from "ava";
import { tempDir } from "@hsmfleet/testkit";
import { openDir } from "@hsmfleet/fs";
import type { DirBatch } from "@hsmfleet/fs";
import { loadNative } from "../src/native.js";

setFlagsFromString("--expose-gc");
const gc = runInNewContext("gc") as () => void;

/** Every packed batch of `dir` (batches of `size` entries). */
const readAll = async (dir: string, size: number): Promise<DirBatch[]> => {
  const reader = await openDir(Buffer.from(dir), { batchSize: size });
  const out: DirBatch[] = [];
  try {
    for (let b = await reader.readPacked!(); b !== null; b = await reader.readPacked!())
      out.push(b);
  } finally {
    await reader.close();
  }
  return out;
};

const namesOf = (batches: DirBatch[]): string[] =>
  batches.flatMap((b) => b.entries().map((e) => e.name.toString()));

test("finished batches live in huge-page chunks: a batch held keeps its records while later reads fill newer chunks, and collected batches give their chunks back", async (t) => {
  const tmp = await tempDir("hsmfleet-arena-");
  t.teardown(() => tmp.cleanup());
  const dir = join(tmp.path, "d");
  await mkdir(dir);
  // ~3,000 records of ~136 bytes: ~400 KB per read of the directory.
  const names = Array.from(
    { length: 3000 },
    (_, i) => `file-with-a-longer-name-${String(i).padStart(6, "0")}`,
  );
  for (const n of names) await writeFile(join(dir, n), "");
  const native = loadNative();

  const held = await readAll(dir, 256);
  const expected = namesOf(held).sort();
  t.deepEqual(expected, [...names].sort());
  // ~40 more reads (~16 MB of batches): several 4 MiB chunks are filled and retired meanwhile.
  let peak = native.batchArenaChunks();
  for (let i = 0; i < 40; i++) {
    const again = await readAll(dir, 256);
    t.is(
      again.reduce((n, b) => n + b.count, 0),
      names.length,
    );
    peak = Math.max(peak, native.batchArenaChunks());
  }
  t.true(peak >= 2, `peak chunks ${peak}`);
  // The batches of the first read still hold what was read then.
  t.deepEqual(namesOf(held).sort(), expected);

  // Once nothing holds the batches, collection gives their chunks back (the chunk being filled stays).
  held.length = 0;
  for (let i = 0; i < 20 && native.batchArenaChunks() > 1; i++) {
    gc();
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  t.true(native.batchArenaChunks() <= 1, `chunks left ${native.batchArenaChunks()}`);
});
