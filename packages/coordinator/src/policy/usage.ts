import { execFile } from "node:child_process";
import { statfs } from "node:fs/promises";
import { promisify } from "node:util";
import type { PolicySettings, UsageTrigger } from "@hsmfleet/core";

const execFileAsync = promisify(execFile);

/** Space used on one target: the file system, or one OST. */
export interface UsageSample {
  /** `filesystem`, or the OST's name (`lustre-OST0001`). */
  target: string;
  /** Bytes in use and bytes usable (used + available to users, as `df` counts Use%). */
  usedBytes: number;
  capacityBytes: number;
  percent: number;
}

const sample = (target: string, used: number, available: number): UsageSample => {
  const capacity = used + available;
  return {
    target,
    usedBytes: used,
    capacityBytes: capacity,
    percent: capacity > 0 ? (used * 100) / capacity : 0,
  };
};

/** The file system holding `root`, by statfs (as `df`: used = blocks − free, Use% over used + avail). */
export const fileSystemUsage = async (root: string): Promise<UsageSample> => {
  let s;
  try {
    s = await statfs(root);
  } catch (err) {
    throw new Error(`statfs ${root} failed: ${(err as Error).message}`, { cause: err });
  }
  return sample("filesystem", (s.blocks - s.bfree) * s.bsize, s.bavail * s.bsize);
};

/**
 * Each OST of the Lustre file system holding `root`, from `lfs df` (1K-blocks, Used, Available):
 * `lustre-OST0000_UUID  3771392  1280  3565056  1% /mnt/lustre[OST:0]`.
 */
export const parseLfsDf = (text: string): UsageSample[] => {
  const out: UsageSample[] = [];
  for (const line of text.split("\n")) {
    const m = /^(\S+?)(?:_UUID)?\s+(\d+)\s+(\d+)\s+(\d+)\s+\d+%\s+\S+\[OST:\d+\]\s*$/.exec(line);
    if (m) out.push(sample(m[1]!, Number(m[3]) * 1024, Number(m[4]) * 1024));
  }
  return out;
};

export const ostUsage = async (root: string, lfsPath: string): Promise<UsageSample[]> => {
  let stdout: string;
  try {
    ({ stdout } = await execFileAsync(lfsPath, ["df", root], { maxBuffer: 16 << 20 }));
  } catch (err) {
    throw new Error(`${lfsPath} df ${root} failed: ${(err as Error).message}`, { cause: err });
  }
  const osts = parseLfsDf(stdout);
  if (osts.length === 0) throw new Error(`${lfsPath} df ${root} listed no OST`);
  return osts;
};

/**
 * What a usage trigger measures: each OST (`lfs df`, on the lustre backend), or the file system
 * (statfs; also what `of: ost` measures on a file system that has no OSTs).
 */
export const measureUsage = async (
  root: string,
  trigger: UsageTrigger,
  settings: PolicySettings,
): Promise<UsageSample[]> =>
  trigger.of === "ost" && settings.backend === "lustre"
    ? ostUsage(root, settings.lfsPath)
    : [await fileSystemUsage(root)];

/** Bytes to free on the fullest target above the high watermark to bring it to the low one. */
export const bytesToFree = (samples: UsageSample[], trigger: UsageTrigger): number => {
  let most = 0;
  for (const s of samples)
    if (s.percent > trigger.highPercent)
      most = Math.max(most, s.usedBytes - (trigger.lowPercent / 100) * s.capacityBytes);
  return Math.ceil(most);
};

/** Bytes still above the low watermark on the fullest target (0 when every one is under it). */
export const bytesAboveLow = (samples: UsageSample[], trigger: UsageTrigger): number => {
  let most = 0;
  for (const s of samples)
    most = Math.max(most, s.usedBytes - (trigger.lowPercent / 100) * s.capacityBytes);
  return Math.ceil(most);
};
