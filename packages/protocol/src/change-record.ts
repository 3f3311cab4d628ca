/**
 * Change records: what a change source (the Lustre changelog, or kernel events on a POSIX
 * mount) says happened to one entry of a tree. `hsmfleet sync` reads them, coalesces them per
 * target and applies them; after applying a batch it publishes the records it applied on
 * `hsmfleet.changes.<syncName>` (stream HSMFLEET_CHANGES, limits retention) so that other
 * services (the policy engine's `remove`, which deletes the archive copies of deleted files)
 * can follow the same stream without reading the changelog a second time.
 *
 * The wire form is JSON (encodeChangeRecord / decodeChangeRecord); a decoder treats every
 * message as untrusted input and rejects anything that does not have this shape.
 */

/** The Lustre changelog record types hsmfleet reads (`lfs changelog` spells them so). */
export type ChangeType =
  | "CREAT"
  | "MKDIR"
  | "RMDIR"
  | "UNLNK"
  | "RENME"
  | "RNMTO"
  | "SLINK"
  | "HLINK"
  | "SATTR"
  | "MTIME"
  | "CTIME"
  | "ATIME"
  | "CLOSE"
  | "TRUNC"
  | "HSM"
  | "XATTR"
  | "MKNOD"
  | "LYOUT"
  | "OPEN";

export const CHANGE_TYPES: readonly ChangeType[] = [
  "CREAT",
  "MKDIR",
  "RMDIR",
  "UNLNK",
  "RENME",
  "RNMTO",
  "SLINK",
  "HLINK",
  "SATTR",
  "MTIME",
  "CTIME",
  "ATIME",
  "CLOSE",
  "TRUNC",
  "HSM",
  "XATTR",
  "MKNOD",
  "LYOUT",
  "OPEN",
];

export interface ChangeRecord {
  /** Which source produced it: `lustre:<mdt>` (e.g. `lustre:lustre-MDT0000`) or `posix`. */
  readonly source: string;
  /** The record's index in its source, as a decimal string (Lustre indexes are 64-bit). */
  readonly index: string;
  readonly type: ChangeType;
  /** When it happened, milliseconds since the epoch. */
  readonly time: number;
  /** The record's flags as the source printed them (Lustre: the hex `0x…` after the type). */
  readonly flags: number;
  /** The entry changed: a Lustre FID `[0x…:0x…:0x…]` or `ino:<n>` on POSIX. */
  readonly target: string;
  /** Its parent directory (FID or `ino:<n>`); empty when the record has none. */
  readonly parent: string;
  /** Its name in the parent; empty when the record has none. */
  readonly name: string;
  /** Renames: the entry's former parent and name (`s=` / `sp=` in `lfs changelog`). */
  readonly sourceParent?: string;
  readonly sourceName?: string;
  /** UNLNK: the file had an HSM copy (Lustre flag CLF_UNLINK_HSM_EXISTS). */
  readonly hsmExists?: boolean;
  /** UNLNK: this was the last link (CLF_UNLINK_LAST). */
  readonly lastLink?: boolean;
  /**
   * The entry's path relative to the tree's root when the source knew it (resolved from the
   * parent when the record was read); for UNLNK/RMDIR the path it had before it went away.
   */
  readonly path?: string;
}

/** The stream that carries applied change records, and its subjects. */
export const CHANGES_STREAM = "HSMFLEET_CHANGES";
export const changesSubject = (syncName: string): string => `hsmfleet.changes.${syncName}`;
export const CHANGES_ALL = "hsmfleet.changes.>";

export const encodeChangeRecord = (record: ChangeRecord): Uint8Array =>
  new TextEncoder().encode(JSON.stringify(record));

const isString = (v: unknown): v is string => typeof v === "string";
const optional = (v: unknown, check: (v: unknown) => boolean): boolean =>
  v === undefined || check(v);

/** Decode one record, or throw an Error naming what is wrong with it. */
export const decodeChangeRecord = (data: Uint8Array): ChangeRecord => {
  let value: unknown;
  try {
    value = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(data));
  } catch (err) {
    throw new Error(`change record: not JSON: ${(err as Error).message}`);
  }
  if (typeof value !== "object" || value === null) throw new Error("change record: not an object");
  const r = value as Record<string, unknown>;
  const bad = (field: string): never => {
    throw new Error(`change record: field ${field} is missing or has the wrong type`);
  };
  if (!isString(r.source)) bad("source");
  if (!isString(r.index) || !/^\d{1,20}$/.test(r.index)) bad("index");
  if (!isString(r.type) || !(CHANGE_TYPES as readonly string[]).includes(r.type)) bad("type");
  if (typeof r.time !== "number" || !Number.isFinite(r.time)) bad("time");
  if (typeof r.flags !== "number" || !Number.isInteger(r.flags)) bad("flags");
  if (!isString(r.target)) bad("target");
  if (!isString(r.parent)) bad("parent");
  if (!isString(r.name)) bad("name");
  if (!optional(r.sourceParent, isString)) bad("sourceParent");
  if (!optional(r.sourceName, isString)) bad("sourceName");
  if (!optional(r.hsmExists, (v) => typeof v === "boolean")) bad("hsmExists");
  if (!optional(r.lastLink, (v) => typeof v === "boolean")) bad("lastLink");
  if (!optional(r.path, isString)) bad("path");
  return r as unknown as ChangeRecord;
};
