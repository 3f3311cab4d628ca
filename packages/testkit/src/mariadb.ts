/**
 * A MariaDB server (Debian's `mariadb-server`: `mariadbd`, `mariadb-install-db`, `mariadb`) as a
 * child process on a random loopback port, with its own data dir, for Azurite's SQL metadata store
 * (`AZURITE_DB`). Azurite's default metadata store (LokiJS) looks a blob up by scanning every blob
 * of the account, so its per-request cost grows with the number of blobs — about 140 puts/s at
 * 5,000 blobs, 23/s at 15,000 on this machine — while with MariaDB it stays flat (60–100 puts/s
 * on a loaded 2-CPU machine up to 30,000 and beyond). Tests with 100,000 blobs need the latter.
 *
 * The server runs with `--skip-grant-tables` (anyone on loopback is root, no password) and without
 * durability (no binlog, no flush per commit): it is a throwaway test fixture.
 */
import { spawn, spawnSync } from "node:child_process";
import { mkdtemp } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  LineLog,
  sleep,
  terminate,
  trackChild,
  trackDir,
  unrefChild,
  untrackDir,
} from "./children.js";
import { canConnect, freePort } from "./ports.js";
import { removeTree } from "./temp.js";

export interface MariaDbOptions {
  /** Database to create; default `azurite`. */
  database?: string;
  /** Default 60000. */
  startTimeoutMs?: number;
}

export interface MariaDbFixture {
  host: "127.0.0.1";
  port: number;
  database: string;
  /** `mysql://root@127.0.0.1:PORT/DATABASE` — what Azurite's `AZURITE_DB` takes. */
  url: string;
  pid: number;
  /** SIGTERM, wait, SIGKILL after 10 s; remove the data dir. Idempotent. */
  stop(): Promise<void>;
  /** Last ~200 lines of the server's output, for failure messages. */
  logs(): string;
}

const DEFAULT_START_TIMEOUT_MS = 60_000;

/** Why MariaDB cannot run here, or undefined when its binaries are installed. */
export const mariaDbUnavailable = (): string | undefined => {
  for (const bin of ["mariadbd", "mariadb-install-db", "mariadb"]) {
    const found = spawnSync("sh", ["-c", `command -v ${bin} || test -x /usr/sbin/${bin}`]);
    if (found.status !== 0) {
      return `${bin} not found (apt-get install -y mariadb-server)`;
    }
  }
  return undefined;
};

const sbin = (bin: string): string => {
  const found = spawnSync("sh", ["-c", `command -v ${bin}`], { encoding: "utf8" });
  return found.status === 0 && found.stdout.trim() !== ""
    ? found.stdout.trim()
    : `/usr/sbin/${bin}`;
};

export async function startMariaDb(options: MariaDbOptions = {}): Promise<MariaDbFixture> {
  const unavailable = mariaDbUnavailable();
  if (unavailable) throw new Error(`cannot start MariaDB: ${unavailable}`);
  const database = options.database ?? "azurite";
  if (!/^[A-Za-z0-9_]+$/.test(database)) throw new Error(`bad database name ${database}`);
  const startTimeoutMs = options.startTimeoutMs ?? DEFAULT_START_TIMEOUT_MS;
  const dir = await mkdtemp(join(tmpdir(), "hsmfleet-mariadb-"));
  trackDir(dir);
  const dataDir = join(dir, "data");
  const log = new LineLog(200);
  const cleanupDir = async (): Promise<void> => {
    await removeTree(dir);
    untrackDir(dir);
  };

  const install = spawnSync(
    sbin("mariadb-install-db"),
    [
      "--no-defaults",
      `--datadir=${dataDir}`,
      "--user=root",
      "--auth-root-authentication-method=normal",
      "--skip-test-db",
    ],
    { encoding: "utf8" },
  );
  if (install.status !== 0) {
    await cleanupDir();
    throw new Error(
      `mariadb-install-db failed (exit ${install.status}): ${install.stderr || install.stdout}`,
    );
  }

  const port = await freePort();
  const args = [
    "--no-defaults",
    `--datadir=${dataDir}`,
    `--socket=${join(dir, "mariadb.sock")}`,
    `--pid-file=${join(dir, "mariadb.pid")}`,
    `--port=${port}`,
    "--bind-address=127.0.0.1",
    "--user=root",
    "--skip-grant-tables",
    "--skip-name-resolve",
    "--skip-log-bin",
    "--innodb-flush-log-at-trx-commit=0",
    "--innodb-doublewrite=0",
    "--innodb-buffer-pool-size=256M",
    "--max-connections=500",
  ];
  log.add(`# [testkit] mariadbd ${args.join(" ")}`);
  const child = spawn(sbin("mariadbd"), args, { stdio: ["ignore", "pipe", "pipe"] });
  let spawnError: Error | undefined;
  child.once("error", (err) => {
    spawnError = err;
  });
  child.stdout?.on("data", (chunk: Buffer) => log.push(chunk));
  child.stderr?.on("data", (chunk: Buffer) => log.push(chunk));
  child.once("exit", (code, signal) =>
    log.add(`# [testkit] mariadbd pid ${child.pid} exited (code ${code}, signal ${signal})`),
  );
  if (child.pid !== undefined) trackChild(child);
  unrefChild(child);

  try {
    const deadline = Date.now() + startTimeoutMs;
    for (;;) {
      if (spawnError) throw new Error(`cannot run mariadbd: ${spawnError.message}`);
      if (child.exitCode !== null || child.signalCode !== null) {
        throw new Error(
          `mariadbd exited during startup (code ${child.exitCode}, signal ${child.signalCode})`,
        );
      }
      if (await canConnect("127.0.0.1", port)) {
        const created = spawnSync(
          "mariadb",
          ["-h127.0.0.1", `-P${port}`, "-uroot", "-e", `CREATE DATABASE IF NOT EXISTS ${database}`],
          { encoding: "utf8" },
        );
        if (created.status === 0) break;
        log.add(`# [testkit] CREATE DATABASE: ${created.stderr.trim()}`);
      }
      if (Date.now() > deadline) {
        throw new Error(`mariadbd did not become ready within ${startTimeoutMs} ms`);
      }
      await sleep(100);
    }
  } catch (err) {
    await terminate(child, 10_000);
    await cleanupDir();
    throw new Error(
      `${(err as Error).message}\n--- mariadbd output (last lines) ---\n${log.text()}`,
    );
  }

  let stopping: Promise<void> | undefined;
  return {
    host: "127.0.0.1",
    port,
    database,
    url: `mysql://root@127.0.0.1:${port}/${database}`,
    pid: child.pid ?? -1,
    stop(): Promise<void> {
      stopping ??= (async () => {
        await terminate(child, 10_000);
        await cleanupDir();
      })();
      return stopping;
    },
    logs: () => log.text(),
  };
}
