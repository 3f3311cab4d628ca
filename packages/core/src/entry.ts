/** Kind of a namespace entry as lstat(2) reports it. Values match proto `EntryType`. */
export const EntryType = {
  File: 1,
  Directory: 2,
  Symlink: 3,
  Other: 4,
} as const;
export type EntryType = (typeof EntryType)[keyof typeof EntryType];

export const entryTypeName = (type: EntryType): "file" | "directory" | "symlink" | "other" => {
  switch (type) {
    case EntryType.File:
      return "file";
    case EntryType.Directory:
      return "directory";
    case EntryType.Symlink:
      return "symlink";
    case EntryType.Other:
      return "other";
  }
};

/**
 * What an entry of type Other is, from its st_mode, for messages: Blob storage holds files,
 * directories and symlinks only.
 */
export const otherEntryKind = (mode: number): string => {
  switch (mode & 0o170000) {
    case 0o010000:
      return "FIFO";
    case 0o020000:
      return "character device";
    case 0o060000:
      return "block device";
    case 0o140000:
      return "socket";
    default:
      return "special file";
  }
};

/** Lustre HSM attributes (struct hsm_attrs) as read from the `trusted.hsm` xattr. */
export interface HsmAttrs {
  compat: number;
  flags: number;
  archiveId: bigint;
  archiveVersion: bigint;
}

/**
 * One namespace entry. `path` is raw bytes relative to the job root, '/'-separated, without a
 * leading '/'; POSIX names need not be valid UTF-8, so they are never decoded on the way through.
 */
export interface FileEntry {
  path: Buffer;
  type: EntryType;
  /** Bytes; exact (sizes are checked against Number.MAX_SAFE_INTEGER at decode time). */
  size: number;
  mtimeSec: number;
  mtimeNsec: number;
  mode: number;
  uid: number;
  gid: number;
  ino: bigint;
  nlink: number;
  hsm?: HsmAttrs | undefined;
  linkTarget?: Buffer | undefined;
}
