import test from "ava";
import { EntryType } from "@hsmfleet/core";
import { SyntheticNamespace } from "../src/bench/synthetic-namespace.js";

const ROOT = Buffer.from("/nowhere");

/** Walks the whole synthetic tree breadth-first, as the workers would. */
const walk = async (tree: SyntheticNamespace, batchSize: number) => {
  let files = 0;
  let directories = 0;
  let bytes = 0;
  const names = new Set<string>();
  const queue: Buffer[] = [Buffer.alloc(0)];
  for (let dir = queue.shift(); dir !== undefined; dir = queue.shift()) {
    const reader = await tree.openDirectory(ROOT, dir, { hsmXattr: undefined, batchSize });
    for (let batch = await reader.read(); batch !== null; batch = await reader.read()) {
      if (batch.length > batchSize) throw new Error(`batch of ${batch.length} > ${batchSize}`);
      for (const e of batch) {
        const path = dir.length === 0 ? e.name : Buffer.concat([dir, Buffer.from("/"), e.name]);
        names.add(path.toString());
        if (e.type === EntryType.Directory) {
          directories++;
          queue.push(path);
        } else {
          files++;
          bytes += e.size;
        }
      }
    }
    await reader.close();
  }
  return { files, directories, bytes, names: names.size };
};

test("a synthetic tree lists exactly its files and directories, in bounded batches, the same every time", async (t) => {
  const tree = new SyntheticNamespace({
    files: 10_007,
    filesPerDirectory: 100,
    fanOut: 3,
    hugeDirectoryEntries: 2_500,
  });
  const a = await walk(tree, 64);
  t.is(a.files, 10_007 + 2_500);
  t.is(a.directories, tree.totalDirectories - 1); // the root is not an entry
  t.is(a.names, a.files + a.directories); // no name twice
  const b = await walk(tree, 4096);
  t.deepEqual(b, a);
});

test("a synthetic tree refuses a directory it does not have", async (t) => {
  const tree = new SyntheticNamespace({ files: 1000, filesPerDirectory: 100, fanOut: 3 });
  await t.throwsAsync(
    tree.openDirectory(ROOT, Buffer.from("d2/d5"), { hsmXattr: undefined, batchSize: 10 }),
    { message: /not in the synthetic tree/ },
  );
  await t.throwsAsync(
    tree.openDirectory(ROOT, Buffer.from("d99"), { hsmXattr: undefined, batchSize: 10 }),
  );
  await t.notThrowsAsync(
    tree.openDirectory(ROOT, Buffer.from(tree.pathOf(9)), { hsmXattr: undefined, batchSize: 10 }),
  );
});
