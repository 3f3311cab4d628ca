/**
 * Child-process helpers for benchmarks: a registry that kills every child on the way out, /proc
 * samplers for peak RSS and CPU time, and small statistics.
 */
import { execFileSync, spawn, spawnSync } from "node:child_process";
import type { ChildProcess, SpawnOptions } from "node:child_process";
import { readFileSync, readdirSync, readlinkSync, statSync, writeFileSync } from "node:fs";
import { mkdir, rename, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { basename, join } from "node:path";

// ---------------------------------------------------------------------------------------------
// Children

const children = new Set<ChildProcess>();
const closing = new WeakMap<ChildProcess, Promise<Exit>>();

const isRunning = (child: ChildProcess): boolean =>
  child.exitCode === null && child.signalCode === null;

/** SIGKILL every child still running (synchronous: safe in "exit" and signal handlers). */
export const killAllChildren = (): void => {
  for (const child of children) {
    if (isRunning(child)) {
      try {
        child.kill("SIGKILL");
      } catch {
        // already gone
      }
    }
  }
  children.clear();
};

let exitHookInstalled = false;

/** spawn() whose child is SIGKILLed if this process exits while it runs. */
export const spawnTracked = (
  command: string,
  args: readonly string[],
  options: SpawnOptions,
): ChildProcess => {
  if (!exitHookInstalled) {
    exitHookInstalled = true;
    process.on("exit", killAllChildren);
  }
  const child = spawn(command, args, options);
  children.add(child);
  child.once("exit", () => children.delete(child));
  const done = new Promise<Exit>((resolve, reject) => {
    child.once("error", (err) => {
      children.delete(child);
      reject(err);
    });
    child.once("close", (code: number | null, signal: NodeJS.Signals | null) =>
      resolve({ code, signal }),
    );
  });
  done.catch(() => undefined); // reported to whoever awaits closed()
  closing.set(child, done);
  return child;
};

export interface Exit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

/** Resolves when a child from spawnTracked() has exited and its stdio is closed; rejects if it could not start. */
export const closed = (child: ChildProcess): Promise<Exit> => {
  const done = closing.get(child);
  if (done === undefined) throw new Error("closed(): not a spawnTracked() child");
  return done;
};

/** SIGTERM, then SIGKILL after `graceMs`; resolves once the child is gone and its stdio closed. */
export const stopChild = async (child: ChildProcess, graceMs = 10_000): Promise<Exit> => {
  const done = closed(child).catch((): Exit => ({ code: null, signal: null }));
  if (isRunning(child)) child.kill("SIGTERM");
  const timer = setTimeout(() => {
    if (isRunning(child)) child.kill("SIGKILL");
  }, graceMs);
  try {
    return await done;
  } finally {
    clearTimeout(timer);
  }
};

/** Keeps the last `max` lines a stream produced, and lets callers wait for a matching line. */
export class LineTail {
  readonly lines: string[] = [];
  #partial = "";
  #waiters: Array<{ test: (line: string) => boolean; resolve: (line: string) => void }> = [];

  constructor(
    stream: NodeJS.ReadableStream | null,
    private readonly max = 200,
  ) {
    stream?.on("data", (chunk: Buffer) => this.#push(chunk.toString()));
  }

  #push(text: string): void {
    const parts = (this.#partial + text).split("\n");
    this.#partial = parts.pop() ?? "";
    for (const line of parts) {
      this.lines.push(line);
      if (this.lines.length > this.max) this.lines.shift();
      this.#waiters = this.#waiters.filter((w) => {
        if (!w.test(line)) return true;
        w.resolve(line);
        return false;
      });
    }
  }

  text(): string {
    return [...this.lines, this.#partial].join("\n").trim();
  }

  /** The first line (from now on) that satisfies `test`. */
  next(test: (line: string) => boolean): Promise<string> {
    return new Promise((resolve) => this.#waiters.push({ test, resolve }));
  }
}

// ---------------------------------------------------------------------------------------------
// /proc

let clockTicks: number | undefined;

const ticksPerSecond = (): number => {
  if (clockTicks === undefined) {
    try {
      clockTicks = Number(execFileSync("getconf", ["CLK_TCK"], { encoding: "utf8" }).trim());
    } catch {
      clockTicks = 100;
    }
    if (!Number.isFinite(clockTicks) || clockTicks <= 0) clockTicks = 100;
  }
  return clockTicks;
};

/** User + system CPU seconds of a live process, or undefined when it is gone. */
export const cpuSeconds = (pid: number, tid?: number): number | undefined => {
  let stat: string;
  try {
    // With `tid`: that thread's alone (tid = pid: the main thread; the rest are libuv's and V8's).
    stat = readFileSync(
      tid === undefined ? `/proc/${pid}/stat` : `/proc/${pid}/task/${tid}/stat`,
      "utf8",
    );
  } catch {
    return undefined;
  }
  // Fields after "(comm)": [0] state (field 3) … [11] utime (field 14), [12] stime (field 15).
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  const utime = Number(fields[11]);
  const stime = Number(fields[12]);
  if (!Number.isFinite(utime) || !Number.isFinite(stime)) return undefined;
  return (utime + stime) / ticksPerSecond();
};

/**
 * Whether `hsmfleet` (the launcher at `cliBin`) runs the one-file bundle: a package rebuilt alone
 * after it makes the launcher fall back to the compiled modules (~0.8 s more per command), which
 * a benchmark of the command must not measure by mistake. Read from the launcher's startup trace.
 */
export const cliRunsBundle = (cliBin: string): boolean => {
  const r = spawnSync(process.execPath, [cliBin, "--help"], {
    env: { ...process.env, HSMFLEET_STARTUP_TRACE: "1" },
    encoding: "utf8",
  });
  return r.stderr.includes('"bundle-compiled"');
};

/**
 * Writes back every dirty page (`sync`) before a measured run: a run that leaves 2 GiB in the page
 * cache (a large-file side) otherwise makes the next side pay for their writeback — the kernel's
 * flusher threads on the same CPUs, and the dirty limits throttling its own writes. Unmeasured;
 * its seconds are returned for the log.
 */
export const settleWrites = (): number => {
  const t0 = performance.now();
  spawnSync("sync", { stdio: "ignore" });
  return (performance.now() - t0) / 1000;
};

/** Where the benches note when they last deleted many files (see awaitFreedInodes). */
const DELETES_NOTE = join(tmpdir(), "hsmfleet-bench-deleted");
/**
 * ext4's RECENTCY_MIN + RECENTCY_DIRTY (fs/ext4/ialloc.c), 360 s, and a margin: the creates of a
 * bench dirty the very inode-table blocks that hold the freed inodes, which keeps them "recent"
 * for the longer window even after a `sync` (measured: 60 s after a synced delete of 40,000
 * files, `recently_deleted` was still 34 % of the importing command's samples).
 */
const FREED_INODE_WAIT_MS = 370_000;

/**
 * Notes that a bench has just deleted many files (after its `rm`): `sync` and the time, for the
 * next bench's awaitFreedInodes.
 */
export const noteDeletes = (note = DELETES_NOTE): void => {
  spawnSync("sync", { stdio: "ignore" });
  try {
    writeFileSync(note, `${Date.now()}\n`);
  } catch {
    // Only a hint for the next bench.
  }
};

/** Where benches leave the trees they made, instead of deleting them at once (see retireTree). */
const TRASH_DIR = join(tmpdir(), "hsmfleet-bench-trash");
/** Entries the trash may hold before a bench empties it (~1.6 GB of 4 KiB files). */
const TRASH_MAX_ENTRIES = 400_000;

/** Entries in a tree (files, directories, links), counted without following links. */
const countEntries = (dir: string): number => {
  let n = 0;
  const stack = [dir];
  while (stack.length > 0) {
    const d = stack.pop()!;
    let list;
    try {
      list = readdirSync(d, { withFileTypes: true });
    } catch {
      continue;
    }
    n += list.length;
    for (const e of list) if (e.isDirectory()) stack.push(join(d, e.name));
  }
  return n;
};

/**
 * Removes a tree a bench made, without making the next bench pay for it: on a journal-less ext4
 * (awaitFreedInodes) the tree is moved into a trash directory beside the others (a rename frees no
 * inode), which is emptied — and the time noted, so the next bench waits — only once it holds
 * more than TRASH_MAX_ENTRIES; elsewhere, or when it cannot be moved there (another file system),
 * it is deleted at once. `o` is for its test.
 */
export const retireTree = async (
  dir: string,
  o: { trash?: string; maxEntries?: number; note?: string; journalLess?: boolean } = {},
): Promise<"moved" | "deleted" | "emptied"> => {
  const trash = o.trash ?? TRASH_DIR;
  const note = o.note ?? DELETES_NOTE;
  const gone = async (): Promise<"deleted"> => {
    await rm(dir, { recursive: true, force: true });
    noteDeletes(note);
    return "deleted";
  };
  if (!(o.journalLess ?? onJournalLessExt4(dir))) return gone();
  const entries = countEntries(dir) + 1;
  const countFile = join(trash, ".entries");
  try {
    await mkdir(trash, { recursive: true });
    await rename(
      dir,
      join(trash, `${Date.now()}-${process.pid}-${Math.random().toString(36).slice(2)}`),
    );
  } catch {
    return gone();
  }
  let held = entries;
  try {
    held += Number(readFileSync(countFile, "utf8").trim()) || 0;
  } catch {
    // A new trash.
  }
  if (held <= (o.maxEntries ?? TRASH_MAX_ENTRIES)) {
    writeFileSync(countFile, `${held}\n`);
    return "moved";
  }
  await rm(trash, { recursive: true, force: true });
  noteDeletes(note);
  return "emptied";
};

/**
 * Whether `dir` is on ext4 without a journal: /sys/fs/ext4/<device>/journal_task reads "<none>"
 * (the device found through /sys/dev/block/<major>:<minor>). False when anything is unknown.
 */
export const onJournalLessExt4 = (dir: string): boolean => {
  try {
    const dev = statSync(dir, { bigint: true }).dev;
    // Linux's new_encode_dev layout of st_dev.
    const major = Number(((dev >> 8n) & 0xfffn) | ((dev >> 32n) & ~0xfffn));
    const minor = Number((dev & 0xffn) | ((dev >> 12n) & ~0xffn));
    const name = basename(readlinkSync(`/sys/dev/block/${major}:${minor}`));
    return readFileSync(`/sys/fs/ext4/${name}/journal_task`, "utf8").trim() === "<none>";
  } catch {
    return false;
  }
};

/**
 * Waits, unmeasured, until freed inodes can be reused on a journal-less ext4. Without a journal,
 * ext4 does not reuse an inode freed less than 60 s ago (360 s while its inode-table block is not
 * yet written; `recently_deleted` in fs/ext4/ialloc.c): every create in that block group scans past
 * them, and a bench creating 10,000 files after another deleted as many paid 2–3 s more kernel
 * time per 10,000 files (`find_inode_bit` → `recently_deleted`: 34 % of the importing command's
 * samples; the development VM's root file system has no journal), so one bench soon after another
 * measured the file system, not the sides. Waits until FREED_INODE_WAIT_MS after the last
 * noteDeletes, only on such a file system; HSMFLEET_BENCH_INODE_WAIT=0 skips it. Returns the ms
 * waited. The benches leave their trees to retireTree, so this wait is rare.
 */
export const awaitFreedInodes = async (
  dir: string,
  log: (line: string) => void,
  /** For its test: the note's path, the wait, and the file system's kind. */
  o: { note?: string; waitMs?: number; journalLess?: boolean } = {},
): Promise<number> => {
  if (process.env["HSMFLEET_BENCH_INODE_WAIT"] === "0") return 0;
  if (!(o.journalLess ?? onJournalLessExt4(dir))) return 0;
  let last: number;
  try {
    last = Number(readFileSync(o.note ?? DELETES_NOTE, "utf8").trim());
  } catch {
    return 0;
  }
  const wait = last + (o.waitMs ?? FREED_INODE_WAIT_MS) - Date.now();
  if (!Number.isFinite(wait) || wait <= 0) return 0;
  log(
    `waiting ${(wait / 1000).toFixed(0)} s: an earlier bench deleted many files on this journal-less ext4, which reuses no freed inode for up to 360 s and makes every create scan past them (HSMFLEET_BENCH_INODE_WAIT=0 skips)`,
  );
  await new Promise((resolve) => setTimeout(resolve, wait));
  return wait;
};

/**
 * Throws unless `cliBin` runs its bundle: a bench measures what a user runs, and a package compiled
 * on its own after the bundle makes the launcher run the compiled modules (0.3–0.8 s slower per
 * command) without a word.
 */
export const requireBundle = (cliBin: string): void => {
  if (!cliRunsBundle(cliBin))
    throw new Error(
      `${cliBin} runs the compiled modules, not the bundle (a package was rebuilt after it): run \`npm run build\` first`,
    );
};

/**
 * CPU seconds (user + system) of this process's children that have exited and been waited for
 * (/proc/self/stat cutime + cstime): read before and after one child runs alone, the exact CPU of
 * that child and its own waited-for children, where a sampler misses its last moments.
 */
export const exitedChildrenCpuSeconds = (): number => {
  const stat = readFileSync("/proc/self/stat", "utf8");
  // Fields after "(comm)": [13] cutime (field 16), [14] cstime (field 17).
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return (Number(fields[13]) + Number(fields[14])) / ticksPerSecond();
};

/** VmHWM (peak RSS) and VmRSS in bytes, or undefined when the process is gone. */
export const memoryOf = (pid: number): { peakRss: number; rss: number } | undefined => {
  let status: string;
  try {
    status = readFileSync(`/proc/${pid}/status`, "utf8");
  } catch {
    return undefined;
  }
  const kib = (key: string): number => {
    const m = new RegExp(`^${key}:\\s+(\\d+) kB`, "m").exec(status);
    return m ? Number(m[1]) * 1024 : 0;
  };
  return { peakRss: kib("VmHWM"), rss: kib("VmRSS") };
};

export interface ProcSample {
  /** Largest VmHWM (and VmRSS) seen. */
  peakRssBytes: number;
  /** CPU seconds at the last successful sample (≤ one interval before exit). */
  cpuSeconds: number;
  samples: number;
}

/** Polls /proc/<pid> every `intervalMs` until stopped; keeps the peak RSS and the latest CPU time. */
export class ProcSampler {
  readonly #pid: number;
  readonly #timer: NodeJS.Timeout;
  #peak = 0;
  #cpu = 0;
  #samples = 0;

  constructor(pid: number, intervalMs = 50) {
    this.#pid = pid;
    this.sample();
    this.#timer = setInterval(() => this.sample(), intervalMs);
    this.#timer.unref(); // never what keeps a benchmark process alive
  }

  sample(): void {
    const mem = memoryOf(this.#pid);
    const cpu = cpuSeconds(this.#pid);
    if (mem === undefined || cpu === undefined) return;
    this.#peak = Math.max(this.#peak, mem.peakRss, mem.rss);
    this.#cpu = cpu;
    this.#samples++;
  }

  stop(): ProcSample {
    clearInterval(this.#timer);
    return { peakRssBytes: this.#peak, cpuSeconds: this.#cpu, samples: this.#samples };
  }
}

// ---------------------------------------------------------------------------------------------
// Statistics and formatting

export const median = (values: readonly number[]): number => {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
};

export const best = (values: readonly number[]): number =>
  values.length === 0 ? Number.NaN : Math.max(...values);

export const int = (v: number): string => Math.round(v).toLocaleString("en-US");

export const mib = (bytes: number): string => `${(bytes / 1048576).toFixed(0)} MiB`;
