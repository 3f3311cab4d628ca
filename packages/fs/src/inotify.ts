import { constants } from "node:fs";
import { close } from "node:fs";
import { promisify } from "node:util";

import { FsOperationError } from "@hsmfleet/core";
import type { JobRoot } from "./job-root.js";
import { loadNative } from "./native.js";
import type { NativeInotifyHandle } from "./native.js";

/** inotify(7) event bits (linux/inotify.h). */
export const InotifyMask = {
  Access: 0x1,
  Modify: 0x2,
  Attrib: 0x4,
  CloseWrite: 0x8,
  CloseNoWrite: 0x10,
  Open: 0x20,
  MovedFrom: 0x40,
  MovedTo: 0x80,
  Create: 0x100,
  Delete: 0x200,
  DeleteSelf: 0x400,
  MoveSelf: 0x800,
  Unmount: 0x2000,
  QueueOverflow: 0x4000,
  Ignored: 0x8000,
  OnlyDir: 0x1000000,
  DontFollow: 0x2000000,
  ExclUnlink: 0x4000000,
  IsDir: 0x40000000,
} as const;

/** What `hsmfleet sync` asks for on every directory: everything that changes the container. */
export const SYNC_WATCH_MASK =
  InotifyMask.Modify |
  InotifyMask.Attrib |
  InotifyMask.CloseWrite |
  InotifyMask.MovedFrom |
  InotifyMask.MovedTo |
  InotifyMask.Create |
  InotifyMask.Delete |
  InotifyMask.DeleteSelf |
  InotifyMask.MoveSelf |
  InotifyMask.ExclUnlink;

/** One kernel event: the watch it came from, its bits, the rename cookie and the entry's name. */
export interface InotifyEvent {
  wd: number;
  mask: number;
  cookie: number;
  /** The entry's name in the watched directory (raw bytes); empty for events on the directory. */
  name: Buffer;
}

/** Splits one read(2) of an inotify fd into events (struct inotify_event, NUL-padded names). */
export const parseInotifyEvents = (data: Buffer): InotifyEvent[] => {
  const events: InotifyEvent[] = [];
  let at = 0;
  while (at + 16 <= data.length) {
    const wd = data.readInt32LE(at);
    const mask = data.readUInt32LE(at + 4);
    const cookie = data.readUInt32LE(at + 8);
    const len = data.readUInt32LE(at + 12);
    const raw = data.subarray(at + 16, at + 16 + len);
    const nul = raw.indexOf(0);
    events.push({ wd, mask, cookie, name: Buffer.from(nul < 0 ? raw : raw.subarray(0, nul)) });
    at += 16 + len;
  }
  return events;
};

/**
 * An inotify instance: events arrive in batches (one read(2) each) on `onEvents`, from a native
 * reader thread that blocks in poll(2) — the kernel wakes it, nothing polls the tree.
 */
export class InotifyWatcher {
  readonly #handle: NativeInotifyHandle;
  #stopped = false;

  constructor(onEvents: (events: InotifyEvent[]) => void, onError: (err: Error) => void) {
    this.#handle = loadNative().inotifyStart((errno, data) => {
      if (errno !== null) {
        onError(new FsOperationError("read", "(inotify)", `errno ${errno}`));
        return;
      }
      if (data) onEvents(parseInotifyEvents(data));
    });
  }

  /**
   * Watches directory `rel` of `root`, opened beneath the root's fd with no symlink followed (the
   * watch goes on that very directory). Returns the watch descriptor.
   */
  async watch(root: JobRoot, rel: Buffer, mask = SYNC_WATCH_MASK): Promise<number> {
    // The root itself: its own fd (opened when the job root was made).
    const fd =
      rel.length === 0
        ? root.fd
        : (await root.openBeneath(rel, constants.O_RDONLY | constants.O_DIRECTORY)).fd;
    try {
      return loadNative().inotifyAddWatch(this.#handle, fd, mask);
    } catch (err) {
      const code = (err as { errno?: number }).errno;
      throw new FsOperationError(
        "inotify_add_watch",
        root.display(rel),
        code === undefined ? "EIO" : `errno ${code}`,
        (err as Error).message,
        err,
      );
    } finally {
      if (fd !== root.fd) await promisify(close)(fd);
    }
  }

  unwatch(wd: number): void {
    if (!this.#stopped) loadNative().inotifyRmWatch(this.#handle, wd);
  }

  stop(): void {
    if (this.#stopped) return;
    this.#stopped = true;
    loadNative().inotifyStop(this.#handle);
  }
}
