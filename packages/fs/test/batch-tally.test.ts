import test from "ava";
import { DirBatch, TALLY } from "@hsmfleet/fs";
import { loadNative } from "../src/native.js";

/** A packed batch (format 2) of records given as [type, flags, size, hsm flags, name]. */
const packed = (records: Array<[number, number, number, number, string]>): Buffer => {
  const parts: Buffer[] = [];
  const head = Buffer.alloc(8);
  head.writeUInt32LE(records.length, 0);
  head.writeUInt16LE(2, 4);
  parts.push(head);
  for (const [type, flags, size, hsmFlags, name] of records) {
    const len = 96 + Math.ceil(name.length / 8) * 8;
    const r = Buffer.alloc(len);
    r.writeUInt32LE(len, 0);
    r.writeUInt32LE(name.length, 4);
    r.writeBigUInt64LE(BigInt(size), 8);
    r.writeUInt8(type, 56);
    r.writeUInt8(flags, 57);
    r.writeUInt32LE(hsmFlags, 68);
    r.write(name, 96, "latin1");
    parts.push(r);
  }
  return Buffer.concat(parts);
};

test("tallyBatch counts files, bytes, size buckets, HSM flag slots in first-seen order, symlinks and others; it leaves directories and failed records", (t) => {
  const buf = packed([
    [1, 0x1, 4096, 0x9, "archived"], // bucket 13, flags slot 9
    [2, 0, 0, 0, "dir"],
    [1, 0x0, 0, 0, "empty"], // bucket 0, no xattr: flags slot 0
    [1, 0x4, 2 ** 40, 0, "unread"], // bucket 41
    [3, 0, 10, 0, "link"],
    [4, 0, 0, 0, "fifo"],
    [1, 0x2, 5, 0, "failed"],
    [1, 0x1, 4097, 0x9 | 0x1000, "archived-2"], // bits above 0x7f ignored
  ]);
  const counts = new Float64Array(TALLY.length);
  const scratch = { others: new Uint32Array(1) }; // grown by tally()
  const others = new DirBatch(buf).tally(counts, scratch);
  const batch = new DirBatch(buf);
  t.deepEqual(
    [...others].map((off) => batch.entry(off).name.toString()),
    ["dir", "failed"],
  );
  t.is(counts[TALLY.files], 4);
  t.is(counts[TALLY.bytes], 4096 + 0 + 2 ** 40 + 4097);
  t.is(counts[TALLY.symlinks], 1);
  t.is(counts[TALLY.other], 1);
  t.is(counts[TALLY.buckets + 13], 2);
  t.is(counts[TALLY.buckets + 0], 1);
  t.is(counts[TALLY.buckets + 41], 1);
  t.is(counts[TALLY.flags + 9], 2);
  t.is(counts[TALLY.flags + 0], 1);
  t.is(counts[TALLY.unread], 1);
  t.is(counts[TALLY.orderLength], 3);
  t.deepEqual(
    [...counts.subarray(TALLY.order, TALLY.order + 3)],
    [TALLY.flags + 9, TALLY.flags + 0, TALLY.unread],
  );
  // A second batch adds to the same counts; a slot already seen is not listed again.
  new DirBatch(packed([[1, 0x1, 1, 0x9, "again"]])).tally(counts, scratch);
  t.is(counts[TALLY.files], 5);
  t.is(counts[TALLY.orderLength], 3);
});

test("tallyBatch refuses what is not a whole packed batch, and an offsets array too short", (t) => {
  const native = loadNative();
  const counts = new Float64Array(TALLY.length);
  const others = new Uint32Array(8);
  const good = packed([[1, 0, 1, 0, "a"]]);
  t.is(native.tallyBatch(good, counts, others), 0);
  const wrongVersion = Buffer.from(good);
  wrongVersion.writeUInt16LE(3, 4);
  t.throws(() => native.tallyBatch(wrongVersion, counts, others), {
    instanceOf: TypeError,
    message: /format version 2/,
  });
  // The count says two records, the buffer holds one.
  const short = Buffer.from(good);
  short.writeUInt32LE(2, 0);
  t.throws(() => native.tallyBatch(short, counts, others), {
    instanceOf: TypeError,
    message: /past the end/,
  });
  // A record length running past the end, or shorter than a header.
  const long = Buffer.from(good);
  long.writeUInt32LE(4096, 8);
  t.throws(() => native.tallyBatch(long, counts, others), { message: /past the end/ });
  const tiny = Buffer.from(good);
  tiny.writeUInt32LE(8, 8);
  t.throws(() => native.tallyBatch(tiny, counts, others), { message: /past the end/ });
  t.throws(() => native.tallyBatch(good.subarray(0, 4), counts, others), { instanceOf: TypeError });
  t.throws(() => native.tallyBatch(good, new Float64Array(10), others), { instanceOf: TypeError });
  t.throws(() => native.tallyBatch(good, counts, new Uint32Array(0)), { instanceOf: RangeError });
  // Nothing was counted by the refused calls.
  t.is(counts[TALLY.files], 1);
});
