import type { ChildProcess } from "node:child_process";
import type { ExecutionContext } from "ava";
import { ensureSyncTopology } from "@hsmfleet/bus";
import type { NatsConnection } from "@hsmfleet/bus";
import { readSyncStatus } from "@hsmfleet/coordinator";
import type { SyncStatusRecord } from "@hsmfleet/coordinator";
import { exitOf, spawnCli, waitFor } from "./helpers.js";

/** Starts `hsmfleet sync` as a child process (no in-process workers); SIGKILLed if still running at the end. */
export const spawnSync = (
  t: ExecutionContext,
  url: string,
  storage: string,
  args: string[],
): { child: ChildProcess; stderr: () => string } => {
  const child = spawnCli(["--nats", url, "--storage", storage, "--workers", "0", "sync", ...args]);
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

/**
 * Waits until the service has applied everything read after `sinceMs` (nothing pending, saved
 * after that time) and, with `deletes`, no deletion waits any more.
 */
export const waitInStep = async (
  nc: NatsConnection,
  name: string,
  sinceMs: number,
  options: {
    deletes?: boolean;
    timeoutMs?: number;
    /** The source's checkpoint must have reached this record. */
    checkpoint?: { source: string; index: number };
  } = {},
): Promise<SyncStatusRecord> => {
  let last: SyncStatusRecord | undefined;
  await waitFor(
    `sync ${name} in step`,
    async () => {
      last = await syncStatus(nc, name);
      return (
        last !== undefined &&
        last.state === "running" &&
        last.lastFullySynchronizedMs > sinceMs &&
        last.updatedAtMs > last.lastFullySynchronizedMs &&
        last.backlog === 0 &&
        (!options.deletes || last.deletionsPending === 0) &&
        (options.checkpoint === undefined ||
          Number(last.checkpoint[options.checkpoint.source] ?? -1) >= options.checkpoint.index)
      );
    },
    options.timeoutMs ?? 120_000,
  ).catch((err: unknown) => {
    throw new Error(`${(err as Error).message} (last status: ${JSON.stringify(last)})`);
  });
  return last!;
};

/** SIGTERM and the exit status. */
export const stopSync = async (child: ChildProcess): Promise<{ code: number | null }> => {
  child.kill("SIGTERM");
  return exitOf(child);
};
