/**
 * Azurite's blob service as a child process (`node azurite/dist/src/blob/main.js`) on a random
 * loopback port, with its own workspace directory.
 */
import { spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import { mkdtemp } from "node:fs/promises";
import { request } from "node:http";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import {
  LineLog,
  sleep,
  terminate,
  trackChild,
  trackDir,
  unrefChild,
  untrackDir,
} from "./children.js";
import { removeTree } from "./temp.js";

export interface AzuriteOptions {
  /** Listen address; default 127.0.0.1. */
  host?: string;
  /** Workspace dir; default a fresh temp dir, removed on stop. A caller-supplied dir is kept. */
  location?: string;
  /** Default 90000 (a loaded CI machine can take that long to start several at once). */
  startTimeoutMs?: number;
  /** Default true: no access log (`--silent`). With false the access log goes to logs(). */
  silent?: boolean;
  /**
   * Metadata store: default Azurite's LokiJS (in the workspace dir). A `mysql://…` URL (see
   * startMariaDb) makes Azurite keep blob metadata in SQL (`AZURITE_DB`), whose per-request cost does
   * not grow with the number of blobs — for tests with tens of thousands of blobs in one container.
   */
  metadataDb?: string;
}

export interface AzuriteFixture {
  /** http://HOST:PORT/devstoreaccount1 */
  blobEndpoint: string;
  port: number;
  accountName: "devstoreaccount1";
  accountKey: string;
  connectionString: string;
  location: string;
  pid: number;
  /** SIGTERM, wait, SIGKILL after 5s; remove the temp workspace. Idempotent. */
  stop(): Promise<void>;
  /** Last ~200 lines of Azurite output, for failure messages. */
  logs(): string;
}

export const AZURITE_ACCOUNT_NAME = "devstoreaccount1";
export const AZURITE_ACCOUNT_KEY =
  "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

const DEFAULT_START_TIMEOUT_MS = 90_000;
const LISTENING = /successfully listens on https?:\/\/\S*?:(\d+)\s*$/m;

/** Absolute path of azurite's `azurite-blob` bin script. */
const azuriteBlobMain = (): string => {
  const require = createRequire(import.meta.url);
  const pkgPath = require.resolve("azurite/package.json");
  const pkg = JSON.parse(readFileSync(pkgPath, "utf8")) as { bin?: Record<string, string> };
  const bin = pkg.bin?.["azurite-blob"] ?? "./dist/src/blob/main.js";
  return resolve(dirname(pkgPath), bin);
};

/** Resolves true when the server answers an HTTP request at all (any status). */
const answersHttp = (host: string, port: number): Promise<boolean> =>
  new Promise((done) => {
    const req = request(
      { host, port, path: `/${AZURITE_ACCOUNT_NAME}?comp=list`, method: "GET", agent: false },
      (res) => {
        res.resume();
        done(typeof res.statusCode === "number");
      },
    );
    req.setTimeout(1000, () => req.destroy(new Error("timeout")));
    req.once("error", () => done(false));
    req.end();
  });

export async function startAzurite(options: AzuriteOptions = {}): Promise<AzuriteFixture> {
  const host = options.host ?? "127.0.0.1";
  const startTimeoutMs = options.startTimeoutMs ?? DEFAULT_START_TIMEOUT_MS;
  const silent = options.silent ?? true;
  const ownsLocation = options.location === undefined;
  const location = options.location ?? (await mkdtemp(join(tmpdir(), "hsmfleet-azurite-")));
  if (ownsLocation) trackDir(location);

  const args = [
    azuriteBlobMain(),
    "--blobHost",
    host,
    "--blobPort",
    "0",
    "--location",
    location,
    "--skipApiVersionCheck",
    "--loose",
    "--disableTelemetry",
  ];
  if (silent) args.push("--silent");

  const env = { ...process.env };
  // AZURITE_DB switches Azurite to a SQL metadata store: only when asked for, never inherited.
  delete env.AZURITE_DB;
  if (options.metadataDb !== undefined) env.AZURITE_DB = options.metadataDb;
  const log = new LineLog(200);
  log.add(`# [testkit] ${process.execPath} ${args.join(" ")}`);
  const child = spawn(process.execPath, args, {
    cwd: location,
    env,
    stdio: ["ignore", "pipe", "pipe"],
  });
  let spawnError: Error | undefined;
  child.once("error", (err) => {
    spawnError = err;
  });
  let stdout = "";
  child.stdout?.on("data", (chunk: Buffer) => {
    if (stdout.length < 64 * 1024) stdout += chunk.toString();
    log.push(chunk);
  });
  child.stderr?.on("data", (chunk: Buffer) => log.push(chunk));
  child.once("exit", (code, signal) =>
    log.add(`# [testkit] azurite pid ${child.pid} exited (code ${code}, signal ${signal})`),
  );
  if (child.pid !== undefined) trackChild(child);
  unrefChild(child);

  const cleanupDir = async (): Promise<void> => {
    if (!ownsLocation) return;
    await removeTree(location);
    untrackDir(location);
  };

  let port: number | undefined;
  try {
    const deadline = Date.now() + startTimeoutMs;
    for (;;) {
      if (spawnError) throw new Error(`cannot run azurite: ${spawnError.message}`);
      if (child.exitCode !== null || child.signalCode !== null) {
        throw new Error(
          `azurite exited during startup (code ${child.exitCode}, signal ${child.signalCode})`,
        );
      }
      if (port === undefined) {
        const match = LISTENING.exec(stdout);
        if (match?.[1] !== undefined) port = Number(match[1]);
      }
      if (port !== undefined && (await answersHttp(host, port))) break;
      if (Date.now() > deadline) {
        throw new Error(`azurite did not become ready within ${startTimeoutMs} ms`);
      }
      await sleep(25);
    }
  } catch (err) {
    await terminate(child, 2000);
    await cleanupDir();
    throw new Error(
      `${(err as Error).message}\n--- azurite output (last lines) ---\n${log.text()}`,
    );
  }

  const urlHost = host.includes(":") ? `[${host}]` : host;
  const blobEndpoint = `http://${urlHost}:${port}/${AZURITE_ACCOUNT_NAME}`;
  let stopping: Promise<void> | undefined;
  return {
    blobEndpoint,
    port,
    accountName: AZURITE_ACCOUNT_NAME,
    accountKey: AZURITE_ACCOUNT_KEY,
    connectionString:
      `DefaultEndpointsProtocol=http;AccountName=${AZURITE_ACCOUNT_NAME};` +
      `AccountKey=${AZURITE_ACCOUNT_KEY};BlobEndpoint=${blobEndpoint};`,
    location,
    pid: child.pid ?? -1,
    stop(): Promise<void> {
      stopping ??= (async () => {
        await terminate(child);
        await cleanupDir();
      })();
      return stopping;
    },
    logs: () => log.text(),
  };
}
