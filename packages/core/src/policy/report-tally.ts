/**
 * `hsmfleet report` (rbh-report / rbh-du): counts and bytes of regular files by HSM state, owner,
 * group, file class and size profile, the oldest files and the directories holding the most bytes.
 * Each walk shard builds one ReportTally; the coordinator adds them up (maps are bounded by the
 * number of owners, groups and classes, the lists by `top`, never by the number of files).
 */
import { TopK } from "./top-k.js";

export interface Tally {
  count: number;
  bytes: number;
}

export interface OldFile {
  path: string;
  mtimeMs: number;
  size: number;
}

export interface DirUsage {
  path: string;
  /** Regular files directly in the directory, and their bytes (not recursive). */
  count: number;
  bytes: number;
}

export interface ReportTally {
  files: Tally;
  byState: Record<string, Tally>;
  byUid: Record<string, Tally>;
  byGid: Record<string, Tally>;
  /** Files whose data is on disk (not released), by owner and group: what user/group usage counts. */
  residentByUid: Record<string, Tally>;
  residentByGid: Record<string, Tally>;
  byClass: Record<string, Tally>;
  /** Robinhood's size profile, one tally per SIZE_PROFILE bucket. */
  sizeProfile: Tally[];
  oldest: OldFile[];
  topDirs: DirUsage[];
}

/** Robinhood's size profile buckets (rbh-report --size-profile): lower bounds in bytes. */
export const SIZE_PROFILE: readonly { label: string; min: number }[] = [
  { label: "0", min: 0 },
  { label: "1~31", min: 1 },
  { label: "32~1K-", min: 32 },
  { label: "1K~31K", min: 1024 },
  { label: "32K~1M-", min: 32 * 1024 },
  { label: "1M~31M", min: 1024 ** 2 },
  { label: "32M~1G-", min: 32 * 1024 ** 2 },
  { label: "1G~31G", min: 1024 ** 3 },
  { label: "32G~1T-", min: 32 * 1024 ** 3 },
  { label: "+1T", min: 1024 ** 4 },
];

export const sizeProfileBucket = (size: number): number => {
  let b = 0;
  while (b + 1 < SIZE_PROFILE.length && size >= SIZE_PROFILE[b + 1]!.min) b++;
  return b;
};

/** Keys of the owner/group maps kept; the rest add up under "other". */
export const REPORT_MAX_KEYS = 10_000;

export const emptyReportTally = (): ReportTally => ({
  files: { count: 0, bytes: 0 },
  byState: {},
  byUid: {},
  byGid: {},
  residentByUid: {},
  residentByGid: {},
  byClass: {},
  sizeProfile: SIZE_PROFILE.map(() => ({ count: 0, bytes: 0 })),
  oldest: [],
  topDirs: [],
});

const add = (map: Record<string, Tally>, key: string, count: number, bytes: number): void => {
  const k = key in map || Object.keys(map).length < REPORT_MAX_KEYS ? key : "other";
  const t = (map[k] ??= { count: 0, bytes: 0 });
  t.count += count;
  t.bytes += bytes;
};

export const oldestBefore = (a: OldFile, b: OldFile): boolean =>
  a.mtimeMs < b.mtimeMs || (a.mtimeMs === b.mtimeMs && a.path < b.path);
export const biggerDir = (a: DirUsage, b: DirUsage): boolean =>
  a.bytes > b.bytes || (a.bytes === b.bytes && a.path < b.path);

/** Builds one tally (a shard's, or the merged one) with bounded lists. */
export class ReportBuilder {
  readonly tally = emptyReportTally();
  readonly #oldest: TopK<OldFile>;
  readonly #dirs: TopK<DirUsage>;

  constructor(top: number) {
    this.#oldest = new TopK(top, oldestBefore);
    this.#dirs = new TopK(top, biggerDir);
  }

  file(
    f: { path: string; size: number; uid: number; gid: number; mtimeMs: number },
    state: string,
    classes: readonly string[],
  ): void {
    const t = this.tally;
    t.files.count++;
    t.files.bytes += f.size;
    add(t.byState, state, 1, f.size);
    add(t.byUid, String(f.uid), 1, f.size);
    add(t.byGid, String(f.gid), 1, f.size);
    if (state !== "released") {
      add(t.residentByUid, String(f.uid), 1, f.size);
      add(t.residentByGid, String(f.gid), 1, f.size);
    }
    if (classes.length === 0) add(t.byClass, "(none)", 1, f.size);
    for (const c of classes) add(t.byClass, c, 1, f.size);
    const b = t.sizeProfile[sizeProfileBucket(f.size)]!;
    b.count++;
    b.bytes += f.size;
    this.#oldest.offer({ path: f.path, mtimeMs: f.mtimeMs, size: f.size });
  }

  directory(d: DirUsage): void {
    if (d.count > 0) this.#dirs.offer(d);
  }

  /** Adds another tally (a shard's) into this one. */
  merge(o: ReportTally): void {
    const t = this.tally;
    t.files.count += o.files.count;
    t.files.bytes += o.files.bytes;
    for (const [field, map] of [
      ["byState", o.byState],
      ["byUid", o.byUid],
      ["byGid", o.byGid],
      ["residentByUid", o.residentByUid],
      ["residentByGid", o.residentByGid],
      ["byClass", o.byClass],
    ] as const)
      for (const [k, v] of Object.entries(map)) add(t[field], k, v.count, v.bytes);
    o.sizeProfile.forEach((v, i) => {
      const b = t.sizeProfile[i];
      if (!b) return;
      b.count += v.count;
      b.bytes += v.bytes;
    });
    for (const f of o.oldest) this.#oldest.offer(f);
    for (const d of o.topDirs) this.#dirs.offer(d);
  }

  build(): ReportTally {
    return { ...this.tally, oldest: this.#oldest.sorted(), topDirs: this.#dirs.sorted() };
  }
}
