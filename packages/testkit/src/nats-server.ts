/**
 * A real nats-server child process (JetStream on by default) on a random loopback port.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { mkdir, mkdtemp, readdir, readFile, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  LineLog,
  exited,
  sleep,
  terminate,
  trackChild,
  trackDir,
  unrefChild,
  untrackDir,
} from "./children.js";
import { canConnect, freePort } from "./ports.js";
import { removeTree } from "./temp.js";

export interface NatsServerOptions {
  /** Executable; default "nats-server" from PATH. */
  binary?: string;
  /** Listen address; default 127.0.0.1. */
  host?: string;
  /** Default true (`-js -sd <storeDir>`). */
  jetstream?: boolean;
  /** Default: a fresh temp dir, removed on stop. A caller-supplied dir is left in place. */
  storeDir?: string;
  extraArgs?: string[];
  /** Optional nats config file contents (command-line flags take precedence over it). */
  configText?: string;
  /** Default 10000. */
  startTimeoutMs?: number;
  /**
   * Serve the HTTP monitoring endpoints (/varz, /jsz, …) on a free loopback port, the same one
   * after restart(). Default false.
   */
  monitoring?: boolean;
}

export interface NatsServerFixture {
  /** nats://HOST:PORT */
  url: string;
  host: string;
  port: number;
  storeDir: string;
  /** http://HOST:PORT of the monitoring endpoints (`monitoring: true`), else undefined. */
  monitorUrl: string | undefined;
  /** Pid of the current server process (changes on restart). */
  readonly pid: number;
  /** SIGTERM, wait, SIGKILL after 5s; remove temp dirs. Idempotent. */
  stop(): Promise<void>;
  /** Send a signal (default SIGKILL) to the current server process without waiting. */
  kill(signal?: NodeJS.Signals): void;
  /** Stop the current process if still running, start a new one on the same port and store dir. */
  restart(): Promise<void>;
  /** Last ~200 lines of server output, for failure messages. */
  logs(): string;
}

const DEFAULT_START_TIMEOUT_MS = 10_000;

interface Running {
  child: ChildProcess;
  port: number;
}

class StartError extends Error {
  constructor(message: string, logs: string) {
    super(`${message}\n--- nats-server output (last lines) ---\n${logs}`);
    this.name = "StartError";
  }
}

/** Wait for `<exe>_<pid>.ports` and return the client port it advertises. */
const waitForPortsFile = async (
  dir: string,
  child: ChildProcess,
  deadline: number,
  failed: () => Error | undefined,
): Promise<number> => {
  const suffix = `_${child.pid}.ports`;
  for (;;) {
    const error = failed();
    if (error) throw error;
    const name = (await readdir(dir)).find((n) => n.endsWith(suffix));
    if (name !== undefined) {
      try {
        const parsed = JSON.parse(await readFile(join(dir, name), "utf8")) as { nats?: string[] };
        const first = parsed.nats?.[0];
        if (first !== undefined) {
          const port = Number(new URL(first).port);
          if (Number.isInteger(port) && port > 0) return port;
        }
      } catch {
        // partially written; retry
      }
    }
    if (Date.now() > deadline) throw new Error(`no ports file ${suffix} in ${dir}`);
    await sleep(20);
  }
};

export async function startNatsServer(options: NatsServerOptions = {}): Promise<NatsServerFixture> {
  const binary = options.binary ?? "nats-server";
  const host = options.host ?? "127.0.0.1";
  const jetstream = options.jetstream ?? true;
  const startTimeoutMs = options.startTimeoutMs ?? DEFAULT_START_TIMEOUT_MS;

  const workDir = await mkdtemp(join(tmpdir(), "hsmfleet-nats-"));
  trackDir(workDir);
  const portsDir = join(workDir, "ports");
  await mkdir(portsDir);
  const storeDir = options.storeDir ?? join(workDir, "store");
  let configPath: string | undefined;
  if (options.configText !== undefined) {
    configPath = join(workDir, "nats.conf");
    await writeFile(configPath, options.configText);
  }

  const monitorPort = options.monitoring === true ? await freePort(host) : undefined;
  const log = new LineLog(200);
  let generation = 0;

  const launch = async (fixedPort: number | undefined): Promise<Running> => {
    generation += 1;
    const args: string[] = [];
    if (configPath !== undefined) args.push("-c", configPath);
    args.push("-a", host, "-p", fixedPort === undefined ? "-1" : String(fixedPort));
    args.push("--ports_file_dir", portsDir);
    if (monitorPort !== undefined) args.push("-m", String(monitorPort));
    if (jetstream) args.push("-js", "-sd", storeDir);
    args.push(...(options.extraArgs ?? []));
    log.add(`# [testkit] start #${generation}: ${binary} ${args.join(" ")}`);

    const child = spawn(binary, args, { stdio: ["ignore", "pipe", "pipe"] });
    let spawnError: Error | undefined;
    child.once("error", (err) => {
      spawnError = err;
    });
    child.stdout?.on("data", (chunk: Buffer) => log.push(chunk));
    child.stderr?.on("data", (chunk: Buffer) => log.push(chunk));
    child.once("exit", (code, signal) =>
      log.add(`# [testkit] nats-server pid ${child.pid} exited (code ${code}, signal ${signal})`),
    );
    if (child.pid !== undefined) trackChild(child);
    unrefChild(child);

    const failed = (): Error | undefined => {
      if (spawnError)
        return new StartError(`cannot run ${binary}: ${spawnError.message}`, log.text());
      if (child.exitCode !== null || child.signalCode !== null) {
        return new StartError(
          `nats-server exited during startup (code ${child.exitCode}, signal ${child.signalCode})`,
          log.text(),
        );
      }
      return undefined;
    };

    const deadline = Date.now() + startTimeoutMs;
    try {
      // A spawn failure (ENOENT) is reported asynchronously; give it a tick before polling.
      await sleep(0);
      const early = failed();
      if (early) throw early;
      const port = await waitForPortsFile(portsDir, child, deadline, failed);
      if (fixedPort !== undefined && port !== fixedPort) {
        throw new StartError(`restarted on port ${port}, expected ${fixedPort}`, log.text());
      }
      for (;;) {
        const error = failed();
        if (error) throw error;
        if (await canConnect(host, port, 500)) break;
        if (Date.now() > deadline) throw new Error(`port ${port} never accepted connections`);
        await sleep(20);
      }
      return { child, port };
    } catch (err) {
      await terminate(child, 2000);
      if (err instanceof StartError) throw err;
      throw new StartError(
        `nats-server did not become ready within ${startTimeoutMs} ms: ${(err as Error).message}`,
        log.text(),
      );
    }
  };

  let current: Running;
  try {
    current = await launch(undefined);
  } catch (err) {
    await removeTree(workDir);
    untrackDir(workDir);
    throw err;
  }
  const port = current.port;
  let stopping: Promise<void> | undefined;

  const fixture: NatsServerFixture = {
    url: `nats://${host.includes(":") ? `[${host}]` : host}:${port}`,
    host,
    port,
    storeDir,
    monitorUrl:
      monitorPort === undefined
        ? undefined
        : `http://${host.includes(":") ? `[${host}]` : host}:${monitorPort}`,
    get pid(): number {
      return current.child.pid ?? -1;
    },
    stop(): Promise<void> {
      stopping ??= (async () => {
        await terminate(current.child);
        await removeTree(workDir);
        untrackDir(workDir);
      })();
      return stopping;
    },
    kill(signal: NodeJS.Signals = "SIGKILL"): void {
      const { child } = current;
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
    },
    async restart(): Promise<void> {
      if (stopping) throw new Error("nats-server fixture was stopped; cannot restart");
      await terminate(current.child);
      await exited(current.child);
      current = await launch(port);
    },
    logs: () => log.text(),
  };
  return fixture;
}
