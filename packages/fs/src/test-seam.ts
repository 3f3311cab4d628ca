/**
 * TEST SEAM — inert unless the environment variable HSMFLEET_TEST_PAUSE_BEFORE_OPEN is set.
 *
 * The path-safety tests (test/e2e/path-safety.test.ts) must swap a directory for a symlink at the
 * exact moment between a worker's decision to open an entry and the open itself. With
 *
 *   HSMFLEET_TEST_PAUSE_BEFORE_OPEN=<signal dir>:<relative path>
 *
 * the first open (read or create) of exactly <relative path> under a job root, in this process,
 * first creates `<signal dir>/paused` and then waits until `<signal dir>/resume` exists. The test
 * does its swap in between. Nothing else changes; without the variable this costs one boolean test.
 * Never set it in production: a worker would stall on that path.
 */
import { access, writeFile } from "node:fs/promises";
import { join } from "node:path";

/** Name of the test-seam variable (see the module comment). */
export const TEST_PAUSE_BEFORE_OPEN_ENV = "HSMFLEET_TEST_PAUSE_BEFORE_OPEN";

const parse = (): { dir: string; rel: Buffer } | undefined => {
  const value = process.env[TEST_PAUSE_BEFORE_OPEN_ENV];
  if (!value) return undefined;
  const colon = value.indexOf(":");
  if (colon <= 0 || colon === value.length - 1) return undefined;
  return { dir: value.slice(0, colon), rel: Buffer.from(value.slice(colon + 1)) };
};

let seam = parse();

/**
 * Whether the seam may still pause: callers on a per-file path test this first, so that without
 * the variable they do not even pay pauseBeforeOpenForTest's promise (issue 17).
 */
export const pauseBeforeOpenArmed = (): boolean => seam !== undefined;

/** Test seam: waits as described in the module comment when `rel` is the configured path. */
export const pauseBeforeOpenForTest = async (rel: Buffer): Promise<void> => {
  if (seam === undefined || !seam.rel.equals(rel)) return;
  const { dir } = seam;
  seam = undefined; // once per process
  await writeFile(join(dir, "paused"), rel);
  for (;;) {
    try {
      await access(join(dir, "resume"));
      return;
    } catch {
      await new Promise((r) => setTimeout(r, 20));
    }
  }
};
