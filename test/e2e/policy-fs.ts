import { execFile } from "node:child_process";
import { mkdir, rm } from "node:fs/promises";
import { join } from "node:path";
import { promisify } from "node:util";
import type { ExecutionContext } from "ava";
import { tempDir } from "@hsmfleet/testkit";

const run = promisify(execFile);

/**
 * A file system of known size for watermark tests: tmpfs (`mount -t tmpfs -o size=…`, needs root),
 * else a loop-mounted ext4 image; always unmounted when the test ends. Undefined (with the reason)
 * when neither may be mounted here.
 */
export const mountSmallFs = async (
  t: ExecutionContext,
  sizeMiB: number,
): Promise<{ path: string; kind: string } | { skip: string }> => {
  const dir = await tempDir();
  t.teardown(() => dir.cleanup());
  const mnt = join(dir.path, "mnt");
  await mkdir(mnt);
  const errors: string[] = [];
  try {
    await run("mount", ["-t", "tmpfs", "-o", `size=${sizeMiB}m,mode=0755`, "tmpfs", mnt]);
    t.teardown(() => run("umount", ["-l", mnt]).then(() => undefined));
    return { path: mnt, kind: "tmpfs" };
  } catch (err) {
    errors.push(`tmpfs: ${(err as Error).message.trim()}`);
  }
  try {
    const img = join(dir.path, "fs.img");
    await run("truncate", ["-s", `${sizeMiB}M`, img]);
    await run("mkfs.ext4", ["-q", "-F", img]);
    await run("mount", ["-o", "loop,user_xattr", img, mnt]);
    t.teardown(async () => {
      await run("umount", ["-l", mnt]).catch(() => undefined);
      await rm(img, { force: true });
    });
    return { path: mnt, kind: "ext4 (loop)" };
  } catch (err) {
    errors.push(`loop ext4: ${(err as Error).message.trim()}`);
  }
  return { skip: `no file system of known size can be mounted here (${errors.join("; ")})` };
};
