import { EntryType, FsOperationError, displayPath } from "@hsmfleet/core";
import type { DirEntry, DirReader } from "@hsmfleet/fs";
import type { DirectoryReadOptions, WalkNamespace } from "../walk/walk-namespace.js";

/**
 * Shape of a synthetic tree. Directories are numbered breadth-first: directory 0 is the root,
 * directory n has the subdirectories n·fanOut+1 … n·fanOut+fanOut (those below `directories`),
 * each named `d<number>`; directory n holds files `f<i>` for its share of `files`.
 */
export interface SyntheticTreeSpec {
  /** Regular files in the numbered directories. */
  files: number;
  /** Files per directory (the last one holds the remainder). Default 1000. */
  filesPerDirectory?: number | undefined;
  /** Subdirectories per directory. Default 8. */
  fanOut?: number | undefined;
  /** A directory `huge` under the root holding this many files (0: none). Default 0. */
  hugeDirectoryEntries?: number | undefined;
  /** Largest file size; sizes are spread 0 … this deterministically. Default 65,536. */
  maxFileSize?: number | undefined;
}

const MTIME_SEC = 1_700_000_000;
const HUGE = "huge";
const FILE_MODE = 0o100644;
const DIR_MODE = 0o040755;

/** A deterministic size for file i of directory n (splitmix-style mixing, no state). */
const sizeOf = (n: number, i: number, max: number): number => {
  let x = Math.imul(n ^ 0x9e3779b9, 0x85ebca6b) ^ Math.imul(i + 1, 0xc2b2ae35);
  x ^= x >>> 16;
  x = Math.imul(x, 0x7feb352d);
  x ^= x >>> 15;
  return (x >>> 0) % (max + 1);
};

/**
 * **Benchmarks only.** A virtual tree answered behind the walk's `WalkNamespace`: no file system
 * is touched, so a walk → batches → results → job record run measures the control plane alone.
 * No user command reaches it: only a worker created in code with `bench.namespace` uses it
 * (test/bench/control-plane.bench.ts). Files have no content (pair it with `bench.nullTarget`).
 */
export class SyntheticNamespace implements WalkNamespace {
  readonly name = "synthetic";
  readonly files: number;
  readonly filesPerDirectory: number;
  readonly fanOut: number;
  readonly hugeDirectoryEntries: number;
  readonly maxFileSize: number;
  /** Numbered directories (the root included). */
  readonly directories: number;

  constructor(spec: SyntheticTreeSpec) {
    const int = (v: number, min: number, what: string): number => {
      if (!Number.isSafeInteger(v) || v < min)
        throw new RangeError(`synthetic tree: ${what} must be an integer ≥ ${min}, got ${v}`);
      return v;
    };
    this.files = int(spec.files, 0, "files");
    this.filesPerDirectory = int(spec.filesPerDirectory ?? 1000, 1, "filesPerDirectory");
    this.fanOut = int(spec.fanOut ?? 8, 1, "fanOut");
    this.hugeDirectoryEntries = int(spec.hugeDirectoryEntries ?? 0, 0, "hugeDirectoryEntries");
    this.maxFileSize = int(spec.maxFileSize ?? 65_536, 0, "maxFileSize");
    this.directories = Math.max(1, Math.ceil(this.files / this.filesPerDirectory));
  }

  /** Every entry of the tree: files, directories (not the root) — what a scan counts. */
  get totalFiles(): number {
    return this.files + this.hugeDirectoryEntries;
  }

  get totalDirectories(): number {
    return this.directories + (this.hugeDirectoryEntries > 0 ? 1 : 0);
  }

  /** Root-relative path of directory n. */
  pathOf(n: number): string {
    const parts: string[] = [];
    while (n > 0) {
      parts.push(`d${n}`);
      n = Math.floor((n - 1) / this.fanOut);
    }
    return parts.reverse().join("/");
  }

  openDirectory(_root: Buffer, dir: Buffer, options: DirectoryReadOptions): Promise<DirReader> {
    const rel = dir.toString("latin1");
    if (rel === HUGE && this.hugeDirectoryEntries > 0)
      return Promise.resolve(new SyntheticReader(this, -1, options.batchSize));
    const last = rel.slice(rel.lastIndexOf("/") + 1);
    const n = rel === "" ? 0 : /^d[1-9][0-9]*$/.test(last) ? Number(last.slice(1)) : -1;
    if (n < 0 || n >= this.directories || this.pathOf(n) !== rel) {
      return Promise.reject(
        new FsOperationError("opendir", displayPath(dir), "ENOENT", "not in the synthetic tree"),
      );
    }
    return Promise.resolve(new SyntheticReader(this, n, options.batchSize));
  }
}

/** Lists one directory of a SyntheticNamespace: subdirectories first, then files, in batches. */
class SyntheticReader implements DirReader {
  readonly #tree: SyntheticNamespace;
  /** Directory number; -1 for the huge directory. */
  readonly #n: number;
  readonly #batchSize: number;
  readonly #subdirs: number[] = [];
  readonly #fileCount: number;
  #next = 0;

  constructor(tree: SyntheticNamespace, n: number, batchSize: number) {
    this.#tree = tree;
    this.#n = n;
    this.#batchSize = batchSize;
    if (n < 0) {
      this.#fileCount = tree.hugeDirectoryEntries;
      return;
    }
    for (let c = n * tree.fanOut + 1; c <= n * tree.fanOut + tree.fanOut; c++)
      if (c < tree.directories) this.#subdirs.push(c);
    this.#fileCount = Math.max(
      0,
      Math.min(tree.filesPerDirectory, tree.files - n * tree.filesPerDirectory),
    );
  }

  read(): Promise<DirEntry[] | null> {
    const total = this.#subdirs.length + this.#fileCount + (this.#hasHuge() ? 1 : 0);
    if (this.#next >= total) return Promise.resolve(null);
    const end = Math.min(total, this.#next + this.#batchSize);
    const out = new Array<DirEntry>(end - this.#next);
    for (let k = 0; this.#next < end; k++, this.#next++) out[k] = this.#entry(this.#next);
    return Promise.resolve(out);
  }

  close(): Promise<void> {
    return Promise.resolve();
  }

  #hasHuge(): boolean {
    return this.#n === 0 && this.#tree.hugeDirectoryEntries > 0;
  }

  #entry(k: number): DirEntry {
    const dirs = this.#subdirs.length + (this.#hasHuge() ? 1 : 0);
    if (k < dirs) {
      const c = this.#subdirs[k];
      return {
        name: Buffer.from(c === undefined ? HUGE : `d${c}`, "latin1"),
        type: EntryType.Directory,
        size: 4096,
        mode: DIR_MODE,
        uid: 0,
        gid: 0,
        nlink: 2,
        ino: BigInt(c ?? this.#tree.directories) << 32n,
        mtimeSec: MTIME_SEC,
        mtimeNsec: 0,
      };
    }
    const i = k - dirs;
    const n = this.#n < 0 ? this.#tree.directories : this.#n;
    return {
      name: Buffer.from(`f${i}`, "latin1"),
      type: EntryType.File,
      size: sizeOf(n, i, this.#tree.maxFileSize),
      mode: FILE_MODE,
      uid: 0,
      gid: 0,
      nlink: 1,
      ino: (BigInt(n) << 32n) | BigInt(i + 1),
      mtimeSec: MTIME_SEC,
      mtimeNsec: 0,
    };
  }
}
