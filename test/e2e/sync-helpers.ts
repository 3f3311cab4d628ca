import type { ChildProcess } from "node:child_process";
import type { ExecutionContext } from "ava";
import { ensureSyncTopology } from "@hsmfleet/bus";
import type { NatsConnection } from "@hsmfleet/bus";
import { readSyncStatus } from "@hsmfleet/coordinator";
import type { SyncStatusRecord } from "@hsmfleet/coordinator";
import { exitOf, spawnCli } from "./helpers.js";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A `hsmfleet sync` child process and everything it wrote to stderr so far. */
export interface SyncServiceProcess {
  child: ChildProcess;
  stderr: () => string;
}

/**
 * Starts `hsmfleet sync` as a child process (no in-process workers), logging at `info` so that a
 * failed wait can show what the service did; SIGKILLed if still running at the end.
 */
export const spawnSync = (
  t: ExecutionContext,
  url: string,
  storage: string,
  args: string[],
): SyncServiceProcess => {
  const child = spawnCli(["--nats", url, "--storage", storage, "--workers", "0", "sync", ...args], {
    env: { HSMFLEET_LOG_LEVEL: process.env.HSMFLEET_SYNC_TEST_LOG_LEVEL ?? "info" },
  });
  let stderr = "";
  child.stderr?.on("data", (d: Buffer) => (stderr += d.toString()));
  t.teardown(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
  });
  return { child, stderr: () => stderr };
};

/** The service's status as it last saved it. */
export const syncStatus = async (
  nc: NatsConnection,
  name: string,
): Promise<SyncStatusRecord | undefined> =>
  readSyncStatus((await ensureSyncTopology(nc)).state, name);

/** The last `bytes` of a service's stderr, for a failure message. */
const tailOf = (text: string, bytes = 8_192): string =>
  text.length <= bytes ? text : `…${text.slice(text.length - bytes)}`;

/**
 * Waits until the service has applied everything read after `sinceMs` (nothing pending, saved
 * after that time) and, with `deletes`, no deletion waits any more. `service` is the process (or
 * a getter, when the test restarts it): when the wait fails — the deadline passed or the service
 * exited — the error says what was waited for, which conditions did not hold, the last status
 * read, the last error reading it, and the service's stderr. A status that cannot be read for a
 * while (a busy machine) is polled again until the deadline, not a failure.
 */
export const waitInStep = async (
  nc: NatsConnection,
  name: string,
  sinceMs: number,
  options: {
    service: SyncServiceProcess | (() => SyncServiceProcess);
    deletes?: boolean;
    timeoutMs?: number;
    /** The source's checkpoint must have reached this record. */
    checkpoint?: { source: string; index: number };
  },
): Promise<SyncStatusRecord> => {
  const timeoutMs = options.timeoutMs ?? 120_000;
  const started = Date.now();
  const deadline = started + timeoutMs;
  let last: SyncStatusRecord | undefined;
  let readError: string | undefined;
  let polls = 0;
  const unmet = (s: SyncStatusRecord | undefined): string[] => {
    if (s === undefined) return ["a status saved in KV (none yet)"];
    const out: string[] = [];
    if (s.state !== "running") out.push(`state running (is ${s.state})`);
    if (!(s.lastFullySynchronizedMs > sinceMs))
      out.push(
        `fully synchronized after ${new Date(sinceMs).toISOString()} (last ${s.lastFullySynchronizedMs === 0 ? "never" : new Date(s.lastFullySynchronizedMs).toISOString()})`,
      );
    if (!(s.updatedAtMs > s.lastFullySynchronizedMs))
      out.push("a status saved after that synchronized moment");
    if (s.backlog !== 0) out.push(`backlog 0 (is ${s.backlog}, ${s.secondsBehind} s behind)`);
    if (options.deletes === true && s.deletionsPending !== 0)
      out.push(`no deletion waiting (${s.deletionsPending} wait)`);
    if (options.checkpoint !== undefined) {
      const at = Number(s.checkpoint[options.checkpoint.source] ?? -1);
      if (at < options.checkpoint.index)
        out.push(
          `checkpoint of ${options.checkpoint.source} at ${options.checkpoint.index} (is ${at})`,
        );
    }
    return out;
  };
  const failure = (why: string): Error => {
    const service = typeof options.service === "function" ? options.service() : options.service;
    const exit =
      service.child.exitCode !== null || service.child.signalCode !== null
        ? `exited (code ${service.child.exitCode}, signal ${service.child.signalCode})`
        : `running (pid ${service.child.pid})`;
    return new Error(
      [
        `waiting for sync ${name} in step since ${new Date(sinceMs).toISOString()}: ${why} after ${Date.now() - started} ms (${polls} polls, deadline ${timeoutMs} ms)`,
        `not met: ${unmet(last).join("; ")}`,
        `last status: ${JSON.stringify(last)}`,
        ...(readError === undefined ? [] : [`last error reading the status: ${readError}`]),
        `service: ${exit}; its stderr:`,
        tailOf(service.stderr()) || "(empty)",
      ].join("\n"),
    );
  };
  for (;;) {
    polls++;
    try {
      last = await syncStatus(nc, name);
      readError = undefined;
    } catch (err) {
      readError = err instanceof Error ? err.message : String(err);
    }
    if (readError === undefined && unmet(last).length === 0) return last!;
    const service = typeof options.service === "function" ? options.service() : options.service;
    if (service.child.exitCode !== null || service.child.signalCode !== null)
      throw failure("the service exited");
    if (Date.now() > deadline) throw failure("timed out");
    await sleep(100);
  }
};

/**
 * SIGTERM and the exit status. The service stops within seconds; if it has not exited after
 * `timeoutMs` the error says so with its stderr (and it is SIGKILLed by the test's teardown).
 */
export const stopSync = async (
  service: SyncServiceProcess,
  timeoutMs = 120_000,
): Promise<{ code: number | null }> => {
  service.child.kill("SIGTERM");
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () =>
        reject(
          new Error(
            `waiting for the sync service (pid ${service.child.pid}) to exit after SIGTERM: timed out after ${timeoutMs} ms; its stderr:\n${tailOf(service.stderr()) || "(empty)"}`,
          ),
        ),
      timeoutMs,
    );
  });
  try {
    return await Promise.race([exitOf(service.child), late]);
  } finally {
    clearTimeout(timer);
  }
};
