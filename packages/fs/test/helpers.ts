import { chmod, mkdtemp, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

import type { ExecutionContext } from "ava";

/** A fresh directory under /tmp (world-searchable, 0755), removed when the test ends. */
export const tempDir = async (t: ExecutionContext, prefix = "hsmfleet-fs-"): Promise<string> => {
  const dir = await mkdtemp(join("/tmp", prefix));
  await chmod(dir, 0o755);
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  return dir;
};

/** Path bytes `<dir>/<name>` where name may be any bytes but '/' and NUL. */
export const pathIn = (dir: string, name: Buffer | string): Buffer =>
  Buffer.concat([Buffer.from(dir), Buffer.from("/"), Buffer.from(name)]);

export const isRoot = process.getuid?.() === 0;

/**
 * An executable `lfs` STAND-IN (fixtures/lfs-standin.ts over the emulation backend; no Lustre
 * client can run here): a shell wrapper in `dir` that runs the compiled stand-in with node.
 */
export const lfsStandIn = async (dir: string): Promise<string> => {
  const script = fileURLToPath(new URL("./fixtures/lfs-standin.js", import.meta.url));
  const wrapper = join(dir, "lfs");
  await writeFile(wrapper, `#!/bin/sh\nexec "${process.execPath}" "${script}" "$@"\n`, {
    mode: 0o755,
  });
  return wrapper;
};
