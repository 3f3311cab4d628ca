/**
 * Deterministic file tree generator: regular files with seeded content, directories, symlinks,
 * FIFOs, awkward names (including non-UTF-8), Lustre HSM xattrs, modes and owners.
 */
import { spawn } from "node:child_process";
import { lstatSync, mkdirSync, readdirSync } from "node:fs";
import { chmod, chown, open, symlink, writeFile } from "node:fs/promises";
import { resolve } from "node:path";
import { DEFAULT_HSM_XATTR, HSM_COMPAT, encodeHsmAttrs, hsmStateName } from "@hsmfleet/core";
import { checkSize, contentKey, contentOf, fillRange } from "./tree-content.js";

export interface HsmStateSpec {
  flags: number;
  archiveId: number;
}

export interface TreeSpec {
  /** Directory levels below the root (0 = files only in the root). */
  depth: number;
  /** Subdirectories per directory. */
  fanout: number;
  filesPerDir: number;
  /**
   * Sizes cycled over regular files in creation order; default [0, 1, 4096, 100_000]. Files are
   * written in full (not sparse) with deterministic bytes, see contentOf().
   */
  sizes?: number[];
  /** Default 0; targets cycle (tree-wide) over a sibling file (relative), a directory, a dangling name. */
  symlinksPerDir?: number;
  /** Default 0 (created with `mkfifo`). */
  fifosPerDir?: number;
  /** Default false; when true every directory also gets the regular files named ODD_NAMES. */
  oddNames?: boolean;
  /**
   * HSM states (struct hsm_attrs flags + archive id) assigned round-robin to regular files, written
   * as an xattr by a single `setfattr --restore=-` for the whole tree (its dump format carries raw,
   * quoted name bytes, which argv cannot for non-UTF-8 names). undefined = no xattrs.
   */
  hsm?: {
    /** Default "trusted.hsm". */
    xattrName?: string;
    /** null = leave that file without the xattr. */
    states: Array<HsmStateSpec | null>;
  };
  /** Modes applied round-robin to regular files (chmod). Default: as created (0644 under umask 022). */
  modes?: number[];
  /** Owners applied round-robin to regular files (chown). Default: the creating user. */
  owners?: Array<{ uid: number; gid: number }>;
  /** Content seed; default DEFAULT_TREE_SEED. */
  seed?: number;
}

export type TreeEntryType = "file" | "directory" | "symlink" | "other";

export interface TreeEntry {
  /** Raw path bytes relative to the root, '/'-separated, no leading '/'. */
  path: Buffer;
  type: TreeEntryType;
  /** Bytes as lstat reports them (symlink: target length; FIFO: 0; directory: fs-dependent). */
  size: number;
  /** Regular files that got the HSM xattr. */
  hsm?: HsmStateSpec;
  /** Symlinks: the raw target. */
  linkTarget?: Buffer;
}

export interface TreeManifest {
  root: string;
  seed: number;
  files: number;
  /** Including the root directory itself, like find(1). */
  directories: number;
  symlinks: number;
  other: number;
  /** Sum of regular file sizes. */
  bytes: number;
  /** Regular files by hsmStateName(); files without the xattr count as "new". Only non-zero counts. */
  hsmStates: Record<string, number>;
  /** Every entry below the root (the root itself is not listed), in creation order. */
  entries: TreeEntry[];
}

export const DEFAULT_TREE_SEED = 1;
export const DEFAULT_TREE_SIZES: readonly number[] = [0, 1, 4096, 100_000];

/** The awkward names every directory gets with `oddNames: true`. */
export const ODD_NAMES: readonly Buffer[] = [
  Buffer.from("with space"),
  Buffer.from("per%cent"),
  Buffer.from("new\nline"),
  Buffer.from("ünïcödé-日本"),
  Buffer.from([0x62, 0x61, 0x64, 0xff, 0xfe]), // "bad\xff\xfe": not UTF-8
  Buffer.from("-leading-dash"),
  Buffer.from(`long-name-${"x".repeat(245)}`), // 255 bytes, NAME_MAX
];

// ---------------------------------------------------------------------------------------------
// Generation

const SLASH = Buffer.from("/");
const WRITE_CHUNK = 4 * 1024 * 1024;

const join = (parent: Buffer, name: Buffer): Buffer =>
  parent.length === 0 ? name : Buffer.concat([parent, SLASH, name]);

const checkCount = (name: string, value: number | undefined): number => {
  const v = value ?? 0;
  if (!Number.isSafeInteger(v) || v < 0)
    throw new RangeError(`TreeSpec.${name} must be >= 0, got ${v}`);
  return v;
};

const checkList = <T>(name: string, list: T[] | undefined): T[] | undefined => {
  if (list !== undefined && list.length === 0) throw new RangeError(`TreeSpec.${name} is empty`);
  return list;
};

/** Run a command to completion; reject with its stderr on failure. */
const run = (cmd: string, args: string[], cwd: string, input?: Buffer): Promise<void> =>
  new Promise((done, fail) => {
    const child = spawn(cmd, args, { cwd, stdio: [input ? "pipe" : "ignore", "ignore", "pipe"] });
    let stderr = "";
    child.stderr?.on("data", (chunk: Buffer) => {
      if (stderr.length < 8192) stderr += chunk.toString();
    });
    child.once("error", fail);
    child.once("close", (code, signal) => {
      if (code === 0) done();
      else fail(new Error(`${cmd} failed (code ${code}, signal ${signal}): ${stderr.trim()}`));
    });
    child.stdin?.on("error", () => undefined);
    child.stdin?.end(input);
  });

/** Split args into invocations whose total argument bytes stay well under ARG_MAX. */
const chunkArgs = (items: string[], maxBytes = 128 * 1024): string[][] => {
  const chunks: string[][] = [];
  let chunk: string[] = [];
  let bytes = 0;
  for (const item of items) {
    const len = Buffer.byteLength(item) + 1;
    if (chunk.length > 0 && bytes + len > maxBytes) {
      chunks.push(chunk);
      chunk = [];
      bytes = 0;
    }
    chunk.push(item);
    bytes += len;
  }
  if (chunk.length > 0) chunks.push(chunk);
  return chunks;
};

/**
 * Quote a path for a `setfattr --restore` dump the way getfattr does: backslash and every byte
 * outside printable ASCII (or space) becomes \ooo, so any raw name survives the round trip.
 */
const quoteForRestore = (path: Buffer): Buffer => {
  const parts: number[] = [];
  for (const byte of path) {
    if (byte > 0x20 && byte < 0x7f && byte !== 0x5c) parts.push(byte);
    else {
      parts.push(0x5c);
      for (const digit of byte.toString(8).padStart(3, "0")) parts.push(digit.charCodeAt(0));
    }
  }
  return Buffer.from(parts);
};

/** Concurrent file operations: hides per-file latency (much better than sync calls on a busy box). */
const IO_CONCURRENCY = 32;

type Task =
  | { kind: "file"; abs: Buffer; rel: Buffer; size: number; mode?: number; owner?: Owner }
  | { kind: "symlink"; abs: Buffer; target: Buffer };
type Owner = { uid: number; gid: number };

const writeFileContent = async (
  absPath: Buffer,
  seed: number,
  relPath: Buffer,
  size: number,
): Promise<void> => {
  if (size <= WRITE_CHUNK) {
    await writeFile(absPath, contentOf(seed, relPath, size), { flag: "wx", mode: 0o644 });
    return;
  }
  const key = contentKey(seed, relPath);
  const handle = await open(absPath, "wx", 0o644);
  try {
    for (let start = 0; start < size; start += WRITE_CHUNK) {
      const chunk = fillRange(key, start, Math.min(size, start + WRITE_CHUNK));
      let offset = 0;
      while (offset < chunk.length) {
        offset += (await handle.write(chunk, offset, chunk.length - offset)).bytesWritten;
      }
    }
  } finally {
    await handle.close();
  }
};

const runTask = async (task: Task, seed: number): Promise<void> => {
  if (task.kind === "symlink") {
    await symlink(task.target, task.abs);
    return;
  }
  await writeFileContent(task.abs, seed, task.rel, task.size);
  // chown before chmod: chown clears set-id bits.
  if (task.owner) await chown(task.abs, task.owner.uid, task.owner.gid);
  if (task.mode !== undefined) await chmod(task.abs, task.mode);
};

/** Run tasks with bounded concurrency; the first failure stops new work and is rethrown. */
const runTasks = async (tasks: Task[], seed: number): Promise<void> => {
  let next = 0;
  let failure: Error | undefined;
  const worker = async (): Promise<void> => {
    while (failure === undefined && next < tasks.length) {
      const task = tasks[next++]!;
      try {
        await runTask(task, seed);
      } catch (err) {
        failure ??= err instanceof Error ? err : new Error(String(err));
      }
    }
  };
  await Promise.all(Array.from({ length: IO_CONCURRENCY }, worker));
  if (failure !== undefined) throw failure;
};

/**
 * Create the tree described by `spec` under `root` (created if missing; must be empty) and
 * return its manifest. Deterministic: the same spec and seed give the same names, content,
 * xattrs and manifest.
 */
export async function generateTree(root: string, spec: TreeSpec): Promise<TreeManifest> {
  const depth = checkCount("depth", spec.depth);
  const fanout = checkCount("fanout", spec.fanout);
  const filesPerDir = checkCount("filesPerDir", spec.filesPerDir);
  const symlinksPerDir = checkCount("symlinksPerDir", spec.symlinksPerDir);
  const fifosPerDir = checkCount("fifosPerDir", spec.fifosPerDir);
  const sizes = checkList("sizes", spec.sizes) ?? DEFAULT_TREE_SIZES;
  sizes.forEach(checkSize);
  const states = checkList("hsm.states", spec.hsm?.states);
  const xattrName = spec.hsm?.xattrName ?? DEFAULT_HSM_XATTR;
  const modes = checkList("modes", spec.modes);
  const owners = checkList("owners", spec.owners);
  const seed = spec.seed ?? DEFAULT_TREE_SEED;
  if (!Number.isInteger(seed))
    throw new RangeError(`TreeSpec.seed must be an integer, got ${seed}`);

  const rootPath = resolve(root);
  mkdirSync(rootPath, { recursive: true, mode: 0o755 });
  if (readdirSync(rootPath).length > 0) throw new Error(`generateTree: ${rootPath} is not empty`);
  const rootBuf = Buffer.from(rootPath);
  const abs = (rel: Buffer): Buffer => (rel.length === 0 ? rootBuf : join(rootBuf, rel));

  // Encoded xattr value per state index, computed once.
  const stateValues = states?.map((s) =>
    s === null
      ? null
      : encodeHsmAttrs({
          compat: HSM_COMPAT,
          flags: s.flags,
          archiveId: BigInt(s.archiveId),
          archiveVersion: 0n,
        }).toString("hex"),
  );
  const stateNames = states?.map((s) =>
    s === null
      ? hsmStateName(undefined)
      : hsmStateName({
          compat: HSM_COMPAT,
          flags: s.flags,
          archiveId: BigInt(s.archiveId),
          archiveVersion: 0n,
        }),
  );

  const manifest: TreeManifest = {
    root: rootPath,
    seed,
    files: 0,
    directories: 1,
    symlinks: 0,
    other: 0,
    bytes: 0,
    hsmStates: {},
    entries: [],
  };
  const directoryIndexes: number[] = [];
  const fifoPaths: string[] = [];
  const restore: Buffer[] = [];
  const fileNames: Buffer[] = [];
  for (let i = 0; i < filesPerDir; i++) fileNames.push(Buffer.from(`file-${i}`));
  if (spec.oddNames === true) fileNames.push(...ODD_NAMES);
  const dirNames: Buffer[] = [];
  for (let i = 0; i < fanout; i++) dirNames.push(Buffer.from(`dir-${i}`));

  // Directories are created right away (their children need them); files and symlinks are
  // queued and written concurrently afterwards.
  const tasks: Task[] = [];
  let fileCounter = 0;
  let linkCounter = 0;
  const stack: Array<{ rel: Buffer; level: number }> = [{ rel: Buffer.alloc(0), level: 0 }];

  while (stack.length > 0) {
    const { rel, level } = stack.pop()!;

    for (const name of fileNames) {
      const n = fileCounter++;
      const relPath = join(rel, name);
      const size = sizes[n % sizes.length] ?? 0;
      const task: Task = { kind: "file", abs: abs(relPath), rel: relPath, size };
      const owner = owners?.[n % owners.length];
      if (owner) task.owner = owner;
      const mode = modes?.[n % modes.length];
      if (mode !== undefined) task.mode = mode;
      tasks.push(task);

      const entry: TreeEntry = { path: relPath, type: "file", size };
      if (states && stateValues && stateNames) {
        const k = n % states.length;
        const state = states[k];
        const name = stateNames[k] ?? "new";
        manifest.hsmStates[name] = (manifest.hsmStates[name] ?? 0) + 1;
        if (state) {
          entry.hsm = { flags: state.flags, archiveId: state.archiveId };
          restore.push(
            Buffer.from("# file: "),
            quoteForRestore(relPath),
            Buffer.from(`\n${xattrName}=0x${stateValues[k]}\n\n`),
          );
        }
      } else {
        manifest.hsmStates.new = (manifest.hsmStates.new ?? 0) + 1;
      }
      manifest.entries.push(entry);
      manifest.files += 1;
      manifest.bytes += size;
    }

    const hasSubdirs = level < depth && fanout > 0;
    for (let i = 0; i < symlinksPerDir; i++) {
      const k = linkCounter++;
      const relPath = join(rel, Buffer.from(`link-${i}`));
      let target: Buffer;
      if (k % 3 === 0) target = fileNames[0] ?? Buffer.from("file-0");
      else if (k % 3 === 1)
        target = hasSubdirs ? (dirNames[0] ?? Buffer.from(".")) : Buffer.from(".");
      else target = Buffer.from(`missing-${k}`);
      tasks.push({ kind: "symlink", abs: abs(relPath), target });
      manifest.entries.push({
        path: relPath,
        type: "symlink",
        size: target.length,
        linkTarget: target,
      });
      manifest.symlinks += 1;
    }

    for (let i = 0; i < fifosPerDir; i++) {
      const relPath = join(rel, Buffer.from(`fifo-${i}`));
      fifoPaths.push(relPath.toString("utf8")); // all directory names are ASCII
      manifest.entries.push({ path: relPath, type: "other", size: 0 });
      manifest.other += 1;
    }

    if (hasSubdirs) {
      const children: Buffer[] = [];
      for (const name of dirNames) {
        const relPath = join(rel, name);
        mkdirSync(abs(relPath), { mode: 0o755 });
        directoryIndexes.push(manifest.entries.length);
        manifest.entries.push({ path: relPath, type: "directory", size: 0 });
        manifest.directories += 1;
        children.push(relPath);
      }
      for (let i = children.length - 1; i >= 0; i--) {
        stack.push({ rel: children[i]!, level: level + 1 });
      }
    }
  }

  await runTasks(tasks, seed);
  tasks.length = 0;
  for (const chunk of chunkArgs(fifoPaths)) {
    await run("mkfifo", ["-m", "0644", "--", ...chunk], rootPath);
  }
  if (restore.length > 0) {
    // One setfattr for the whole tree; the dump format carries raw (quoted) name bytes, which
    // argv cannot for non-UTF-8 names.
    await run("setfattr", ["--restore=-"], rootPath, Buffer.concat(restore));
  }
  // Directory sizes last: they grow as entries are added.
  for (const index of directoryIndexes) {
    const entry = manifest.entries[index]!;
    entry.size = lstatSync(abs(entry.path)).size;
  }
  return manifest;
}
