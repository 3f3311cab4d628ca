import test from "ava";
import Long from "long";
import { EntryType } from "@hsmfleet/core";
import type { FileEntry } from "@hsmfleet/core";
import { hsmfleet } from "../src/gen/hsmfleet.js";
import { decodeTransferBatch, encodeTransferBatch, Uint64RangeError } from "../src/index.js";
import type { TransferBatch } from "../src/index.js";

// The hand-written TransferBatch codec (transfer-batch-wire.ts) against protobufjs, the generated
// reference: the same bytes out, the same messages back, the same refusals of broken input.

const long = (v: bigint, unsigned: boolean): Long =>
  Long.fromBits(Number(BigInt.asUintN(32, v)), Number(BigInt.asUintN(32, v >> 32n)), unsigned);

/** The reference: protobufjs' generated encoder, fed the wire shape by hand. */
const referenceEncode = (m: TransferBatch): Uint8Array =>
  hsmfleet.v1.TransferBatch.encode({
    jobId: m.jobId,
    batchId: m.batchId,
    shardId: m.shardId,
    sequence: m.sequence,
    entries: m.entries.map((e) => ({
      path: e.path,
      type: e.type,
      size: long(BigInt(e.size), true),
      mtimeSec: long(BigInt(e.mtimeSec), false),
      mtimeNsec: e.mtimeNsec,
      mode: e.mode,
      uid: e.uid,
      gid: e.gid,
      ino: long(e.ino, true),
      nlink: e.nlink,
      hsm: e.hsm
        ? {
            compat: e.hsm.compat,
            flags: e.hsm.flags,
            archiveId: long(e.hsm.archiveId, true),
            archiveVersion: long(e.hsm.archiveVersion, true),
          }
        : null,
      linkTarget: e.linkTarget ?? null,
    })),
    blobNames: m.blobNames ?? [],
  }).finish();

/** A deterministic pseudo-random generator (xorshift32). */
const rng = (seed: number) => {
  let x = seed >>> 0 || 1;
  return (): number => {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    return x;
  };
};

const pick = <T>(r: () => number, values: readonly T[]): T => values[r() % values.length]!;

const randomEntry = (r: () => number): FileEntry => {
  const bytes = Buffer.alloc(r() % 40);
  for (let i = 0; i < bytes.length; i++) bytes[i] = r() & 0xff;
  const e: FileEntry = {
    path: bytes,
    type: pick(r, [EntryType.File, EntryType.Directory, EntryType.Symlink, 0 as EntryType]),
    size: pick(r, [0, 1, 127, 128, 2 ** 31, 2 ** 32, 2 ** 35 + 7, Number.MAX_SAFE_INTEGER, r()]),
    mtimeSec: pick(r, [0, 1_700_000_000, -1, -(2 ** 40), Number.MIN_SAFE_INTEGER, r()]),
    mtimeNsec: pick(r, [0, 999_999_999, r() % 1_000_000_000]),
    mode: pick(r, [0, 0o100644, 0o40755, r()]),
    uid: pick(r, [0, 4_294_967_295, r()]),
    gid: pick(r, [0, 12345, r()]),
    ino: pick(r, [0n, 1n, 2n ** 32n, 2n ** 64n - 1n, BigInt(r()) << BigInt(r() % 33)]),
    nlink: pick(r, [0, 1, 2, r()]),
  };
  if (r() % 3 === 0)
    e.hsm = {
      compat: pick(r, [0, 1]),
      flags: pick(r, [0, 9, r()]),
      archiveId: pick(r, [0n, 3n, 2n ** 63n]),
      archiveVersion: pick(r, [0n, 2n ** 64n - 1n, BigInt(r())]),
    };
  if (r() % 4 === 0) e.linkTarget = Buffer.from(`../t${r()}`);
  return e;
};

const randomBatch = (r: () => number): TransferBatch => {
  const entries = Array.from({ length: r() % 12 }, () => randomEntry(r));
  const batch: TransferBatch = {
    jobId: pick(r, ["", "job-1", "jöb-ü"]),
    batchId: pick(r, ["", "s.b0", `s${r()}.b${r() % 100}`]),
    shardId: pick(r, ["", "s", "ş"]),
    sequence: pick(r, [0, 1, 300, 4_294_967_295]),
    entries,
  };
  if (r() % 3 === 0 && entries.length > 0) batch.blobNames = entries.map((_, i) => `name/${i}/ø`);
  return batch;
};

test("the hand-written codec writes protobufjs' bytes and reads them back exactly (500 random batches)", (t) => {
  const r = rng(22);
  for (let i = 0; i < 500; i++) {
    const batch = randomBatch(r);
    const ours = encodeTransferBatch(batch);
    const reference = referenceEncode(batch);
    t.deepEqual(Buffer.from(ours), Buffer.from(reference), `batch ${i}`);
    const back = decodeTransferBatch(reference);
    // Decoding fills absent fields with zeros and drops an empty link target, as before.
    const want = {
      ...batch,
      entries: batch.entries.map((e) => {
        const { linkTarget, ...rest } = e;
        return linkTarget && linkTarget.length > 0 ? { ...rest, linkTarget } : rest;
      }),
    };
    t.deepEqual(back, want, `batch ${i}`);
    // protobufjs decodes ours the same way.
    const ref = hsmfleet.v1.TransferBatch.decode(ours);
    t.is(ref.entries.length, batch.entries.length);
  }
});

test("unknown fields are skipped, in the batch and in an entry", (t) => {
  const batch = randomBatch(rng(7));
  batch.entries = [randomEntry(rng(8))];
  const known = Buffer.from(encodeTransferBatch(batch));
  // Field 15 varint, field 16 length-delimited, field 17 fixed32, field 18 fixed64 at the top;
  // and an entry (field 5) holding path + field 20 (length-delimited) + field 21 (varint).
  const extra = Buffer.from([
    0x78, 0x96, 0x01, 0x82, 0x01, 0x02, 0x61, 0x62, 0x8d, 0x01, 1, 2, 3, 4, 0x91, 0x01, 1, 2, 3, 4,
    5, 6, 7, 8,
  ]);
  const entry = Buffer.from([0x0a, 0x01, 0x7a, 0xa2, 0x01, 0x01, 0x00, 0xa8, 0x01, 0x05]);
  const wire = Buffer.concat([known, extra, Buffer.from([0x2a, entry.length]), entry]);
  const back = decodeTransferBatch(wire);
  t.is(back.entries.length, 2);
  t.deepEqual(back.entries[1]!.path, Buffer.from("z"));
  t.is(back.entries[1]!.size, 0);
  t.is(back.jobId, batch.jobId);
});

test("every truncation of a batch is refused where protobufjs refuses it, and decodes alike where it does not", (t) => {
  const batch = randomBatch(rng(99));
  batch.entries = [randomEntry(rng(1)), randomEntry(rng(2)), randomEntry(rng(3))];
  const wire = Buffer.from(encodeTransferBatch(batch));
  for (let cut = 0; cut < wire.length; cut++) {
    const part = wire.subarray(0, cut);
    let refOk = true;
    try {
      hsmfleet.v1.TransferBatch.decode(part);
    } catch {
      refOk = false;
    }
    if (refOk) t.notThrows(() => decodeTransferBatch(part), `cut at ${cut}`);
    else t.throws(() => decodeTransferBatch(part), undefined, `cut at ${cut}`);
  }
});

test("a length running past the end names the offset; an mtime below -2^53 is refused", (t) => {
  const err = t.throws(() => decodeTransferBatch(Buffer.from([0x2a, 0x7f, 0x0a])), {
    instanceOf: RangeError,
  });
  t.regex(err.message, /TransferBatch decode: a length-delimited field runs past the end/);
  const wire = hsmfleet.v1.TransferBatch.encode({
    entries: [{ mtimeSec: Long.fromString("-9007199254740993", false) }],
  }).finish();
  const e2 = t.throws(() => decodeTransferBatch(wire), { instanceOf: Uint64RangeError });
  t.regex(e2.message, /FileEntry\.mtimeSec = -9007199254740993/);
});

test("a negative size is refused on encode (it has no uint64)", (t) => {
  t.throws(
    () =>
      encodeTransferBatch({
        jobId: "j",
        batchId: "b",
        shardId: "s",
        sequence: 0,
        entries: [{ ...randomEntry(rng(5)), size: -1 }],
      }),
    { instanceOf: Uint64RangeError },
  );
});
