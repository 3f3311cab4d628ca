/**
 * The import walk: one shard = up to 16 sibling "directories" of the container (blob-name
 * prefixes, listed with delimiter '/'). For each, the worker lists one level, creates the files and
 * symlinks it holds (released stubs, or stubs queued for download in --mode full), creates its
 * subdirectories and publishes them as new shards, then sets the directory's own attributes once
 * its entries exist (so its mtime sticks).
 *
 * Shard paths are blob names (UTF-8, no trailing '/', "" for the container root), not file-system
 * paths: a name is turned into a safe relative path only through core's pathForBlobName, which
 * refuses '..', absolute names, NUL and anything else that could leave the target.
 */
import {
  BlobNameError,
  EntryType,
  attributesFromMetadata,
  isFolderStub,
  isSymlinkBlob,
  pathForBlobName,
} from "@hsmfleet/core";
import type { BlobEntryKind, FileEntry, PosixAttributes } from "@hsmfleet/core";
import type { BlobContainer, BlobLevelEntry } from "@hsmfleet/blob";
import type { EntryAttributes } from "@hsmfleet/fs";
import type { JsMsg } from "@hsmfleet/bus";
import {
  DEFAULT_CHUNK_SIZE_BYTES,
  WALK_GROUP_DIRECTORIES,
  emptyImportCounters,
  encodeChunk,
  encodeErrorBatch,
  encodeWalkShard,
  shardIdFor,
  subjects,
} from "@hsmfleet/protocol";
import type {
  Chunk,
  ImportCounters,
  ImportDir,
  ItemError,
  JobStatus,
  WalkShard,
} from "@hsmfleet/protocol";
import type { ImportOutcome, ImportTarget } from "./import-target.js";
import { ERRORS_PER_MESSAGE, itemErrorOf } from "../runtime/publisher.js";
import { ShardRun } from "../walk/shard-run.js";
import { importLevelStats } from "./import-level-stats.js";
import { PendingDirs } from "./pending-dirs.js";
import type { PendingDir } from "./pending-dirs.js";
import { transferBatcherFor } from "../runtime/transfer-batcher.js";
import type { WalkContext } from "../walk/walk-shard.js";

/** Bounds of one download batch (--mode full). */
export const IMPORT_BATCH_DEFAULTS = { maxEntries: 256, maxBytes: 256 * 1024 * 1024 } as const;

/** Files and symlinks of one listing level made together, and how many at once. */
const ENTRY_WINDOW = 256;
const ENTRY_CONCURRENCY = 16;

type FileBlob = Extract<BlobLevelEntry, { kind: "blob" }>;
type Created =
  | { error: ItemError }
  | {
      rel: Buffer;
      kind: BlobEntryKind;
      attrs: EntryAttributes;
      blob: FileBlob;
      outcome: ImportOutcome;
    };

const toEntryAttributes = (a: PosixAttributes, fallback: Date | undefined): EntryAttributes => ({
  mode: a.mode,
  uid: a.uid,
  gid: a.gid,
  mtimeSec: a.mtimeSec ?? Math.floor((fallback?.getTime() ?? Date.now()) / 1000),
});

/** Blob name → relative path, or the error that refuses it. */
const relPath = (name: string): { rel: Buffer } | { error: ItemError } => {
  try {
    return { rel: pathForBlobName(name) };
  } catch (err) {
    if (!(err instanceof BlobNameError)) throw err;
    return {
      error: {
        path: Buffer.from(name, "utf8"),
        operation: "name",
        code: "UnsafeBlobName",
        message: err.message,
        retryable: false,
      },
    };
  }
};

export const handleImportShard = async (
  ctx: WalkContext,
  msg: JsMsg,
  shard: WalkShard,
  job: JobStatus,
  container: BlobContainer,
  target: ImportTarget,
): Promise<void> => {
  const run = new ShardRun(ctx, msg, shard, job);
  try {
    if (await run.resume()) return;
    await importShardWith(ctx, shard, job, container, target, run);
  } finally {
    run.stop();
  }
};

const importShardWith = async (
  ctx: WalkContext,
  shard: WalkShard,
  job: JobStatus,
  container: BlobContainer,
  target: ImportTarget,
  run: ShardRun,
): Promise<void> => {
  const spec = job.spec;
  const redelivered = run.attempt > 1;
  const counters: ImportCounters = emptyImportCounters();
  const overwrite = spec.import.conflict.startsWith("overwrite");

  // Conflicts go to the results stream in batches of their own (conflicts.ndjson).
  let conflicts: ItemError[] = [];
  let conflictSeq = 0;
  const flushConflicts = async () => {
    if (conflicts.length === 0) return;
    const id = `${shard.shardId}.c${conflictSeq++}`;
    await run.publisher.publish(
      subjects.conflicts(shard.jobId),
      encodeErrorBatch({
        jobId: shard.jobId,
        itemId: shard.shardId,
        sequence: conflictSeq,
        errors: conflicts,
      }),
      id,
    );
    conflicts = [];
  };
  const fail = async (error: ItemError) => {
    counters.totalErrors++;
    await run.recordError(error);
  };
  /** Counts an outcome; true when the entry is in place (imported or pre-existing). */
  const account = async (o: ImportOutcome, kind: BlobEntryKind): Promise<boolean> => {
    if (o.conflict) {
      counters.totalConflicts++;
      conflicts.push(o.conflict);
      if (conflicts.length >= ERRORS_PER_MESSAGE) await flushConflicts();
    }
    // Every entry that was there before counts, whatever became of it.
    if (o.conflict !== undefined || o.result === "preexisting") {
      if (kind === "file") counters.preexistingFiles++;
      else if (kind === "symlink") counters.preexistingSymlinks++;
      else counters.preexistingDirectories++;
    }
    if (o.error) await fail(o.error);
    if (o.result === "imported" && !o.download) {
      counters.totalBlobsImported++;
      if (kind === "file") counters.importedFiles++;
      else if (kind === "symlink") counters.importedSymlinks++;
      else counters.importedDirectories++;
    }
    return o.result === "imported" || o.result === "preexisting";
  };

  // --mode full: files whose data is to be downloaded, in bounded batches.
  const batches = transferBatcherFor(
    shard,
    run.spawn,
    spec,
    IMPORT_BATCH_DEFAULTS,
    run.childPrefix,
  );
  // Large blobs: chunks any worker takes (several VMs download one file at once).
  const chunkSize = spec.chunkSize || DEFAULT_CHUNK_SIZE_BYTES;
  let fileSeq = 0;
  const queueChunks = async (
    rel: Buffer,
    name: string,
    size: number,
    a: EntryAttributes,
    blob: { etag?: string; contentMD5?: Buffer },
  ) => {
    const count = Math.ceil(size / chunkSize);
    const fileId = `${run.childPrefix}.k${fileSeq++}`;
    for (let index = 0; index < count; index++) {
      const offset = index * chunkSize;
      const chunk: Chunk = {
        jobId: shard.jobId,
        chunkId: `${fileId}.${index}`,
        path: rel,
        offset,
        length: Math.min(chunkSize, size - offset),
        firstBlock: 0,
        blockCount: 0,
        blockSize: 0,
        fileSize: size,
        fileMtimeSec: Math.floor(a.mtimeSec),
        fileMtimeNsec: 0,
        index,
        count,
        blobName: name,
        etag: blob.etag ?? "",
        contentMd5: blob.contentMD5 ?? Buffer.alloc(0),
        mode: a.mode,
        uid: a.uid,
        gid: a.gid,
      };
      await run.spawn(subjects.chunk(shard.jobId), encodeChunk(chunk), chunk.chunkId);
    }
    counters.filesQueued++;
    counters.bytesQueued += size;
  };
  const queueDownload = async (rel: Buffer, name: string, size: number, a: EntryAttributes) => {
    const entry: FileEntry = {
      path: rel,
      type: EntryType.File,
      size,
      mtimeSec: Math.floor(a.mtimeSec),
      mtimeNsec: 0,
      mode: a.mode,
      uid: a.uid,
      gid: a.gid,
      ino: 0n,
      nlink: 1,
    };
    await batches.add(entry, size, name);
    counters.filesQueued++;
    counters.bytesQueued += size;
  };

  // Subdirectories go out in groups of siblings, one shard per group.
  let group: Buffer[] = [];
  let groupDirs: ImportDir[] = [];
  const flushGroup = async () => {
    if (group.length === 0) return;
    const child: WalkShard = {
      jobId: shard.jobId,
      paths: group,
      depth: shard.depth + 1,
      shardId: shardIdFor(shard.jobId, group),
      importDirs: groupDirs,
    };
    group = [];
    groupDirs = [];
    await run.spawn(subjects.walk(shard.jobId), encodeWalkShard(child), child.shardId);
  };

  await ctx.options.hooks.beforeWalkShard?.(shard);
  for (let i = 0; i < shard.paths.length; i++) {
    const dirName = shard.paths[i]!.toString("utf8");
    const given = shard.importDirs?.[i];
    let dirRel: Buffer = Buffer.alloc(0);
    let ownStub: { attrs: PosixAttributes; modified: Date | undefined } | undefined;
    let preexisting = given?.preexisting ?? false;
    if (dirName !== "") {
      const r = relPath(dirName);
      if ("error" in r) {
        await fail(r.error);
        continue;
      }
      dirRel = r.rel;
      if (shard.depth === 0) {
        // A prefix root: make it (and its parents); its stub, if any, gives its attributes.
        const o = await target.directory(dirRel);
        if (!(await account(o, "directory"))) continue;
        preexisting = o.result === "preexisting";
        const props = await container.getProperties(dirName);
        if (props && isFolderStub(props.metadata)) {
          ownStub = {
            attrs: attributesFromMetadata(props.metadata, "directory"),
            modified: props.lastModified,
          };
        }
      }
    }
    const level = dirName === "" ? "" : `${dirName}/`;
    // Subdirectories are handed on as the listing passes them (pending-dirs.ts), not gathered.
    const dirs = new PendingDirs();
    // A subdirectory: made here (so this directory's mtime can be set after them), its attributes
    // set by its own shard (or now, for an empty directory without a prefix).
    const handOn = async (name: string, d: PendingDir) => {
      const r = relPath(name);
      if ("error" in r) {
        await fail(r.error);
        return;
      }
      const o = await target.directory(r.rel);
      if (!(await account(o, "directory"))) return;
      const existed = o.result === "preexisting";
      if (d.hasPrefix) {
        group.push(Buffer.from(name, "utf8"));
        groupDirs.push({
          hasAttrs: d.stub !== undefined,
          mode: d.stub?.mode ?? 0,
          uid: d.stub?.uid ?? 0,
          gid: d.stub?.gid ?? 0,
          mtimeSec: d.stub ? toEntryAttributes(d.stub, d.stubModified).mtimeSec : 0,
          preexisting: existed,
        });
        if (group.length >= WALK_GROUP_DIRECTORIES) await flushGroup();
      } else if (!existed || overwrite) {
        const stub = d.stub ?? attributesFromMetadata({}, "directory");
        const e = await target.finishDirectory(r.rel, toEntryAttributes(stub, d.stubModified));
        if (e) await fail(e);
      }
    };
    const handOnPassed = async (position: string) => {
      for (const [name, d] of dirs.passed(position)) {
        // A file blob "d" beside the prefix "d/" (a conflict): the file is made first, as it
        // always was (the listing names it first).
        if (entryNames.has(name)) await createEntries();
        await handOn(name, d);
      }
    };
    let seen = 0;
    // Files and symlinks are made ENTRY_WINDOW at a time, ENTRY_CONCURRENCY of them at once (one
    // after another, a shard spends its time waiting on the file system); outcomes are counted and
    // downloads queued in listing order, so a redelivered shard rebuilds the same batches.
    let entries: FileBlob[] = [];
    /** The names in `entries` (a subdirectory of the same name waits for its file). */
    const entryNames = new Set<string>();
    const createEntries = async () => {
      const page = entries;
      entries = [];
      entryNames.clear();
      const outcomes = new Array<Created | undefined>(page.length);
      let next = 0;
      const lane = async () => {
        while (next < page.length) {
          const k = next++;
          outcomes[k] = await createEntry(page[k]!);
        }
      };
      await Promise.all(Array.from({ length: Math.min(ENTRY_CONCURRENCY, page.length) }, lane));
      for (const c of outcomes) {
        if (!c) continue;
        if ("error" in c) {
          await fail(c.error);
          continue;
        }
        await account(c.outcome, c.kind);
        if (c.outcome.download) {
          const b = c.blob;
          if (b.size > chunkSize) await queueChunks(c.rel, b.name, b.size, c.attrs, b);
          else await queueDownload(c.rel, b.name, b.size, c.attrs);
        }
      }
      run.keepAlive();
    };
    const createEntry = async (b: FileBlob): Promise<Created | undefined> => {
      const r = relPath(b.name);
      if ("error" in r) return r;
      const symlink = isSymlinkBlob(b.metadata);
      const kind: BlobEntryKind = symlink ? "symlink" : "file";
      const attrs = toEntryAttributes(attributesFromMetadata(b.metadata, kind), b.lastModified);
      if (symlink) {
        let linkTarget: Buffer;
        try {
          linkTarget = await container.download(b.name);
        } catch (err) {
          return { error: itemErrorOf(r.rel, err, "get-blob") };
        }
        const outcome = await target.symlink(r.rel, linkTarget, attrs, redelivered);
        return { rel: r.rel, kind, attrs, blob: b, outcome };
      }
      const outcome = await target.file(r.rel, b.size, attrs, b.name, b.etag ?? "", redelivered);
      return { rel: r.rel, kind, attrs, blob: b, outcome };
    };
    for await (const b of container.listLevel(level, { nameOrder: true })) {
      if (++seen % 256 === 0) run.keepAlive();
      if (b.kind === "prefix") {
        dirs.get(b.name.slice(0, -1)).hasPrefix = true;
        await handOnPassed(b.name);
        continue;
      }
      await handOnPassed(b.name);
      counters.totalBlobsWalked++;
      ctx.onEntries(1);
      if (b.name === level) {
        // "dir/" written as the directory's own stub (some tools add the trailing '/').
        ownStub = {
          attrs: attributesFromMetadata(b.metadata, "directory"),
          modified: b.lastModified,
        };
        continue;
      }
      if (isFolderStub(b.metadata)) {
        const d = dirs.get(b.name);
        d.stub = attributesFromMetadata(b.metadata, "directory");
        d.stubModified = b.lastModified;
        continue;
      }
      entries.push(b);
      entryNames.add(b.name);
      if (entries.length >= ENTRY_WINDOW) await createEntries();
    }
    await createEntries();
    for (const [name, d] of dirs.drain()) await handOn(name, d);
    importLevelStats.levels++;
    // This directory's own attributes, now that its entries exist (the target root is left alone).
    if (dirName !== "" && (!preexisting || overwrite)) {
      const attrs: EntryAttributes | undefined = ownStub
        ? toEntryAttributes(ownStub.attrs, ownStub.modified)
        : given?.hasAttrs
          ? { mode: given.mode, uid: given.uid, gid: given.gid, mtimeSec: given.mtimeSec }
          : toEntryAttributes(attributesFromMetadata({}, "directory"), undefined);
      const e = await target.finishDirectory(dirRel, attrs);
      if (e) await fail(e);
    }
    run.keepAlive();
  }
  await flushGroup();
  await batches.flush();
  await flushConflicts();
  await run.finish({ import: counters });
};
