import { stat } from "node:fs/promises";
import { EntryType, displayPath, joinPathBytes } from "@hsmfleet/core";
import { InotifyMask, InotifyWatcher, jobRootFor, openDir } from "@hsmfleet/fs";
import type { InotifyEvent, JobRoot } from "@hsmfleet/fs";
import type { ChangeRecord, ChangeType } from "@hsmfleet/protocol";
import type { Logger } from "@hsmfleet/telemetry";
import type { ChangeCheckpoint, ChangeSource, SourceChange } from "./change-source.js";

/** How long a rename's first half (IN_MOVED_FROM) waits for its second before it counts as a move out. */
const MOVE_PAIR_MS = 50;
/** A catch-up after a restart looks at entries changed this long before the checkpoint's watermark. */
const CATCH_UP_SLACK_MS = 2_000;

const key = (rel: Buffer): string => rel.toString("latin1");
const under = (rel: Buffer, dir: Buffer): boolean =>
  rel.length > dir.length && rel[dir.length] === 0x2f && rel.subarray(0, dir.length).equals(dir);
const baseName = (rel: Buffer): Buffer => rel.subarray(rel.lastIndexOf(0x2f) + 1);

/**
 * Changes of a POSIX tree from kernel events (inotify through the native addon: a reader thread
 * blocked in poll(2), no polling of the tree). Every directory gets a watch when the source starts
 * and when it appears (mkdir, moved in); a directory that appears is compared with its blobs as a
 * whole (its content may predate its watch). IN_Q_OVERFLOW (events lost) makes every directory be
 * compared with its blobs.
 *
 * inotify keeps nothing while the service is stopped: on a restart every directory is listed again
 * to add its watch, and directories and files modified since the checkpoint's watermark are
 * compared with their blobs (the catch-up); only that part of the tree is compared.
 */
export class PosixChangeSource implements ChangeSource {
  readonly name = "posix";
  readonly #rootPath: string;
  readonly #logger: Logger | undefined;
  #root: JobRoot | undefined;
  #watcher: InotifyWatcher | undefined;
  readonly #wdPath = new Map<number, Buffer>();
  readonly #pathWd = new Map<string, number>();
  #emit: (changes: SourceChange[]) => void = () => {};
  #next = 1n;
  #chain: Promise<void> = Promise.resolve();
  #pendingFrom: { cookie: number; rel: Buffer; isDir: boolean; timer: NodeJS.Timeout } | undefined;

  constructor(rootPath: string, logger?: Logger) {
    this.#rootPath = rootPath;
    this.#logger = logger;
  }

  async start(
    checkpoint: ChangeCheckpoint | undefined,
    emit: (changes: SourceChange[]) => void,
  ): Promise<void> {
    this.#emit = emit;
    this.#next = (checkpoint?.index ?? 0n) + 1n;
    this.#root = await jobRootFor(this.#rootPath);
    this.#watcher = new InotifyWatcher(
      (events) => {
        this.#chain = this.#chain
          .then(() => this.#onEvents(events))
          .catch((err: unknown) => this.#logger?.warn({ err }, "sync: inotify events not handled"));
      },
      (err) => this.#logger?.error({ err }, "sync: inotify read failed"),
    );
    // First start: every directory is compared with its blobs (the initial sync); a restart only
    // looks at what changed since the watermark.
    const since = checkpoint === undefined ? -Infinity : checkpoint.watermarkMs - CATCH_UP_SLACK_MS;
    const rootMtimeMs = (await stat(this.#rootPath)).mtimeMs;
    await this.#addTree(Buffer.alloc(0), since, rootMtimeMs);
  }

  async release(): Promise<void> {
    // Kernel events need no acknowledgement.
  }

  directories(): Buffer[] {
    return [...this.#wdPath.values()];
  }

  async stop(): Promise<void> {
    this.#watcher?.stop();
    if (this.#pendingFrom) clearTimeout(this.#pendingFrom.timer);
    await this.#chain;
    this.#root?.close();
  }

  #change(
    type: ChangeType,
    rel: Buffer,
    isDir: boolean,
    mask: number,
    extra: Partial<SourceChange> = {},
  ): SourceChange {
    const record: ChangeRecord = {
      source: "posix",
      index: String(this.#next++),
      type,
      time: Date.now(),
      flags: mask,
      target: "",
      parent: "",
      name: displayPath(baseName(rel)),
      path: displayPath(rel),
      ...(extra.from ? { sourceName: displayPath(baseName(extra.from)), sourceParent: "" } : {}),
    };
    return { record, rel, isDir, ...extra };
  }

  /** Watches every directory under `top` (itself included); emits the catch-up for what changed since `since`. */
  async #addTree(top: Buffer, since: number, topMtimeMs: number): Promise<void> {
    const root = this.#root!;
    const queue: { rel: Buffer; mtimeMs: number }[] = [{ rel: top, mtimeMs: topMtimeMs }];
    while (queue.length > 0) {
      const out: SourceChange[] = [];
      const { rel, mtimeMs } = queue.shift()!;
      try {
        const wd = await this.#watcher!.watch(root, rel);
        this.#wdPath.set(wd, rel);
        this.#pathWd.set(key(rel), wd);
      } catch (err) {
        this.#logger?.warn({ path: displayPath(rel), err }, "sync: directory not watched");
        continue;
      }
      if (mtimeMs >= since) out.push(this.#change("MKDIR", rel, true, 0, { reconcile: true }));
      const reader = await openDir(root.absolute(rel), { beneath: { rootFd: root.fd, rel } }).catch(
        () => undefined,
      );
      if (reader === undefined) continue;
      try {
        for (let batch = await reader.read(); batch; batch = await reader.read()) {
          for (const e of batch) {
            const child = rel.length === 0 ? Buffer.from(e.name) : joinPathBytes(rel, e.name);
            const ms = e.mtimeSec * 1000 + e.mtimeNsec / 1e6;
            if (e.type === EntryType.Directory) queue.push({ rel: child, mtimeMs: ms });
            else if (ms >= since && since !== -Infinity)
              out.push(this.#change("MTIME", child, false, 0));
          }
        }
      } finally {
        await reader.close();
      }
      if (out.length > 0) this.#emit(out);
    }
  }

  #forget(dir: Buffer, stopWatching: boolean): void {
    for (const [wd, rel] of [...this.#wdPath]) {
      if (rel.equals(dir) || under(rel, dir)) {
        this.#wdPath.delete(wd);
        this.#pathWd.delete(key(rel));
        if (stopWatching) this.#watcher?.unwatch(wd);
      }
    }
  }

  #renameWatched(from: Buffer, to: Buffer): void {
    for (const [wd, rel] of [...this.#wdPath]) {
      if (!rel.equals(from) && !under(rel, from)) continue;
      const moved = Buffer.concat([to, rel.subarray(from.length)]);
      this.#pathWd.delete(key(rel));
      this.#wdPath.set(wd, moved);
      this.#pathWd.set(key(moved), wd);
    }
  }

  /** A rename's first half with no second: the entry left the tree. */
  #flushMovedOut(): SourceChange[] {
    const p = this.#pendingFrom;
    if (!p) return [];
    clearTimeout(p.timer);
    this.#pendingFrom = undefined;
    if (p.isDir) this.#forget(p.rel, true);
    return [this.#change(p.isDir ? "RMDIR" : "UNLNK", p.rel, p.isDir, InotifyMask.MovedFrom)];
  }

  async #onEvents(events: InotifyEvent[]): Promise<void> {
    let out: SourceChange[] = [];
    const newDirs: Buffer[] = [];
    for (const ev of events) {
      if (ev.mask & InotifyMask.QueueOverflow) {
        this.#logger?.warn("sync: inotify queue overflowed; comparing every directory");
        out.push(...this.#flushMovedOut());
        for (const rel of this.directories())
          out.push(this.#change("MKDIR", rel, true, ev.mask, { reconcile: true }));
        continue;
      }
      const dir = this.#wdPath.get(ev.wd);
      if (dir === undefined) continue;
      if (ev.mask & InotifyMask.Ignored) {
        this.#wdPath.delete(ev.wd);
        if (this.#pathWd.get(key(dir)) === ev.wd) this.#pathWd.delete(key(dir));
        continue;
      }
      if (ev.name.length === 0) continue; // events on the watched directory itself
      const rel = dir.length === 0 ? Buffer.from(ev.name) : joinPathBytes(dir, ev.name);
      const isDir = (ev.mask & InotifyMask.IsDir) !== 0;
      if (this.#pendingFrom && !(ev.mask & InotifyMask.MovedTo)) out.push(...this.#flushMovedOut());
      if (ev.mask & InotifyMask.MovedFrom) {
        out.push(...this.#flushMovedOut());
        this.#pendingFrom = {
          cookie: ev.cookie,
          rel,
          isDir,
          timer: setTimeout(() => {
            this.#chain = this.#chain.then(() => {
              const moved = this.#flushMovedOut();
              if (moved.length > 0) this.#emit(moved);
            });
          }, MOVE_PAIR_MS),
        };
        continue;
      }
      if (ev.mask & InotifyMask.MovedTo) {
        const p = this.#pendingFrom;
        if (p && p.cookie === ev.cookie) {
          clearTimeout(p.timer);
          this.#pendingFrom = undefined;
          if (isDir) this.#renameWatched(p.rel, rel);
          out.push(this.#change("RENME", rel, isDir, ev.mask, { from: p.rel }));
        } else {
          out.push(...this.#flushMovedOut());
          // Moved in from outside the tree: new to us.
          if (isDir) newDirs.push(rel);
          else out.push(this.#change("CREAT", rel, false, ev.mask));
        }
        continue;
      }
      if (ev.mask & InotifyMask.Create) {
        if (isDir) newDirs.push(rel);
        else out.push(this.#change("CREAT", rel, false, ev.mask));
      } else if (ev.mask & InotifyMask.Delete) {
        if (isDir) this.#forget(rel, false);
        out.push(this.#change(isDir ? "RMDIR" : "UNLNK", rel, isDir, ev.mask));
      } else if (ev.mask & InotifyMask.Modify) {
        out.push(this.#change("MTIME", rel, isDir, ev.mask));
      } else if (ev.mask & InotifyMask.CloseWrite) {
        out.push(this.#change("CLOSE", rel, isDir, ev.mask));
      } else if (ev.mask & InotifyMask.Attrib) {
        out.push(this.#change("SATTR", rel, isDir, ev.mask));
      }
    }
    if (out.length > 0) this.#emit(out);
    out = [];
    // A new directory: watched first, then compared as a whole (entries made before the watch).
    for (const rel of newDirs) await this.#addTree(rel, -Infinity, 0);
  }
}
