import { spawn } from "node:child_process";
import { mkdir, readFile, rm, writeFile } from "node:fs/promises";
import { createRequire } from "node:module";
import { dirname, join, resolve } from "node:path";
import { DependencyError, errorMessage } from "@hsmfleet/core";
import type { Logger } from "@hsmfleet/telemetry";
import { processAlive } from "./process-alive.js";

/** Azurite's well-known development account (public, documented by Microsoft; not a secret). */
export const AZURITE_ACCOUNT = "devstoreaccount1";
const AZURITE_KEY =
  "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

export interface EmbeddedAzurite {
  blobEndpoint: string;
  connectionString: string;
  owned: boolean;
  close(): Promise<void>;
}

const LISTENING = /successfully listens on https?:\/\/\S*?:(\d+)\s*$/m;

const connectionStringFor = (port: number): string =>
  `DefaultEndpointsProtocol=http;AccountName=${AZURITE_ACCOUNT};AccountKey=${AZURITE_KEY};BlobEndpoint=http://127.0.0.1:${port}/${AZURITE_ACCOUNT};`;

/**
 * The embedded default's storage: a local Azurite blob service with its data under the state dir
 * (or the one another hsmfleet command on this machine already started). For trying hsmfleet out
 * and for tests; Azurite is slow (a few hundred MiB/s at best), so measure real storage elsewhere.
 */
/** The embedded Azurite another hsmfleet command on this machine runs; undefined when none. */
export const findEmbeddedAzurite = async (
  stateDir: string,
): Promise<{ connectionString: string; blobEndpoint: string } | undefined> => {
  try {
    const marker = JSON.parse(
      await readFile(join(stateDir, "azurite", "embedded.json"), "utf8"),
    ) as { pid: number; port: number };
    return processAlive(marker.pid)
      ? {
          connectionString: connectionStringFor(marker.port),
          blobEndpoint: `http://127.0.0.1:${marker.port}/${AZURITE_ACCOUNT}`,
        }
      : undefined;
  } catch {
    return undefined;
  }
};

export const startEmbeddedAzurite = async (options: {
  stateDir: string;
  logger?: Logger | undefined;
}): Promise<EmbeddedAzurite> => {
  const dir = join(options.stateDir, "azurite");
  const markerPath = join(dir, "embedded.json");
  await mkdir(join(dir, "data"), { recursive: true });
  try {
    const marker = JSON.parse(await readFile(markerPath, "utf8")) as { pid: number; port: number };
    if (processAlive(marker.pid)) {
      return {
        blobEndpoint: `http://127.0.0.1:${marker.port}/${AZURITE_ACCOUNT}`,
        connectionString: connectionStringFor(marker.port),
        owned: false,
        close: async () => {},
      };
    }
  } catch {
    // No marker or a stale one.
  }
  let main: string;
  try {
    const require = createRequire(import.meta.url);
    main = resolve(dirname(require.resolve("azurite/package.json")), "dist/src/blob/main.js");
  } catch (err) {
    throw new DependencyError(
      `the embedded default needs the azurite package (npm install): ${errorMessage(err)}`,
      { cause: err },
    );
  }
  const args = [
    main,
    "--blobHost",
    "127.0.0.1",
    "--blobPort",
    "0",
    "--location",
    join(dir, "data"),
    "--skipApiVersionCheck",
    "--loose",
    "--disableTelemetry",
    "--silent",
  ];
  const child = spawn(process.execPath, args, { stdio: ["ignore", "pipe", "pipe"] });
  let output = "";
  const port = await new Promise<number>((resolvePort, reject) => {
    const timer = setTimeout(
      () => reject(new DependencyError(`Azurite did not start within 30 s: ${output.trim()}`)),
      30_000,
    );
    const onData = (d: Buffer) => {
      output = (output + d.toString()).slice(-4000);
      const m = LISTENING.exec(output);
      if (m) {
        clearTimeout(timer);
        resolvePort(Number(m[1]));
      }
    };
    child.stdout.on("data", onData);
    child.stderr.on("data", onData);
    child.once("exit", (code) => {
      clearTimeout(timer);
      reject(new DependencyError(`Azurite exited with code ${code}: ${output.trim()}`));
    });
  });
  await writeFile(markerPath, JSON.stringify({ pid: child.pid, port }));
  options.logger?.info({ port, data: join(dir, "data") }, "started embedded Azurite");
  return {
    blobEndpoint: `http://127.0.0.1:${port}/${AZURITE_ACCOUNT}`,
    connectionString: connectionStringFor(port),
    owned: true,
    close: async () => {
      if (child.exitCode !== null) return;
      const exited = new Promise((r) => child.once("exit", r));
      child.kill("SIGTERM");
      const timer = setTimeout(() => child.kill("SIGKILL"), 5000);
      await exited;
      clearTimeout(timer);
      await rm(markerPath, { force: true });
    },
  };
};
