import { chmod, lstat, mkdtemp, readdir, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";

export interface TempDir {
  path: string;
  /** rm -rf; restores permissions on chmod 000 subdirectories first. Idempotent. */
  cleanup(): Promise<void>;
}

/** Make every directory under `dir` traversable and writable by its owner again. */
const unlockTree = async (dir: Buffer): Promise<void> => {
  try {
    await chmod(dir, 0o700);
  } catch {
    return;
  }
  let names: Buffer[];
  try {
    names = await readdir(dir, { encoding: "buffer" });
  } catch {
    return;
  }
  for (const name of names) {
    const child = Buffer.concat([dir, Buffer.from("/"), name]);
    try {
      if ((await lstat(child)).isDirectory()) await unlockTree(child);
    } catch {
      // vanished
    }
  }
};

/** Remove a directory tree, tolerating non-UTF-8 names and chmod 000 subdirectories. */
export const removeTree = async (path: string): Promise<void> => {
  try {
    await rm(path, { recursive: true, force: true });
    return;
  } catch {
    // fall through: probably EACCES somewhere below (non-root)
  }
  await unlockTree(Buffer.from(path));
  await rm(path, { recursive: true, force: true });
};

/**
 * A fresh directory under os.tmpdir(), mode 0755 so a child process running as another uid
 * (e.g. 65534) can traverse it.
 */
export async function tempDir(prefix = "hsmfleet-"): Promise<TempDir> {
  const path = await mkdtemp(join(tmpdir(), prefix));
  await chmod(path, 0o755);
  let cleaned: Promise<void> | undefined;
  return {
    path,
    cleanup: () => (cleaned ??= removeTree(path)),
  };
}
