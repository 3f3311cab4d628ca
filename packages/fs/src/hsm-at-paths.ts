/**
 * HSM backends by absolute path, for tests, benchmarks and tools that hold absolute paths of
 * their own making: every method of the backend with the (root, rel) pair replaced by one absolute
 * path (or an array of them). The root is "/" and the rest of the path is resolved beneath it like
 * any job path — no symlink followed anywhere, so every component must be a real directory (a
 * symlinked /tmp would be refused). Jobs never use this: they name files relative to their root.
 */
import type { HsmAttrs, HsmRequestName } from "@hsmfleet/core";

import type { DataSnapshot, HsmBackend, HsmRequestOptions } from "./hsm-backend.js";
import type { HsmEmulation } from "./hsm-emulation.js";
import { jobRootFor } from "./job-root.js";
import type { JobRoot } from "./job-root.js";

/** The methods of HsmBackend and of the emulation's copytool side, by absolute path. */
export interface HsmAtAbsolutePaths {
  readonly kind: HsmBackend["kind"];
  readonly xattr: string;
  state(path: Buffer): Promise<HsmAttrs | undefined>;
  fid(path: Buffer): Promise<string>;
  fids(paths: readonly Buffer[]): Promise<(string | Error)[]>;
  archive(path: Buffer, options?: HsmRequestOptions): Promise<void>;
  release(path: Buffer): Promise<boolean>;
  restore(path: Buffer): Promise<void>;
  remove(path: Buffer): Promise<void>;
  cancel(path: Buffer): Promise<void>;
  requestMany(
    request: HsmRequestName,
    paths: readonly Buffer[],
    options?: HsmRequestOptions,
  ): Promise<void>;
  requestRestore(paths: readonly Buffer[]): Promise<void>;
  setFlags(path: Buffer, set: number, clear: number, archiveId?: number): Promise<void>;
  importReleased(path: Buffer, size: number, archiveId: number): Promise<void>;
  markArchived(path: Buffer, archiveId: number): Promise<void>;
  /** Emulation only (HsmEmulationBackend). */
  releaseMany(paths: readonly Buffer[]): Promise<(boolean | Error)[]>;
  setState(path: Buffer, attrs: HsmAttrs): Promise<void>;
  isReleased(path: Buffer): Promise<boolean>;
  beginArchive(path: Buffer): Promise<DataSnapshot>;
  completeArchive(path: Buffer, archiveId: number, snapshot: DataSnapshot): Promise<void>;
  beginRestore(path: Buffer): Promise<boolean>;
  completeRestore(path: Buffer): Promise<void>;
}

/** `path` beneath "/" (its bytes without the leading slashes). */
const beneathSlash = (path: Buffer): Buffer => {
  let i = 0;
  while (i < path.length && path[i] === 0x2f) i++;
  return path.subarray(i);
};

const isPathList = (v: unknown): v is Buffer[] =>
  Array.isArray(v) && v.length > 0 && v.every((p) => Buffer.isBuffer(p));

/** `backend` by absolute path (see the module comment). */
export const hsmAtAbsolutePaths = (backend: HsmBackend | HsmEmulation): HsmAtAbsolutePaths =>
  new Proxy(backend, {
    get(target, property) {
      const value: unknown = Reflect.get(target, property, target);
      if (typeof value !== "function") return value;
      const method = value as (...a: unknown[]) => unknown;
      return async (...args: unknown[]) => {
        const root: JobRoot = await jobRootFor("/");
        const at = args.findIndex((a) => Buffer.isBuffer(a) || isPathList(a) || Array.isArray(a));
        if (at >= 0) {
          const a = args[at];
          const rel = Buffer.isBuffer(a) ? beneathSlash(a) : (a as Buffer[]).map(beneathSlash);
          args.splice(at, 1, root, rel);
        }
        return method.apply(target, args);
      };
    },
  }) as unknown as HsmAtAbsolutePaths;

/**
 * A path an admin gave on the command line (`hsmfleet hsm state|release … PATH`) as its parent
 * directory and its name: the parent is opened as a job root is — the admin's own path, resolved
 * as their shell would — and the name is used beneath it, never followed.
 */
export const parentAndName = async (path: Buffer): Promise<{ root: JobRoot; rel: Buffer }> => {
  let end = path.length;
  while (end > 1 && path[end - 1] === 0x2f) end--;
  const trimmed = path.subarray(0, end);
  const slash = trimmed.lastIndexOf(0x2f);
  const parent =
    slash < 0
      ? Buffer.from(process.cwd())
      : slash === 0
        ? Buffer.from("/")
        : trimmed.subarray(0, slash);
  return { root: await jobRootFor(parent), rel: Buffer.from(trimmed.subarray(slash + 1)) };
};
