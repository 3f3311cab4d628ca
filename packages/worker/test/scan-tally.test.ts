import { execFileSync } from "node:child_process";
import { mkdir, open, symlink, writeFile } from "node:fs/promises";
import { join } from "node:path";
import test from "ava";
import { DEFAULT_HSM_XATTR, HSM_COMPAT, encodeHsmAttrs } from "@hsmfleet/core";
import { DirBatch, isPlainRecord, openDir, setXattr } from "@hsmfleet/fs";
import { emptyScanCounters } from "@hsmfleet/protocol";
import type { ScanCounters } from "@hsmfleet/protocol";
import { tempDir } from "@hsmfleet/testkit";
import { ScanTally } from "../src/walk/scan-tally.js";
import { countRecord } from "../src/walk/scan-visitor.js";

/** Sizes around every boundary the tally handles differently (4 GiB: no more Math.clz32). */
const SIZES = [
  0,
  1,
  2,
  3,
  4095,
  4096,
  4097,
  2 ** 31 - 1,
  2 ** 31,
  2 ** 32 - 1,
  2 ** 32,
  2 ** 32 + 1,
  5e9,
  2 ** 40,
];

/** Reads every packed batch of `dir` and counts each plain record both ways. */
const countBoth = async (
  dir: string,
  hsmSizes?: { min: number; max: number },
): Promise<{
  direct: ScanCounters;
  tallied: ScanCounters;
  batched: ScanCounters;
  records: number;
  /** Names of the records addBatch left (directories, failed entries), in order. */
  left: string[];
  /** The same picked one by one. */
  notPlain: string[];
}> => {
  const direct = emptyScanCounters();
  const tallied = emptyScanCounters();
  const batched = emptyScanCounters();
  const tally = new ScanTally();
  const whole = new ScanTally();
  let records = 0;
  const left: string[] = [];
  const notPlain: string[] = [];
  // Small batches: the tally spans several of them, as it spans a shard's directories.
  const reader = await openDir(Buffer.from(dir), {
    hsmXattr: DEFAULT_HSM_XATTR,
    batchSize: 7,
    hsmSizes,
  });
  try {
    for (
      let batch = await reader.readPacked!();
      batch !== null;
      batch = await reader.readPacked!()
    ) {
      for (const off of whole.addBatch(batch)) left.push(batch.entry(off).name.toString());
      for (let i = 0, off = DirBatch.FIRST; i < batch.count; i++, off = batch.next(off)) {
        if (!isPlainRecord(batch, off)) {
          notPlain.push(batch.entry(off).name.toString());
          continue;
        }
        records++;
        countRecord(direct, batch, off);
        tally.add(batch, off);
      }
    }
  } finally {
    await reader.close();
  }
  tally.foldInto(tallied);
  whole.foldInto(batched);
  return { direct, tallied, batched, records, left, notPlain };
};

test("the scan tally folds into the same counters as counting each record: sizes across 4 GiB, every HSM flag combination, unread, symlinks, fifos", async (t) => {
  const tmp = await tempDir("hsmfleet-tally-");
  try {
    for (const [i, size] of SIZES.entries()) {
      const f = await open(join(tmp.path, `size-${i}`), "w");
      await f.truncate(size); // sparse
      await f.close();
    }
    // Every value of the bits hsmStateOfFlags reads, plus bits it ignores.
    for (let flags = 0; flags < 0x80; flags++) {
      const p = join(tmp.path, `flags-${flags}`);
      await writeFile(p, "x".repeat(flags));
      await setXattr(
        Buffer.from(p),
        DEFAULT_HSM_XATTR,
        encodeHsmAttrs({
          compat: HSM_COMPAT,
          flags: flags | 0x1000,
          archiveId: 1n,
          archiveVersion: 0n,
        }),
      );
    }
    await symlink("size-0", join(tmp.path, "link"));
    execFileSync("mkfifo", [join(tmp.path, "fifo")]);
    // Records the tally leaves to the walk: two directories, a file whose xattr is too short.
    await mkdir(join(tmp.path, "sub-a"));
    await mkdir(join(tmp.path, "sub-b"));
    await writeFile(join(tmp.path, "bad-xattr"), "x");
    await setXattr(Buffer.from(join(tmp.path, "bad-xattr")), DEFAULT_HSM_XATTR, Buffer.from("abc"));

    const all = await countBoth(tmp.path);
    t.is(all.records, SIZES.length + 0x80 + 2);
    t.deepEqual(all.tallied, all.direct);
    // The native whole-batch count: the same counters, the states in the same order.
    t.deepEqual(all.batched, all.direct);
    t.is(JSON.stringify(all.batched), JSON.stringify(all.direct));
    t.deepEqual(all.left, all.notPlain);
    t.deepEqual([...all.left].sort(), ["bad-xattr", "sub-a", "sub-b"]);
    t.true(Object.keys(all.direct.hsmStates).length >= 6, JSON.stringify(all.direct.hsmStates));

    // Some files unread (outside the size range): the "unread" state, counted the same.
    const some = await countBoth(tmp.path, { min: 10, max: 100 });
    t.deepEqual(some.tallied, some.direct);
    t.is(JSON.stringify(some.batched), JSON.stringify(some.direct));
    t.true((some.direct.hsmStates["unread"] ?? 0) > 0);

    // A second fold adds to what is there, from zero again.
    const twice = emptyScanCounters();
    const tally = new ScanTally();
    tally.foldInto(twice);
    t.deepEqual(twice, emptyScanCounters());
  } finally {
    await tmp.cleanup();
  }
});
