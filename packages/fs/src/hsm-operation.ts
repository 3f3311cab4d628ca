/**
 * Errors of HSM operations name the operation: a file reached beneath a job root fails inside
 * JobRoot with the system call's name ("unsafe path /r/alice/x: is a symlink (not followed;
 * getxattr /r/alice/x/f refused)"); the HSM backends put the operation asked for in front
 * ("archive of /r/alice/x/f refused: unsafe path …"), so a job's error log says what was refused,
 * where, and why.
 */
import { UnsafePathError } from "./beneath-path.js";
import type { JobRoot } from "./job-root.js";

/** The message an unsafe-path error had before an operation was put in front of it. */
const bare = new WeakMap<UnsafePathError, string>();

/**
 * `err` with "<operation> of <path> refused: " in front when it is an unsafe path. The outermost
 * operation wins (an archive's state read names the archive, not the state read).
 */
export const namedForOperation = (
  operation: string,
  root: JobRoot,
  rel: Buffer,
  err: unknown,
): unknown => {
  if (err instanceof UnsafePathError) {
    const message = bare.get(err) ?? err.message;
    bare.set(err, message);
    err.message = `${operation} of ${root.display(rel)} refused: ${message}`;
  }
  return err;
};

type FileMethod = (root: JobRoot, rel: Buffer, ...rest: never[]) => Promise<unknown>;

/**
 * Wraps the (root, rel, …) methods `operations` names (method → operation) of `prototype` so that
 * their errors name the operation (namedForOperation).
 */
export const nameOperationErrors = (
  prototype: object,
  operations: Record<string, string>,
): void => {
  for (const [method, operation] of Object.entries(operations)) {
    const original = (prototype as Record<string, FileMethod>)[method];
    if (typeof original !== "function") throw new TypeError(`no method ${method}`);
    Object.defineProperty(prototype, method, {
      configurable: true,
      writable: true,
      value: async function (this: unknown, root: JobRoot, rel: Buffer, ...rest: never[]) {
        try {
          return await original.call(this, root, rel, ...rest);
        } catch (err) {
          throw namedForOperation(operation, root, rel, err);
        }
      },
    });
  }
};

/** Operation names of the HSM backends' per-file methods (as lfs calls them where it has them). */
export const HSM_FILE_OPERATIONS: Record<string, string> = {
  state: "hsm_state",
  fid: "path2fid",
  archive: "archive",
  release: "release",
  restore: "restore",
  remove: "remove",
  cancel: "cancel",
  setFlags: "hsm_set",
  importReleased: "hsm_import",
  markArchived: "hsm_set",
};
