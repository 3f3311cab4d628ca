/**
 * The telemetry benchmark's "other side", in a child process of its own: what a deployment runs
 * on other machines (an OpenTelemetry collector, a Prometheus server), so its CPU is not counted
 * as hsmfleet's.
 *
 * - An OTLP/HTTP receiver on loopback that reads and counts request bodies (requests, bytes) and
 *   answers 200, decoding nothing.
 * - A Prometheus scraper: told a /metrics URL, it GETs it every `intervalMs` and reads the whole
 *   text (the exposition is serialized in the scraped process: that CPU IS hsmfleet's and is
 *   counted; the scraper's request and reading are not).
 *
 * Use spawnTelemetryPeer() from a benchmark; `node telemetry-peer.js --serve` is the child.
 */
import { fork } from "node:child_process";
import type { ChildProcess } from "node:child_process";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { fileURLToPath, pathToFileURL } from "node:url";

export interface TelemetryPeerCounts {
  /** OTLP requests received and their body bytes. */
  otlpRequests: number;
  otlpBytes: number;
  /** Scrapes answered (2xx) and the bytes of exposition text read. */
  scrapes: number;
  scrapeBytes: number;
  scrapeErrors: number;
}

type ToChild =
  { op: "scrape"; url: string; intervalMs: number } | { op: "unscrape" } | { op: "counts" };
type FromChild = { port: number } | { counts: TelemetryPeerCounts };

export interface TelemetryPeer {
  /** Base URL of the OTLP receiver (OTEL_EXPORTER_OTLP_ENDPOINT). */
  readonly url: string;
  readonly pid: number;
  /** Starts scraping `url` every `intervalMs` (replacing any previous target). */
  scrape(url: string, intervalMs: number): void;
  /** Stops scraping. */
  unscrape(): void;
  counts(): Promise<TelemetryPeerCounts>;
  stop(): Promise<void>;
}

/** Forks the peer and waits until its receiver listens. */
export const spawnTelemetryPeer = async (): Promise<TelemetryPeer> => {
  const child: ChildProcess = fork(fileURLToPath(import.meta.url), ["--serve"], {
    stdio: ["ignore", "inherit", "inherit", "ipc"],
    execArgv: [],
  });
  const kill = (): void => {
    if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
  };
  process.once("exit", kill);
  const port = await new Promise<number>((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new Error("telemetry peer did not start in 10 s")),
      10_000,
    );
    child.once("message", (m: FromChild) => {
      clearTimeout(timer);
      if ("port" in m) resolve(m.port);
      else reject(new Error(`telemetry peer sent ${JSON.stringify(m)}`));
    });
    child.once("exit", (code, signal) => {
      clearTimeout(timer);
      reject(new Error(`telemetry peer exited during startup (${code ?? signal})`));
    });
  });
  const send = (m: ToChild): void => void child.send(m);
  return {
    url: `http://127.0.0.1:${port}`,
    pid: child.pid ?? -1,
    scrape: (url, intervalMs) => send({ op: "scrape", url, intervalMs }),
    unscrape: () => send({ op: "unscrape" }),
    counts: () =>
      new Promise((resolve) => {
        const on = (m: FromChild): void => {
          if (!("counts" in m)) return;
          child.off("message", on);
          resolve(m.counts);
        };
        child.on("message", on);
        send({ op: "counts" });
      }),
    stop: () =>
      new Promise<void>((resolve) => {
        process.removeListener("exit", kill);
        if (child.exitCode !== null || child.signalCode !== null) return resolve();
        const timer = setTimeout(kill, 5000);
        child.once("exit", () => {
          clearTimeout(timer);
          resolve();
        });
        child.kill("SIGTERM");
      }),
  };
};

const serve = async (): Promise<void> => {
  const counts: TelemetryPeerCounts = {
    otlpRequests: 0,
    otlpBytes: 0,
    scrapes: 0,
    scrapeBytes: 0,
    scrapeErrors: 0,
  };
  const server = createServer((req, res) => {
    req.on("data", (c: Buffer) => (counts.otlpBytes += c.length));
    req.on("end", () => {
      counts.otlpRequests++;
      res.writeHead(200, { "content-type": "application/x-protobuf" }).end();
    });
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  let scraper: NodeJS.Timeout | undefined;
  process.on("message", (m: ToChild) => {
    if (m.op === "scrape") {
      clearInterval(scraper);
      // One scrape at once, then every interval: a measured run can be shorter than the interval,
      // and each run's side "on" must pay for at least one serialization of /metrics.
      const scrape = (): void => {
        void fetch(m.url)
          .then(async (r) => {
            const text = await r.text();
            if (!r.ok) throw new Error(String(r.status));
            counts.scrapes++;
            counts.scrapeBytes += text.length;
          })
          .catch(() => void counts.scrapeErrors++);
      };
      scrape();
      scraper = setInterval(scrape, m.intervalMs);
    } else if (m.op === "unscrape") {
      clearInterval(scraper);
      scraper = undefined;
    } else if (m.op === "counts") {
      process.send?.({ counts } satisfies FromChild);
    }
  });
  const shutdown = (): void => {
    clearInterval(scraper);
    server.closeAllConnections();
    server.close(() => process.exit(0));
  };
  process.once("SIGTERM", shutdown);
  process.once("disconnect", shutdown);
  process.send?.({ port: (server.address() as AddressInfo).port } satisfies FromChild);
};

const isMain =
  process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href;
if (isMain && process.argv.includes("--serve")) await serve();
