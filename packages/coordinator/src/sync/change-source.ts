import type { ChangeRecord } from "@hsmfleet/protocol";

/**
 * One change as a source read it: the record (the contract other services see) and the raw path
 * bytes the sync service acts on (file names are bytes, not text).
 */
export interface SourceChange {
  readonly record: ChangeRecord;
  /** The entry's path relative to the tree's root; for renames the new one. */
  readonly rel: Buffer;
  /** Renames: the former path. */
  readonly from?: Buffer | undefined;
  /** Whether the entry is (or was) a directory, when the source knows it. */
  readonly isDir: boolean;
  /**
   * Compare this directory with its blobs (a catch-up after a restart or a lost event queue):
   * the directory's entries and blobs at its level are made to match.
   */
  readonly reconcile?: boolean | undefined;
  /** A record that changes nothing here (outside the synced root, entry gone): only counted. */
  readonly ignore?: boolean | undefined;
  /** The entry left the synced tree (renamed out of it): its blob goes as for a removal. */
  readonly gone?: boolean | undefined;
}

/**
 * A source of ordered change records: the Lustre changelog (one per MDT) or kernel events on a
 * POSIX mount. `start` resumes after `checkpoint` (the last record applied, as the source counts
 * them); `release` tells the source that every record up to `index` is durably applied (Lustre:
 * `lfs changelog_clear`).
 */
export interface ChangeSource {
  /** `lustre:<mdt>` or `posix`. */
  readonly name: string;
  start(
    checkpoint: ChangeCheckpoint | undefined,
    emit: (changes: SourceChange[]) => void,
  ): Promise<void>;
  release(index: bigint): Promise<void>;
  /** Every directory the source knows (for a reconciliation scan); empty when it knows none. */
  directories(): Buffer[];
  stop(): Promise<void>;
}

/** Where a source resumes: its last applied record index and the time of the oldest unapplied change. */
export interface ChangeCheckpoint {
  index: bigint;
  /** Milliseconds since the epoch: changes from then on may not be applied yet. */
  watermarkMs: number;
}
