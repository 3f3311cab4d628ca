/**
 * Process-wide registry of the server processes and temp dirs the fixtures own, so a test
 * process that crashes, forgets a teardown or is SIGTERMed by ava never leaks servers.
 */
import type { ChildProcess } from "node:child_process";
import { rmSync } from "node:fs";

const children = new Set<ChildProcess>();
const dirs = new Set<string>();
let installed = false;

const isRunning = (child: ChildProcess): boolean =>
  child.exitCode === null && child.signalCode === null;

const killAllNow = (): void => {
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
  for (const dir of dirs) {
    try {
      rmSync(dir, { recursive: true, force: true });
    } catch {
      // best effort on the way out
    }
  }
  dirs.clear();
};

const onSignal = (signal: NodeJS.Signals): void => {
  killAllNow();
  // `once` already removed this listener: if nobody else handles the signal, restore its
  // default action (terminate) by raising it again.
  if (process.listenerCount(signal) === 0) process.kill(process.pid, signal);
};

const install = (): void => {
  if (installed) return;
  installed = true;
  process.on("exit", killAllNow);
  process.once("SIGTERM", onSignal);
  process.once("SIGINT", onSignal);
  process.once("SIGHUP", onSignal);
};

/** Track a child; it is SIGKILLed if this process exits (or is signalled) while it runs. */
export const trackChild = (child: ChildProcess): void => {
  install();
  children.add(child);
  child.once("exit", () => children.delete(child));
};

export const untrackChild = (child: ChildProcess): void => {
  children.delete(child);
};

/** Track a temp dir to remove (best effort) if this process exits before the fixture stops. */
export const trackDir = (dir: string): void => {
  install();
  dirs.add(dir);
};

export const untrackDir = (dir: string): void => {
  dirs.delete(dir);
};

/** Resolves once the child has exited (immediately if it already has). */
export const exited = (child: ChildProcess): Promise<void> =>
  new Promise((resolve) => {
    if (child.pid === undefined || !isRunning(child)) {
      resolve();
      return;
    }
    child.once("exit", () => resolve());
  });

/** Don't let a forgotten fixture keep the test process alive; the exit hook kills it. */
export const unrefChild = (child: ChildProcess): void => {
  child.unref();
  for (const stream of [child.stdout, child.stderr]) {
    const s = stream as (NodeJS.ReadableStream & { unref?: () => void }) | null;
    s?.unref?.();
  }
};

/**
 * SIGTERM, wait up to `graceMs`, then SIGKILL and wait. The pending timer keeps the event loop
 * alive while waiting even though the child itself is unref'd.
 */
export const terminate = async (child: ChildProcess, graceMs = 5000): Promise<void> => {
  if (child.pid === undefined || !isRunning(child)) {
    untrackChild(child);
    return;
  }
  const done = exited(child);
  child.kill("SIGTERM");
  let timer: NodeJS.Timeout | undefined;
  const timedOut = await Promise.race([
    done.then(() => false),
    new Promise<boolean>((resolve) => {
      timer = setTimeout(() => resolve(true), graceMs);
    }),
  ]);
  clearTimeout(timer);
  if (timedOut && isRunning(child)) {
    child.kill("SIGKILL");
    const keepAlive = setInterval(() => undefined, 1000);
    try {
      await done;
    } finally {
      clearInterval(keepAlive);
    }
  }
  untrackChild(child);
};

/** Ring buffer of the last `max` output lines of a child, for failure messages. */
export class LineLog {
  private readonly lines: string[] = [];
  private partial = "";

  constructor(private readonly max = 200) {}

  push(chunk: Buffer | string): void {
    const text = this.partial + chunk.toString();
    const parts = text.split("\n");
    this.partial = parts.pop() ?? "";
    for (const line of parts) this.add(line);
  }

  add(line: string): void {
    this.lines.push(line);
    if (this.lines.length > this.max) this.lines.splice(0, this.lines.length - this.max);
  }

  text(): string {
    const all = this.partial.length > 0 ? [...this.lines, this.partial] : this.lines;
    return all.join("\n");
  }
}

export const sleep = (ms: number): Promise<void> =>
  new Promise((resolve) => setTimeout(resolve, ms));
