import { spawn } from "node:child_process";
import type { ChildProcess } from "node:child_process";
import { existsSync, watch } from "node:fs";
import type { FSWatcher } from "node:fs";
import { mkdir, readFile, readdir, rm, writeFile } from "node:fs/promises";
import { delimiter, join } from "node:path";
import { DependencyError, errorMessage } from "@hsmfleet/core";
import type { Logger } from "@hsmfleet/telemetry";
import { processAlive } from "./process-alive.js";

export interface EmbeddedNatsOptions {
  stateDir: string;
  /** Default: "nats-server" found on PATH. */
  binary?: string | undefined;
  logger?: Logger | undefined;
  startTimeoutMs?: number | undefined;
}

export interface EmbeddedNats {
  url: string;
  /** True when this process started the server (and stops it on close). */
  owned: boolean;
  pid: number;
  close(): Promise<void>;
}

interface Marker {
  pid: number;
  url: string;
}

const findOnPath = (name: string): string | undefined => {
  if (name.includes("/")) return existsSync(name) ? name : undefined;
  for (const dir of (process.env["PATH"] ?? "").split(delimiter)) {
    const candidate = join(dir, name);
    if (dir && existsSync(candidate)) return candidate;
  }
  for (const dir of ["/usr/sbin", "/usr/local/sbin", "/sbin"]) {
    const candidate = join(dir, name);
    if (existsSync(candidate)) return candidate;
  }
  return undefined;
};

/**
 * The embedded nats-server another hsmfleet command (or `hsmfleet server`) on this machine runs
 * with this state dir; undefined when none does. Starts nothing.
 */
export const findEmbeddedNats = async (
  stateDir: string,
): Promise<{ url: string; pid: number } | undefined> => {
  try {
    const marker = JSON.parse(
      await readFile(join(stateDir, "nats", "embedded.json"), "utf8"),
    ) as Marker;
    return processAlive(marker.pid) ? { url: marker.url, pid: marker.pid } : undefined;
  } catch {
    return undefined; // no marker, or an unreadable one
  }
};

/**
 * The embedded default's NATS: reuse the server another hsmfleet command on this machine started
 * (so `hsmfleet jobs` in a second terminal sees the running job), or start one with JetStream
 * state under the state dir, on a free loopback port.
 */
export const startEmbeddedNats = async (options: EmbeddedNatsOptions): Promise<EmbeddedNats> => {
  const dir = join(options.stateDir, "nats");
  const markerPath = join(dir, "embedded.json");
  await mkdir(dir, { recursive: true });
  try {
    const marker = JSON.parse(await readFile(markerPath, "utf8")) as Marker;
    if (processAlive(marker.pid)) {
      options.logger?.debug(
        { url: marker.url, pid: marker.pid },
        "using the running embedded nats-server",
      );
      return { url: marker.url, owned: false, pid: marker.pid, close: async () => {} };
    }
  } catch {
    // No marker, or a stale one: start our own.
  }

  const binary = findOnPath(options.binary ?? "nats-server");
  if (!binary) {
    throw new DependencyError(
      "nats-server was not found on PATH. The embedded default needs it: install it " +
        "(Debian/Ubuntu: apt-get install nats-server) or point hsmfleet at a running server with --nats nats://HOST:4222.",
    );
  }
  const portsDir = join(dir, "ports");
  await rm(portsDir, { recursive: true, force: true });
  await mkdir(portsDir, { recursive: true });
  const args = [
    "-js",
    "-sd",
    join(dir, "jetstream"),
    "-a",
    "127.0.0.1",
    "-p",
    "-1",
    "--ports_file_dir",
    portsDir,
  ];
  let stderr = "";
  const child: ChildProcess = spawn(binary, args, {
    stdio: ["ignore", "ignore", "pipe"],
    detached: false,
  });
  child.stderr?.on("data", (d: Buffer) => {
    stderr = (stderr + d.toString()).slice(-4000);
  });
  const exited = new Promise<number | null>((resolve) =>
    child.once("exit", (code) => resolve(code)),
  );
  const spawnError = new Promise<Error>((resolve) => child.once("error", resolve));

  const deadline = Date.now() + (options.startTimeoutMs ?? 15_000);
  let url: string | undefined;
  // The ports file appears when the server is ready (40–200 ms: JetStream recovers its store). A
  // watch on its folder wakes the wait as it is written (polling with back-off woke up to ~30 ms
  // late: every command with the embedded default waits here, issue 17); the polls stay, as a
  // fallback where a watch cannot be made.
  // A change seen while no wait was pending is kept for the next wait.
  let changedMeanwhile = false;
  const keep = () => {
    changedMeanwhile = true;
  };
  let changed: () => void = keep;
  let watcher: FSWatcher | undefined;
  try {
    watcher = watch(portsDir, () => changed());
    watcher.on("error", () => watcher?.close());
  } catch {
    // No inotify (or out of watches): the polls alone.
  }
  let waitMs = 2;
  try {
    while (!url) {
      if (Date.now() > deadline) {
        child.kill("SIGKILL");
        throw new DependencyError(
          `nats-server did not start within ${options.startTimeoutMs ?? 15_000} ms: ${stderr.trim()}`,
        );
      }
      let timer: NodeJS.Timeout | undefined;
      const early = await Promise.race([
        exited.then((code) => `nats-server exited with code ${code}: ${stderr.trim()}`),
        spawnError.then((e) => `cannot run ${binary}: ${errorMessage(e)}`),
        new Promise<undefined>((r) => {
          if (changedMeanwhile) return r(undefined);
          changed = () => r(undefined);
          timer = setTimeout(() => r(undefined), waitMs);
        }),
      ]);
      clearTimeout(timer);
      changed = keep;
      changedMeanwhile = false;
      waitMs = Math.min(50, waitMs * 2);
      if (early) throw new DependencyError(early);
      const files = await readdir(portsDir).catch(() => [] as string[]);
      const file = files.find((f) => f.endsWith(".ports"));
      if (file) {
        try {
          const ports = JSON.parse(await readFile(join(portsDir, file), "utf8")) as {
            nats?: string[];
          };
          url = ports.nats?.[0];
        } catch {
          // Being written; try again.
        }
      }
    }
  } finally {
    watcher?.close();
  }
  const pid = child.pid ?? 0;
  await writeFile(markerPath, JSON.stringify({ pid, url } satisfies Marker));
  options.logger?.info({ url, pid, store: join(dir, "jetstream") }, "started embedded nats-server");
  return {
    url,
    owned: true,
    pid,
    close: async () => {
      if (child.exitCode !== null) return;
      child.kill("SIGTERM");
      const timer = setTimeout(() => child.kill("SIGKILL"), 5000);
      await exited;
      clearTimeout(timer);
      await rm(markerPath, { force: true });
    },
  };
};
