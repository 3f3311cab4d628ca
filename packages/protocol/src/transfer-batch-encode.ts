import type { FileEntry, HsmAttrs } from "@hsmfleet/core";
import { Uint64RangeError } from "./long.js";
import type { TransferBatch } from "./messages.js";

/**
 * TransferBatch (proto/hsmfleet/v1/transfer.proto) and its FileEntry list, encoded and decoded by
 * hand: the bytes are the ones protobufjs writes (same field order, zero values left out), but
 * with no Long object per 64-bit field, no intermediate wire object per entry and one buffer
 * allocation per batch. A batch carries up to thousands of entries and is the control plane's
 * per-file message (issue 22: the protobufjs path was ~15 % of a worker's CPU with null I/O).
 * The decoder checks every length and varint against the buffer (a message is untrusted input),
 * skips unknown fields, and refuses a 64-bit size or time a JavaScript number cannot hold.
 */

const TWO_32 = 4294967296;

/** Bytes of a varint of the non-negative 64-bit value (lo, hi). */
const varint64Size = (lo: number, hi: number): number => {
  if (hi === 0) return varint32Size(lo);
  let n = 5; // the low 35 bits
  let h = hi >>> 3;
  while (h !== 0) {
    n++;
    h >>>= 7;
  }
  return n;
};

const varint32Size = (v: number): number =>
  v < 0x80 ? 1 : v < 0x4000 ? 2 : v < 0x200000 ? 3 : v < 0x10000000 ? 4 : 5;

/** A safe integer as its 64-bit two's complement halves (protobufjs' LongBits.fromNumber). */
const splitNumber = (value: number, out: number[]): void => {
  const neg = value < 0;
  if (neg) value = -value;
  let lo = value >>> 0;
  let hi = ((value - lo) / TWO_32) >>> 0;
  if (neg) {
    hi = ~hi >>> 0;
    lo = ~lo >>> 0;
    if (++lo > 0xffffffff) {
      lo = 0;
      if (++hi > 0xffffffff) hi = 0;
    }
  }
  out[0] = lo;
  out[1] = hi;
};

const splitBigInt = (value: bigint, out: number[]): void => {
  out[0] = Number(BigInt.asUintN(32, value));
  out[1] = Number(BigInt.asUintN(32, value >> 32n));
};

class Sink {
  readonly buf: Buffer;
  pos = 0;
  constructor(size: number) {
    this.buf = Buffer.allocUnsafe(size);
  }
  byte(b: number): void {
    this.buf[this.pos++] = b;
  }
  varint32(v: number): void {
    v >>>= 0;
    while (v > 127) {
      this.buf[this.pos++] = (v & 127) | 128;
      v >>>= 7;
    }
    this.buf[this.pos++] = v;
  }
  varint64(lo: number, hi: number): void {
    while (hi !== 0) {
      this.buf[this.pos++] = (lo & 127) | 128;
      lo = ((lo >>> 7) | (hi << 25)) >>> 0;
      hi >>>= 7;
    }
    this.varint32(lo);
  }
  bytes(b: Uint8Array): void {
    this.varint32(b.length);
    this.buf.set(b, this.pos);
    this.pos += b.length;
  }
  string(s: string, byteLength: number): void {
    this.varint32(byteLength);
    this.pos += this.buf.write(s, this.pos, byteLength, "utf8");
  }
}

/** An int32 (the enum) as protobufjs writes it: negative values take ten bytes. */
const int32Size = (v: number): number => (v < 0 ? 10 : varint32Size(v));

const checkSafe = (value: number, field: string, unsigned: boolean): void => {
  if (!Number.isSafeInteger(value) || (unsigned && value < 0))
    throw new Uint64RangeError(field, String(value));
};

/** Scratch for 64-bit halves (one batch is encoded at a time: encoding is synchronous). */
const halves = [0, 0];
/** Per entry: size, mtimeSec, ino (lo, hi each), hsm ids, the entry's and hsm's lengths. */
const W = 12;

const hsmSize = (h: HsmAttrs, plan: number[], at: number): number => {
  let n = 0;
  if (h.compat !== 0) n += 1 + varint32Size(h.compat >>> 0);
  if (h.flags !== 0) n += 1 + varint32Size(h.flags >>> 0);
  splitBigInt(h.archiveId, halves);
  plan[at] = halves[0]!;
  plan[at + 1] = halves[1]!;
  if (halves[0] !== 0 || halves[1] !== 0) n += 1 + varint64Size(halves[0]!, halves[1]!);
  splitBigInt(h.archiveVersion, halves);
  plan[at + 2] = halves[0]!;
  plan[at + 3] = halves[1]!;
  if (halves[0] !== 0 || halves[1] !== 0) n += 1 + varint64Size(halves[0]!, halves[1]!);
  return n;
};

/** The entry's encoded length (without its tag and length prefix); fills its plan slots. */
const entrySize = (e: FileEntry, plan: number[], at: number): number => {
  let n = 0;
  if (e.path.length > 0) n += 1 + varint32Size(e.path.length) + e.path.length;
  if ((e.type as number) !== 0) n += 1 + int32Size(e.type);
  checkSafe(e.size, "FileEntry.size", true);
  splitNumber(e.size, halves);
  plan[at] = halves[0]!;
  plan[at + 1] = halves[1]!;
  if (e.size !== 0) n += 1 + varint64Size(halves[0]!, halves[1]!);
  checkSafe(e.mtimeSec, "FileEntry.mtimeSec", false);
  splitNumber(e.mtimeSec, halves);
  plan[at + 2] = halves[0]!;
  plan[at + 3] = halves[1]!;
  if (e.mtimeSec !== 0) n += 1 + varint64Size(halves[0]!, halves[1]!);
  if (e.mode !== 0) n += 1 + varint32Size(e.mode >>> 0);
  if (e.uid !== 0) n += 1 + varint32Size(e.uid >>> 0);
  if (e.gid !== 0) n += 1 + varint32Size(e.gid >>> 0);
  splitBigInt(e.ino, halves);
  plan[at + 4] = halves[0]!;
  plan[at + 5] = halves[1]!;
  if (halves[0] !== 0 || halves[1] !== 0) n += 1 + varint64Size(halves[0]!, halves[1]!);
  if (e.nlink !== 0) n += 1 + varint32Size(e.nlink >>> 0);
  if (e.hsm) {
    const h = hsmSize(e.hsm, plan, at + 6);
    plan[at + 11] = h;
    n += 1 + varint32Size(h) + h;
  }
  if (e.linkTarget && e.linkTarget.length > 0)
    n += 1 + varint32Size(e.linkTarget.length) + e.linkTarget.length;
  if (e.mtimeNsec !== 0) n += 1 + varint32Size(e.mtimeNsec >>> 0);
  plan[at + 10] = n;
  return n;
};

const writeEntry = (s: Sink, e: FileEntry, plan: number[], at: number): void => {
  s.byte(42); // TransferBatch.entries, id 5, length-delimited
  s.varint32(plan[at + 10]!);
  if (e.path.length > 0) {
    s.byte(10);
    s.bytes(e.path);
  }
  if ((e.type as number) !== 0) {
    s.byte(16);
    if (e.type < 0) {
      splitNumber(e.type, halves);
      s.varint64(halves[0]!, halves[1]!);
    } else s.varint32(e.type);
  }
  if (e.size !== 0) {
    s.byte(24);
    s.varint64(plan[at]!, plan[at + 1]!);
  }
  if (e.mtimeSec !== 0) {
    s.byte(32);
    s.varint64(plan[at + 2]!, plan[at + 3]!);
  }
  if (e.mode !== 0) {
    s.byte(40);
    s.varint32(e.mode);
  }
  if (e.uid !== 0) {
    s.byte(48);
    s.varint32(e.uid);
  }
  if (e.gid !== 0) {
    s.byte(56);
    s.varint32(e.gid);
  }
  if (plan[at + 4] !== 0 || plan[at + 5] !== 0) {
    s.byte(64);
    s.varint64(plan[at + 4]!, plan[at + 5]!);
  }
  if (e.nlink !== 0) {
    s.byte(72);
    s.varint32(e.nlink);
  }
  const h = e.hsm;
  if (h) {
    s.byte(82);
    s.varint32(plan[at + 11]!);
    if (h.compat !== 0) {
      s.byte(8);
      s.varint32(h.compat);
    }
    if (h.flags !== 0) {
      s.byte(16);
      s.varint32(h.flags);
    }
    if (plan[at + 6] !== 0 || plan[at + 7] !== 0) {
      s.byte(24);
      s.varint64(plan[at + 6]!, plan[at + 7]!);
    }
    if (plan[at + 8] !== 0 || plan[at + 9] !== 0) {
      s.byte(32);
      s.varint64(plan[at + 8]!, plan[at + 9]!);
    }
  }
  if (e.linkTarget && e.linkTarget.length > 0) {
    s.byte(90);
    s.bytes(e.linkTarget);
  }
  if (e.mtimeNsec !== 0) {
    s.byte(96);
    s.varint32(e.mtimeNsec);
  }
};

/** TransferBatch → protobuf bytes, identical to protobufjs' encoding of the same message. */
export const encodeTransferBatchWire = (m: TransferBatch): Uint8Array => {
  const entries = m.entries;
  const plan = new Array<number>(entries.length * W);
  const jobLen = Buffer.byteLength(m.jobId, "utf8");
  const batchLen = Buffer.byteLength(m.batchId, "utf8");
  const shardLen = Buffer.byteLength(m.shardId, "utf8");
  let total = 0;
  if (jobLen > 0) total += 1 + varint32Size(jobLen) + jobLen;
  if (batchLen > 0) total += 1 + varint32Size(batchLen) + batchLen;
  if (shardLen > 0) total += 1 + varint32Size(shardLen) + shardLen;
  if (m.sequence !== 0) total += 1 + varint32Size(m.sequence >>> 0);
  for (let i = 0; i < entries.length; i++) {
    const n = entrySize(entries[i]!, plan, i * W);
    total += 1 + varint32Size(n) + n;
  }
  const names = m.blobNames ?? [];
  const nameLens = names.map((s) => Buffer.byteLength(s, "utf8"));
  for (const l of nameLens) total += 1 + varint32Size(l) + l;
  const s = new Sink(total);
  if (jobLen > 0) {
    s.byte(10);
    s.string(m.jobId, jobLen);
  }
  if (batchLen > 0) {
    s.byte(18);
    s.string(m.batchId, batchLen);
  }
  if (shardLen > 0) {
    s.byte(26);
    s.string(m.shardId, shardLen);
  }
  if (m.sequence !== 0) {
    s.byte(32);
    s.varint32(m.sequence);
  }
  for (let i = 0; i < entries.length; i++) writeEntry(s, entries[i]!, plan, i * W);
  for (let i = 0; i < names.length; i++) {
    s.byte(50);
    s.string(names[i]!, nameLens[i]!);
  }
  if (s.pos !== total)
    throw new Error(`TransferBatch encode: wrote ${s.pos} bytes, planned ${total} (a bug)`);
  return s.buf;
};
