/**
 * Speed check for the native directory reader (not a test: ava only runs *.test.js). Walks a tree
 * with openDir, recursing into directories with a bounded number of directories in flight, and
 * prints entries/s. Compare with:
 *   time find DIR -printf '%s %T@ %m %U %G %p\n' >/dev/null
 *
 * usage (after npm run build in packages/fs):
 *   node packages/fs/dist/test/bench-readdir.js DIR [--xattr trusted.hsm] [--batch 4096]
 *        [--concurrency 8] [--runs 3]
 */
import { EntryType } from "@hsmfleet/core";

import { openDir } from "../src/index.js";

interface WalkResult {
  entries: number;
  bytes: number;
  errors: number;
}

const SLASH = Buffer.from("/");

const walk = async (
  root: Buffer,
  opts: { hsmXattr: string | undefined; batchSize: number; concurrency: number },
): Promise<WalkResult> => {
  const pending: Buffer[] = [root];
  const result: WalkResult = { entries: 0, bytes: 0, errors: 0 };

  const scan = async (dir: Buffer): Promise<void> => {
    const reader = await openDir(dir, { hsmXattr: opts.hsmXattr, batchSize: opts.batchSize });
    try {
      for (let batch = await reader.read(); batch !== null; batch = await reader.read()) {
        for (const e of batch) {
          result.entries++;
          result.bytes += e.size;
          if (e.error) result.errors++;
          if (e.type === EntryType.Directory) pending.push(Buffer.concat([dir, SLASH, e.name]));
        }
      }
    } finally {
      await reader.close();
    }
  };

  // Up to `concurrency` directories in flight; done when nothing is pending or running.
  return new Promise<WalkResult>((resolve, reject) => {
    let active = 0;
    const pump = (): void => {
      while (active < opts.concurrency) {
        const dir = pending.pop();
        if (dir === undefined) break;
        active++;
        scan(dir).then(() => {
          active--;
          if (pending.length === 0 && active === 0) resolve(result);
          else pump();
        }, reject);
      }
    };
    pump();
  });
};

const main = async (): Promise<void> => {
  const args = process.argv.slice(2);
  const option = (name: string): string | undefined => {
    const i = args.indexOf(name);
    if (i < 0) return undefined;
    const value = args[i + 1];
    args.splice(i, 2);
    return value;
  };
  const hsmXattr = option("--xattr");
  const batchSize = Number(option("--batch") ?? "4096");
  const concurrency = Number(option("--concurrency") ?? "8");
  const runs = Number(option("--runs") ?? "3");
  const root = args[0];
  if (root === undefined) {
    console.error(
      "usage: bench-readdir.js DIR [--xattr NAME] [--batch N] [--concurrency N] [--runs N]",
    );
    process.exitCode = 2;
    return;
  }
  for (let run = 1; run <= runs; run++) {
    const start = process.hrtime.bigint();
    const r = await walk(Buffer.from(root), { hsmXattr, batchSize, concurrency });
    const seconds = Number(process.hrtime.bigint() - start) / 1e9;
    console.log(
      `run ${run}: ${r.entries} entries in ${seconds.toFixed(3)} s = ` +
        `${Math.round(r.entries / seconds)} entries/s (${r.bytes} bytes, ${r.errors} entry errors, ` +
        `batch ${batchSize}, concurrency ${concurrency}${hsmXattr ? `, xattr ${hsmXattr}` : ""})`,
    );
  }
};

await main();
