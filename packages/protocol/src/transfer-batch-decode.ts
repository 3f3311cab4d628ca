import type { FileEntry, HsmAttrs } from "@hsmfleet/core";
import type { EntryType } from "@hsmfleet/core";
import { Uint64RangeError } from "./long.js";
import type { TransferBatch } from "./messages.js";

/**
 * TransferBatch decoded by hand (the encoder, its reasons and its byte-for-byte contract with
 * protobufjs: transfer-batch-encode.ts): no Long per 64-bit field, no wire object per entry.
 * Every length and varint is checked against the buffer (a message is untrusted input), unknown
 * fields are skipped, and a 64-bit size or time a JavaScript number cannot hold is refused.
 */

const TWO_32 = 4294967296;

class Source {
  readonly buf: Buffer;
  pos: number;
  end: number;
  /** The 64-bit halves of the last varint64(). */
  lo = 0;
  hi = 0;
  constructor(data: Uint8Array) {
    this.buf = Buffer.isBuffer(data)
      ? data
      : Buffer.from(data.buffer, data.byteOffset, data.byteLength);
    this.pos = 0;
    this.end = data.byteLength;
  }
  #outOfRange(what: string): never {
    throw new RangeError(
      `TransferBatch decode: ${what} runs past the end of the message (offset ${this.pos} of ${this.end})`,
    );
  }
  /** A varint's low 32 bits (as protobufjs' uint32: longer varints are read and truncated). */
  varint32(): number {
    const buf = this.buf;
    let v = 0;
    for (let shift = 0; shift < 70; shift += 7) {
      if (this.pos >= this.end) this.#outOfRange("a varint");
      const b = buf[this.pos++]!;
      if (shift < 32) v |= (b & 127) << shift;
      if (b < 128) return v >>> 0;
    }
    throw new RangeError(`TransferBatch decode: a varint longer than 10 bytes at ${this.pos}`);
  }
  /** A varint into (lo, hi). */
  varint64(): void {
    const buf = this.buf;
    let lo = 0;
    let hi = 0;
    for (let shift = 0; shift < 70; shift += 7) {
      if (this.pos >= this.end) this.#outOfRange("a varint");
      const b = buf[this.pos++]!;
      const bits = b & 127;
      if (shift < 28) lo |= bits << shift;
      else if (shift === 28) {
        lo |= bits << 28;
        hi |= bits >>> 4;
      } else hi |= bits << (shift - 32);
      if (b < 128) {
        this.lo = lo >>> 0;
        this.hi = hi >>> 0;
        return;
      }
    }
    throw new RangeError(`TransferBatch decode: a varint longer than 10 bytes at ${this.pos}`);
  }
  /** A length-delimited field's [start, end). */
  span(): number {
    const len = this.varint32();
    if (len > this.end - this.pos) this.#outOfRange("a length-delimited field");
    return len;
  }
  bytes(): Buffer {
    const len = this.span();
    const start = this.pos;
    this.pos += len;
    return this.buf.subarray(start, this.pos);
  }
  string(): string {
    const len = this.span();
    const start = this.pos;
    this.pos += len;
    return this.buf.toString("utf8", start, this.pos);
  }
  skip(wireType: number, tag: number): void {
    switch (wireType) {
      case 0:
        this.varint64();
        return;
      case 1:
        if (this.end - this.pos < 8) this.#outOfRange("a fixed64 field");
        this.pos += 8;
        return;
      case 2: {
        const len = this.span(); // read first: `this.pos += this.span()` adds to the old pos
        this.pos += len;
        return;
      }
      case 5:
        if (this.end - this.pos < 4) this.#outOfRange("a fixed32 field");
        this.pos += 4;
        return;
      default:
        throw new Error(
          `TransferBatch decode: wire type ${wireType} of field ${tag} is not supported`,
        );
    }
  }
}

const unsignedNumber = (lo: number, hi: number, field: string): number => {
  if (hi > 0x1fffff)
    throw new Uint64RangeError(field, ((BigInt(hi) << 32n) | BigInt(lo)).toString());
  return hi * TWO_32 + lo;
};

const signedNumber = (lo: number, hi: number, field: string): number => {
  if (hi & 0x80000000) {
    const v = BigInt.asIntN(64, (BigInt(hi) << 32n) | BigInt(lo));
    if (v < BigInt(Number.MIN_SAFE_INTEGER)) throw new Uint64RangeError(field, v.toString());
    return Number(v);
  }
  return unsignedNumber(lo, hi, field);
};

const toBig = (lo: number, hi: number): bigint =>
  hi === 0 ? BigInt(lo) : (BigInt(hi) << 32n) | BigInt(lo);

const decodeHsm = (r: Source, into: HsmAttrs | undefined): HsmAttrs => {
  const len = r.span();
  const outer = r.end;
  r.end = r.pos + len;
  const h: HsmAttrs = into ?? { compat: 0, flags: 0, archiveId: 0n, archiveVersion: 0n };
  while (r.pos < r.end) {
    const tag = r.varint32();
    const wt = tag & 7;
    const id = tag >>> 3;
    if (wt === 0 && id === 1) h.compat = r.varint32();
    else if (wt === 0 && id === 2) h.flags = r.varint32();
    else if (wt === 0 && id === 3) {
      r.varint64();
      h.archiveId = toBig(r.lo, r.hi);
    } else if (wt === 0 && id === 4) {
      r.varint64();
      h.archiveVersion = toBig(r.lo, r.hi);
    } else r.skip(wt, id);
  }
  r.end = outer;
  return h;
};

const EMPTY = Buffer.alloc(0);

const decodeEntry = (r: Source): FileEntry => {
  const len = r.span();
  const outer = r.end;
  r.end = r.pos + len;
  const e: FileEntry = {
    path: EMPTY,
    type: 0 as EntryType,
    size: 0,
    mtimeSec: 0,
    mtimeNsec: 0,
    mode: 0,
    uid: 0,
    gid: 0,
    ino: 0n,
    nlink: 0,
  };
  let hsm: HsmAttrs | undefined;
  let linkTarget: Buffer | undefined;
  while (r.pos < r.end) {
    const tag = r.varint32();
    const wt = tag & 7;
    switch (tag >>> 3) {
      case 1:
        if (wt !== 2) break;
        e.path = r.bytes();
        continue;
      case 2:
        if (wt !== 0) break;
        e.type = (r.varint32() | 0) as EntryType;
        continue;
      case 3:
        if (wt !== 0) break;
        r.varint64();
        e.size = unsignedNumber(r.lo, r.hi, "FileEntry.size");
        continue;
      case 4:
        if (wt !== 0) break;
        r.varint64();
        e.mtimeSec = signedNumber(r.lo, r.hi, "FileEntry.mtimeSec");
        continue;
      case 5:
        if (wt !== 0) break;
        e.mode = r.varint32();
        continue;
      case 6:
        if (wt !== 0) break;
        e.uid = r.varint32();
        continue;
      case 7:
        if (wt !== 0) break;
        e.gid = r.varint32();
        continue;
      case 8:
        if (wt !== 0) break;
        r.varint64();
        e.ino = toBig(r.lo, r.hi);
        continue;
      case 9:
        if (wt !== 0) break;
        e.nlink = r.varint32();
        continue;
      case 10:
        if (wt !== 2) break;
        hsm = decodeHsm(r, hsm);
        continue;
      case 11:
        if (wt !== 2) break;
        linkTarget = r.bytes();
        continue;
      case 12:
        if (wt !== 0) break;
        e.mtimeNsec = r.varint32();
        continue;
    }
    r.skip(wt, tag >>> 3);
  }
  r.end = outer;
  if (hsm !== undefined) e.hsm = hsm;
  if (linkTarget !== undefined && linkTarget.length > 0) e.linkTarget = linkTarget;
  return e;
};

/** Protobuf bytes → TransferBatch (any field order, unknown fields skipped, lengths checked). */
export const decodeTransferBatchWire = (data: Uint8Array): TransferBatch => {
  const r = new Source(data);
  let jobId = "";
  let batchId = "";
  let shardId = "";
  let sequence = 0;
  const entries: FileEntry[] = [];
  const blobNames: string[] = [];
  while (r.pos < r.end) {
    const tag = r.varint32();
    const wt = tag & 7;
    switch (tag >>> 3) {
      case 1:
        if (wt !== 2) break;
        jobId = r.string();
        continue;
      case 2:
        if (wt !== 2) break;
        batchId = r.string();
        continue;
      case 3:
        if (wt !== 2) break;
        shardId = r.string();
        continue;
      case 4:
        if (wt !== 0) break;
        sequence = r.varint32();
        continue;
      case 5:
        if (wt !== 2) break;
        entries.push(decodeEntry(r));
        continue;
      case 6:
        if (wt !== 2) break;
        blobNames.push(r.string());
        continue;
    }
    r.skip(wt, tag >>> 3);
  }
  return {
    jobId,
    batchId,
    shardId,
    sequence,
    entries,
    ...(blobNames.length > 0 ? { blobNames } : {}),
  };
};
