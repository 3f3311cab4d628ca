/**
 * The children a walk declaration (a shard's result or spawn notice) names, parked on the WORK
 * stream (`subjects.park`, no consumer) before the declaration is published and deleted once
 * every child is: a worker killed in between leaves them there, and the shard's redelivery
 * publishes exactly them (worker declarations.ts). One declaration's children may take several
 * messages ("parts", each within the server's max payload).
 *
 * Wire form (big-endian): "HFPK", u32 part, u32 parts, u32 count, then per child: u8 kind,
 * u16 id length, id (UTF-8), u32 data length, data (the encoded work item, as published).
 */

/** The work subject a parked child goes to. */
export type ParkedChildKind = "walk" | "xfer" | "chunk" | "restore";

export interface ParkedChild {
  kind: ParkedChildKind;
  /** Its message id (the work item's id). */
  id: string;
  data: Uint8Array;
}

export interface ParkedChildren {
  /** Index of this message among the declaration's parts, from 0. */
  part: number;
  parts: number;
  children: ParkedChild[];
}

const MAGIC = 0x4846504b; // "HFPK"
const KINDS: readonly ParkedChildKind[] = ["walk", "xfer", "chunk", "restore"];
/** Longest child id accepted (the ledger's bound on ids). */
export const PARKED_ID_MAX_BYTES = 512;
/** Parts one declaration may take (a window is at most 4 MiB of children). */
export const PARKED_PARTS_MAX = 4096;
const HEADER_BYTES = 16;

/** Bytes a child adds to a part. */
export const parkedChildBytes = (c: { id: string; data: Uint8Array }): number =>
  1 + 2 + Buffer.byteLength(c.id) + 4 + c.data.length;

/** The empty message that stands in for a part no worker wrote (see declarations.ts). */
export const PARKED_PLACEHOLDER = new Uint8Array(0);

export const encodeParkedChildren = (m: ParkedChildren): Uint8Array => {
  let size = HEADER_BYTES;
  for (const c of m.children) size += parkedChildBytes(c);
  const out = Buffer.allocUnsafe(size);
  out.writeUInt32BE(MAGIC, 0);
  out.writeUInt32BE(m.part, 4);
  out.writeUInt32BE(m.parts, 8);
  out.writeUInt32BE(m.children.length, 12);
  let off = HEADER_BYTES;
  for (const c of m.children) {
    out.writeUInt8(KINDS.indexOf(c.kind), off);
    const id = Buffer.from(c.id);
    out.writeUInt16BE(id.length, off + 1);
    id.copy(out, off + 3);
    off += 3 + id.length;
    out.writeUInt32BE(c.data.length, off);
    out.set(c.data, off + 4);
    off += 4 + c.data.length;
  }
  return out;
};

/** Decodes and checks one part; throws a RangeError naming what is wrong. */
export const decodeParkedChildren = (data: Uint8Array): ParkedChildren => {
  const b = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
  if (b.length < HEADER_BYTES || b.readUInt32BE(0) !== MAGIC)
    throw new RangeError("parked children: not a parked-children message");
  const part = b.readUInt32BE(4);
  const parts = b.readUInt32BE(8);
  const count = b.readUInt32BE(12);
  if (parts === 0 || parts > PARKED_PARTS_MAX || part >= parts)
    throw new RangeError(`parked children: part ${part} of ${parts}`);
  const children: ParkedChild[] = [];
  let off = HEADER_BYTES;
  for (let i = 0; i < count; i++) {
    if (off + 3 > b.length) throw new RangeError(`parked children: child ${i} cut short`);
    const kind = KINDS[b.readUInt8(off)];
    if (kind === undefined) throw new RangeError(`parked children: child ${i} of unknown kind`);
    const idLength = b.readUInt16BE(off + 1);
    if (idLength === 0 || idLength > PARKED_ID_MAX_BYTES || off + 3 + idLength + 4 > b.length)
      throw new RangeError(`parked children: child ${i} has a bad id`);
    const id = b.toString("utf8", off + 3, off + 3 + idLength);
    off += 3 + idLength;
    const length = b.readUInt32BE(off);
    if (off + 4 + length > b.length) throw new RangeError(`parked children: child ${i} cut short`);
    children.push({ kind, id, data: new Uint8Array(b.subarray(off + 4, off + 4 + length)) });
    off += 4 + length;
  }
  if (off !== b.length) throw new RangeError("parked children: trailing bytes");
  return { part, parts, children };
};
