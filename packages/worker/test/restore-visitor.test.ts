import test from "ava";
import { EntryType, HsmFlag } from "@hsmfleet/core";
import type { DirEntry } from "@hsmfleet/fs";
import {
  JobKind,
  decodeTransferBatch,
  newJobSpec,
  newJobStatus,
  rootWalkShard,
} from "@hsmfleet/protocol";
import type { TransferBatch } from "@hsmfleet/protocol";
import { DEFAULT_RESTORE_BATCH_BYTES, restoreVisitor } from "../src/restore/restore-visitor.js";
import type { ShardScope } from "../src/walk/walk-shard.js";

const MiB = 1024 * 1024;

const released = (name: string, size: number): DirEntry => ({
  name: Buffer.from(name),
  type: EntryType.File,
  size,
  mode: 0o100644,
  uid: 0,
  gid: 0,
  nlink: 1,
  ino: 1n,
  mtimeSec: 0,
  mtimeNsec: 0,
  hsm: {
    compat: 0,
    flags: HsmFlag.Exists | HsmFlag.Archived | HsmFlag.Released,
    archiveId: 1n,
    archiveVersion: 0n,
  },
});

/** Runs the restore visitor over `files` and returns the restore items it published. */
const batchesOf = async (
  files: Array<[string, number]>,
  spec: { restoreBatch?: number; batchMaxBytes?: number } = {},
): Promise<TransferBatch[]> => {
  const base = newJobSpec({ jobId: "restore-t", kind: JobKind.Restore, root: Buffer.from("/r") });
  const job = newJobStatus(
    {
      ...base,
      batchMaxBytes: spec.batchMaxBytes ?? 0,
      import: { ...base.import, restoreBatch: spec.restoreBatch ?? 0 },
    },
    { published: 1 },
  );
  const published: TransferBatch[] = [];
  const scope = {
    shard: rootWalkShard("restore-t"),
    job,
    spawn: (_subject: string, data: Uint8Array) => {
      published.push(decodeTransferBatch(data));
      return Promise.resolve();
    },
  } as unknown as ShardScope;
  const v = restoreVisitor(scope);
  for (const [name, size] of files) await v.entry(Buffer.from(name), released(name, size));
  await v.end();
  return published;
};

test("restore items are bounded by bytes as well as files, so a few large files spread over several items", async (t) => {
  const large = Array.from({ length: 8 }, (_, i): [string, number] => [`big${i}`, 64 * MiB]);
  const items = await batchesOf(large);
  t.is(DEFAULT_RESTORE_BATCH_BYTES, 256 * MiB);
  t.deepEqual(
    items.map((b) => b.entries.map((e) => e.path.toString())),
    [
      ["big0", "big1", "big2", "big3"],
      ["big4", "big5", "big6", "big7"],
    ],
  );
  // A file larger than the bound goes alone; the job's own bound wins over the default.
  const mixed = await batchesOf(
    [
      ["a", 10 * MiB],
      ["huge", 300 * MiB],
      ["b", 1],
      ["c", 1],
    ],
    { batchMaxBytes: 20 * MiB },
  );
  t.deepEqual(
    mixed.map((b) => b.entries.map((e) => e.path.toString())),
    [["a"], ["huge"], ["b", "c"]],
  );
});

test("small files still go 50 to an item (or restoreBatch)", async (t) => {
  const small = Array.from({ length: 120 }, (_, i): [string, number] => [`f${i}`, 4096]);
  t.deepEqual(
    (await batchesOf(small)).map((b) => b.entries.length),
    [50, 50, 20],
  );
  t.deepEqual(
    (await batchesOf(small, { restoreBatch: 7 })).map((b) => b.entries.length).slice(0, 2),
    [7, 7],
  );
});
