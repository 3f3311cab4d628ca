/**
 * POSIX attributes ⇄ blob metadata in the form Azure Managed Lustre (AMLFS) reads and writes on a
 * flat-namespace container. See docs/blob-format.md.
 *
 * Written (exactly these keys, lower case):
 *   owner        decimal uid                      "1000"
 *   group        decimal gid                      "1000"
 *   permissions  %04o of mode & 0o1777            "0644", "1777" (setuid/setgid dropped, as AMLFS does)
 *   modtime      YYYY-MM-DD HH:MM:SS +0000 (UTC)  "2024-05-30 18:36:00 +0000"
 *   hdi_isfolder "true" on directory stubs
 *   ftype        "LNK" on symlinks (the blob body is the link target)
 *
 * Read leniently: keys are case-insensitive and the forms older copytools (lemur), azcopy and
 * AMLFS itself wrote are all understood.
 */
import { EntryType, entryTypeName } from "./entry.js";
import { HsmfleetError } from "./errors.js";

export interface PosixAttributes {
  /** Permission bits including sticky (mode & 0o1777); no file type, no setuid/setgid. */
  mode: number;
  uid: number;
  gid: number;
  /** Seconds since the epoch; undefined when the metadata has no usable modtime. */
  mtimeSec: number | undefined;
  /** Human-readable notes about values that could not be used as written. */
  warnings: string[];
}

export type BlobEntryKind = "file" | "directory" | "symlink";

const PERMISSION_MASK = 0o1777;
const DEFAULT_FILE_MODE = 0o644;
/**
 * A directory whose metadata gives no (usable) permissions — and an implicit one, a prefix with no
 * directory blob — is 0755: never world-writable unless the metadata says so (a world-writable
 * directory lets any local user swap it during an import; issue 14). AMLFS's copytool uses 0777.
 */
const DEFAULT_DIRECTORY_MODE = 0o755;
const DEFAULT_SYMLINK_MODE = 0o777;
const MAX_ID = 0xffffffff;
/** Owner/group names that mean id 0 (HDFS and BSD conventions used by older copytools). */
const ROOT_NAMES = new Set(["root", "wheel", "superuser", "supergroup"]);

const pad = (n: number, width = 2): string => String(n).padStart(width, "0");

/** `YYYY-MM-DD HH:MM:SS +0000` in UTC, the form AMLFS writes. Fractions of a second are dropped. */
export const formatModtime = (epochSec: number): string => {
  if (!Number.isFinite(epochSec)) throw new RangeError(`modtime ${epochSec} is not a number`);
  const d = new Date(Math.floor(epochSec) * 1000);
  if (Number.isNaN(d.getTime())) throw new RangeError(`modtime ${epochSec} is out of range`);
  return (
    `${pad(d.getUTCFullYear(), 4)}-${pad(d.getUTCMonth() + 1)}-${pad(d.getUTCDate())} ` +
    `${pad(d.getUTCHours())}:${pad(d.getUTCMinutes())}:${pad(d.getUTCSeconds())} +0000`
  );
};

/**
 * `YYYY-MM-DD[ T]HH:MM:SS[.fraction][ ]<offset>` with offset Z, ±HHMM, ±HH:MM or ±HH, an
 * optional trailing zone abbreviation (Go's time.String: "… +0000 UTC"); no offset means UTC.
 */
const DATE_TIME =
  /^(\d{4})-(\d{2})-(\d{2})[ T](\d{2}):(\d{2}):(\d{2})(?:[.,](\d+))?\s*(Z|[+-]\d{2}(?::?\d{2})?)?(?:\s+[A-Za-z]{1,5})?$/;
/** RFC 1123 / HTTP date: "Tue, 14 Nov 2023 22:13:20 GMT". */
const HTTP_DATE = /^[A-Za-z]{3}, \d{2} [A-Za-z]{3} \d{4} \d{2}:\d{2}:\d{2} GMT$/;

/**
 * Seconds since the epoch (integer, fraction dropped) of a modtime as AMLFS, lemur, azcopy,
 * rclone or an HTTP header wrote it; undefined when the text is not a time. Plain integers are
 * epoch seconds, or milli/micro/nanoseconds when they are too large to be seconds (azcopy writes
 * `modtime` as Unix nanoseconds).
 */
export const parseModtime = (text: string): number | undefined => {
  const s = text.trim();
  if (/^\d{1,20}$/.test(s)) {
    const v = BigInt(s);
    const seconds =
      v >= 10n ** 17n
        ? v / 10n ** 9n
        : v >= 10n ** 14n
          ? v / 10n ** 6n
          : v >= 10n ** 11n
            ? v / 10n ** 3n
            : v;
    return Number(seconds);
  }
  const m = DATE_TIME.exec(s);
  if (m) {
    const [year, month, day, hour, minute, second] = m.slice(1, 7).map(Number) as [
      number,
      number,
      number,
      number,
      number,
      number,
    ];
    if (month < 1 || month > 12 || day < 1 || day > 31) return undefined;
    if (hour > 23 || minute > 59 || second > 60) return undefined;
    const ms = Date.UTC(year, month - 1, day, hour, minute, Math.min(second, 59));
    const check = new Date(ms);
    if (check.getUTCDate() !== day || check.getUTCMonth() !== month - 1) return undefined;
    let offsetMin = 0;
    const zone = m[8];
    if (zone !== undefined && zone !== "Z") {
      const sign = zone.startsWith("-") ? -1 : 1;
      const digits = zone.slice(1).replace(":", "");
      const hh = Number(digits.slice(0, 2));
      const mm = digits.length > 2 ? Number(digits.slice(2, 4)) : 0;
      if (hh > 23 || mm > 59) return undefined;
      offsetMin = sign * (hh * 60 + mm);
    }
    return Math.floor(ms / 1000) - offsetMin * 60;
  }
  if (HTTP_DATE.test(s)) {
    const ms = Date.parse(s);
    return Number.isNaN(ms) ? undefined : Math.floor(ms / 1000);
  }
  return undefined;
};

/** AMLFS metadata for one entry (directory stubs and symlinks get their type marker). */
export const metadataForEntry = (entry: {
  type: EntryType;
  mode: number;
  uid: number;
  gid: number;
  mtimeSec: number;
}): Record<string, string> => {
  if (entry.type === EntryType.Other) {
    throw new HsmfleetError(
      `a ${entryTypeName(entry.type)} entry (fifo, socket or device) has no blob form`,
    );
  }
  const metadata: Record<string, string> = {
    owner: String(entry.uid),
    group: String(entry.gid),
    permissions: (entry.mode & PERMISSION_MASK).toString(8).padStart(4, "0"),
    modtime: formatModtime(entry.mtimeSec),
  };
  if (entry.type === EntryType.Directory) metadata.hdi_isfolder = "true";
  if (entry.type === EntryType.Symlink) metadata.ftype = "LNK";
  return metadata;
};

/** Lower-cased view of the metadata; an exactly lower-case key wins over other spellings. */
const lowerKeys = (metadata: Record<string, string | undefined>): Map<string, string> => {
  const out = new Map<string, string>();
  for (const [key, value] of Object.entries(metadata)) {
    if (value === undefined) continue;
    const lower = key.toLowerCase();
    if (!out.has(lower) || key === lower) out.set(lower, value);
  }
  return out;
};

const pick = (meta: Map<string, string>, keys: readonly string[]): [string, string] | undefined => {
  for (const key of keys) {
    const value = meta.get(key);
    if (value !== undefined) return [key, value];
  }
  return undefined;
};

/** True when the blob is a directory stub: hdi_isfolder = "true" (key and value any case). */
export const isFolderStub = (metadata: Record<string, string | undefined>): boolean =>
  lowerKeys(metadata).get("hdi_isfolder")?.trim().toLowerCase() === "true";

/** True when the blob holds a symlink: ftype = "LNK" (any case) or is_symlink = "true" (azcopy). */
export const isSymlinkBlob = (metadata: Record<string, string | undefined>): boolean => {
  const meta = lowerKeys(metadata);
  return (
    meta.get("ftype")?.trim().toUpperCase() === "LNK" ||
    meta.get("is_symlink")?.trim().toLowerCase() === "true"
  );
};

const S_IFMT = 0o170000;
const FILE_TYPES = new Set([0o010000, 0o020000, 0o040000, 0o060000, 0o100000, 0o120000, 0o140000]);

/**
 * Permission bits of a numeric permissions value. Octal ("0644", "644", "1777", "100644") unless it
 * is a decimal st_mode with a file type as azcopy writes by default ("33188" = 0o100644).
 */
const numericPermissions = (text: string): number | undefined => {
  const isOctal = /^[0-7]+$/.test(text);
  if (!text.startsWith("0") && text.length >= 5) {
    const dec = Number(text);
    if (dec <= 0o177777 && FILE_TYPES.has(dec & S_IFMT)) return dec & PERMISSION_MASK;
  }
  if (!isOctal || text.length > 7) return undefined;
  return parseInt(text, 8) & PERMISSION_MASK;
};

const TYPE_CHARS = "-dlbcpsD";

/** "rwxr-xr-x", "drwxrwxrwt", "rw-r--r--T", "rwsr-sr-x": permission bits or undefined. */
const symbolicPermissions = (text: string): number | undefined => {
  let perms: string;
  let trailingSticky = false;
  if (text.length === 9) perms = text;
  else if (text.length === 10 && TYPE_CHARS.includes(text[0]!) && /^[r-]/.test(text.slice(1))) {
    perms = text.slice(1);
  } else if (text.length === 10 && (text[9] === "t" || text[9] === "T")) {
    perms = text.slice(0, 9);
    trailingSticky = true;
  } else return undefined;
  let mode = 0;
  for (let triple = 0; triple < 3; triple++) {
    const [r, w, x] = perms.slice(triple * 3, triple * 3 + 3);
    const shift = (2 - triple) * 3;
    if (r === "r") mode |= 4 << shift;
    else if (r !== "-") return undefined;
    if (w === "w") mode |= 2 << shift;
    else if (w !== "-") return undefined;
    // In the x position: s/S (setuid/setgid, dropped) for user and group, t/T (sticky) for others.
    const special = triple === 2 ? "t" : "s";
    if (x === "x" || x === special) mode |= 1 << shift;
    else if (x !== "-" && x !== special.toUpperCase()) return undefined;
    if (triple === 2 && (x === "t" || x === "T")) mode |= 0o1000;
  }
  if (trailingSticky) mode |= 0o1000;
  return mode;
};

const parsePermissions = (text: string): number | undefined => {
  const s = text.trim();
  if (/^\d+$/.test(s)) return numericPermissions(s);
  return symbolicPermissions(s);
};

const parseId = (
  text: string,
  what: "owner" | "group",
  key: string,
  warnings: string[],
): number => {
  const s = text.trim();
  if (/^\d+$/.test(s)) {
    const id = Number(s);
    if (id <= MAX_ID) return id;
    warnings.push(`${key} "${s}" is not a valid ${what} id; using 0`);
    return 0;
  }
  if (ROOT_NAMES.has(s.toLowerCase())) return 0;
  warnings.push(`${key} "${s}" is not a numeric ${what} id; using 0`);
  return 0;
};

const OWNER_KEYS = ["owner", "posix_owner", "uid"] as const;
const GROUP_KEYS = ["group", "posix_group", "gid"] as const;
const PERMISSION_KEYS = ["permissions", "perm", "perms"] as const;
const MODTIME_KEYS = ["modtime", "mtime"] as const;

/**
 * POSIX attributes of a blob from its metadata. Keys are case-insensitive; accepted keys:
 * owner/posix_owner/uid, group/posix_group/gid, permissions/perm/perms, modtime/mtime.
 * Owner and group: decimal ids; root, wheel, superuser, supergroup mean 0; other names become 0
 * with a warning. Permissions: octal ("0644"), azcopy's decimal st_mode ("33188") or symbolic
 * ("rwxr-xr-x", "drwxrwxrwt", "rw-r--r--t"). Missing values default to 0/0 and 0644 for files,
 * 0755 for directories (never world-writable unless the metadata says so), 0777 for symlinks; a missing or unparseable modtime is undefined (use the
 * blob's Last-Modified).
 */
export const attributesFromMetadata = (
  metadata: Record<string, string | undefined>,
  kind: BlobEntryKind,
): PosixAttributes => {
  const meta = lowerKeys(metadata);
  const warnings: string[] = [];
  const owner = pick(meta, OWNER_KEYS);
  const group = pick(meta, GROUP_KEYS);
  const uid = owner ? parseId(owner[1], "owner", owner[0], warnings) : 0;
  const gid = group ? parseId(group[1], "group", group[0], warnings) : 0;
  const defaultMode =
    kind === "directory"
      ? DEFAULT_DIRECTORY_MODE
      : kind === "symlink"
        ? DEFAULT_SYMLINK_MODE
        : DEFAULT_FILE_MODE;
  let mode = defaultMode;
  const perms = pick(meta, PERMISSION_KEYS);
  if (perms) {
    const parsed = parsePermissions(perms[1]);
    if (parsed === undefined) {
      warnings.push(
        `${perms[0]} "${perms[1]}" is not a permission value; using ${defaultMode.toString(8).padStart(4, "0")}`,
      );
    } else mode = parsed;
  }
  let mtimeSec: number | undefined;
  const modtime = pick(meta, MODTIME_KEYS);
  if (modtime) {
    mtimeSec = parseModtime(modtime[1]);
    if (mtimeSec === undefined) {
      warnings.push(`${modtime[0]} "${modtime[1]}" is not a time; using the blob's Last-Modified`);
    }
  }
  return { mode, uid, gid, mtimeSec, warnings };
};
