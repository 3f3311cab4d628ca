/**
 * The writer of `npm run bench:sync`, in a process of its own so that its file system calls are
 * not counted as (nor compete in one event loop with) the sync service's:
 *   node sync-writer.js burst DIR PREFIX FILES          files as fast as they go, 200 at a time
 *   node sync-writer.js rate DIR PREFIX FILES_PER_TICK SECONDS   every 100 ms, for SECONDS
 * Prints one JSON line {"files", "seconds"} when done.
 */
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { performance } from "node:perf_hooks";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const [mode, dir, prefix, a, b] = process.argv.slice(2);
if (dir === undefined || prefix === undefined || a === undefined)
  throw new Error("usage: sync-writer burst|rate DIR PREFIX N [SECONDS]");
const start = performance.now();
let n = 0;
if (mode === "burst") {
  const files = Number(a);
  for (let i = 0; i < files; i += 200)
    await Promise.all(
      Array.from({ length: Math.min(200, files - i) }, (_, k) =>
        writeFile(join(dir, `${prefix}${i + k}`), `file ${i + k}\n`),
      ),
    );
  n = files;
} else if (mode === "rate") {
  const perTick = Number(a);
  const seconds = Number(b);
  while (performance.now() - start < seconds * 1000) {
    const tick = performance.now();
    await Promise.all(
      Array.from({ length: perTick }, () => writeFile(join(dir, `${prefix}${n++}`), "x\n")),
    );
    await sleep(Math.max(0, 100 - (performance.now() - tick)));
  }
} else throw new Error(`sync-writer: unknown mode ${mode}`);
console.log(JSON.stringify({ files: n, seconds: (performance.now() - start) / 1000 }));
