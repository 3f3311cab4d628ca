/**
 * Runs the `lfs` binary (the lustre backend's only way to Lustre's HSM requests) and turns its
 * failures into errors that name the operation, the file(s) and lfs's own message. Extra file
 * descriptors can be handed to the child (`fds`: they become its fds 3, 4, …), so that lfs can be
 * given `/proc/self/fd/3/<name>`: a directory this process opened beneath a job root, reached
 * through its magic link, never by a path a user could redirect.
 */
import { spawn } from "node:child_process";

import { DependencyError, FsOperationError, errorCode, errorMessage } from "@hsmfleet/core";

/** Output kept at most (stdout and stderr each); lfs path2fid over many paths stays far below. */
const MAX_OUTPUT_BYTES = 64 * 1024 * 1024;

export interface LfsRun {
  /** lfs binary. */
  lfsPath: string;
  argv: string[];
  /** Operation for messages, e.g. "hsm_release". */
  operation: string;
  /** The file named in messages (display form), and how many more the command covers. */
  shown: string;
  count?: number | undefined;
  /** Descriptors handed to the child as its fds 3, 4, … (kept open by the caller meanwhile). */
  fds?: number[] | undefined;
}

/** Runs lfs; resolves its stdout (bytes), rejects with DependencyError or FsOperationError. */
export const runLfs = (run: LfsRun): Promise<Buffer> =>
  new Promise((resolve, reject) => {
    const child = spawn(run.lfsPath, run.argv, {
      stdio: ["ignore", "pipe", "pipe", ...(run.fds ?? [])],
    });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    let outBytes = 0;
    let errBytes = 0;
    child.stdout!.on("data", (d: Buffer) => {
      outBytes += d.length;
      if (outBytes <= MAX_OUTPUT_BYTES) out.push(d);
    });
    child.stderr!.on("data", (d: Buffer) => {
      errBytes += d.length;
      if (errBytes <= MAX_OUTPUT_BYTES) err.push(d);
    });
    let failed: Error | undefined;
    child.on("error", (e) => (failed = e));
    child.on("close", (code, signal) => {
      const where =
        (run.count ?? 1) > 1 ? `${run.shown} and ${(run.count ?? 1) - 1} more` : run.shown;
      if (failed) {
        const c = errorCode(failed);
        reject(
          c === "ENOENT" || c === "EACCES"
            ? new DependencyError(
                `cannot run ${run.lfsPath} (${c}); install the Lustre client or pass --lfs <path>`,
                { cause: failed },
              )
            : new FsOperationError(`lfs ${run.operation}`, where, c, errorMessage(failed), failed),
        );
        return;
      }
      if (code === 0) {
        resolve(Buffer.concat(out));
        return;
      }
      const text = Buffer.concat(err).toString("utf8").trim();
      reject(
        new FsOperationError(
          `lfs ${run.operation}`,
          where,
          signal ? `signal ${signal}` : `exit ${code}`,
          text || `${run.lfsPath} failed`,
        ),
      );
    });
  });
