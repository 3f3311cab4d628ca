import { createServer } from "node:http";
import type { ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import type { NatsConnection } from "@hsmfleet/bus";
import { errorMessage } from "@hsmfleet/core";
import { decodeWorkerHeartbeat, subjects } from "@hsmfleet/protocol";
import type { JobStatus } from "@hsmfleet/protocol";
import { DASHBOARD_PAGE } from "./page.js";
import { ThroughputTracker } from "./tracker.js";
import type { Snapshot, TrackerOptions } from "./tracker.js";

export interface DashboardOptions extends TrackerOptions {
  nc: NatsConnection;
  /** Job records (JobStore.list). */
  listJobs: () => Promise<JobStatus[]>;
  /** Default 8080; 0 = any free port. */
  port?: number | undefined;
  /** Default 127.0.0.1: job ids and roots are not for the whole network unless asked. */
  host?: string | undefined;
  /** How often the page is updated (and workers asked for a heartbeat). Default 1000 ms. */
  intervalMs?: number | undefined;
  /** The policy engine's panel (`readPolicyPanel`), read each interval; shown when given. */
  policies?: (() => Promise<unknown>) | undefined;
  /** Told when reading job records fails (the page keeps the last ones). */
  onError?: ((err: unknown) => void) | undefined;
}

export const DASHBOARD_DEFAULTS = { port: 8080, host: "127.0.0.1", intervalMs: 1000 } as const;

export interface Dashboard {
  url: string;
  port: number;
  /** The latest snapshot (also what /api/snapshot returns). */
  latest(): Snapshot | undefined;
  close(): Promise<void>;
}

/**
 * Serves the live dashboard: GET / is the page, GET /events a server-sent event stream with one
 * Snapshot (JSON) per interval, GET /api/snapshot the latest one. Fed by worker heartbeats on
 * core NATS (hsmfleet.hb.*; it pings hsmfleet.hbping each interval so rates are fresh) and by the
 * job records in KV.
 */
export const startDashboard = async (options: DashboardOptions): Promise<Dashboard> => {
  const tracker = new ThroughputTracker(options);
  const intervalMs = options.intervalMs ?? DASHBOARD_DEFAULTS.intervalMs;
  const clients = new Set<ServerResponse>();
  let latest: Snapshot | undefined;

  const sub = options.nc.subscribe(subjects.heartbeatAll, {
    callback: (err, msg) => {
      if (err) return;
      try {
        tracker.heartbeat(decodeWorkerHeartbeat(msg.data));
      } catch {
        // Not a heartbeat we can read: ignore.
      }
    },
  });
  let jobsPending = false;
  let policiesPending = false;
  let policies: unknown;
  const tick = () => {
    if (!options.nc.isClosed()) options.nc.publish(subjects.heartbeatPing);
    if (!jobsPending) {
      jobsPending = true;
      options
        .listJobs()
        .then((jobs) => tracker.jobs(jobs))
        .catch((err: unknown) => options.onError?.(err))
        .finally(() => (jobsPending = false));
    }
    if (options.policies && !policiesPending) {
      policiesPending = true;
      options
        .policies()
        .then((p) => (policies = p))
        .catch((err: unknown) => options.onError?.(err))
        .finally(() => (policiesPending = false));
    }
    latest = { ...tracker.snapshot(), ...(policies === undefined ? {} : { policies }) };
    const frame = `data: ${JSON.stringify(latest)}\n\n`;
    for (const c of clients) c.write(frame);
  };
  const timer = setInterval(tick, intervalMs);
  tick();

  const server = createServer((req, res) => {
    const path = (req.url ?? "/").split("?")[0];
    if (path === "/" || path === "/index.html") {
      res.writeHead(200, {
        "content-type": "text/html; charset=utf-8",
        "cache-control": "no-store",
      });
      res.end(DASHBOARD_PAGE);
    } else if (path === "/events") {
      res.writeHead(200, {
        "content-type": "text/event-stream",
        "cache-control": "no-store",
        connection: "keep-alive",
      });
      res.write(`retry: ${intervalMs * 2}\n\n`);
      if (latest) res.write(`data: ${JSON.stringify(latest)}\n\n`);
      clients.add(res);
      req.on("close", () => clients.delete(res));
    } else if (path === "/api/snapshot") {
      res.writeHead(200, { "content-type": "application/json" });
      res.end(JSON.stringify(latest ?? tracker.snapshot()));
    } else {
      res.writeHead(404, { "content-type": "text/plain" }).end("not found\n");
    }
  });
  const host = options.host ?? DASHBOARD_DEFAULTS.host;
  try {
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(options.port ?? DASHBOARD_DEFAULTS.port, host, resolve);
    });
  } catch (err) {
    clearInterval(timer);
    sub.unsubscribe();
    throw new Error(`dashboard: cannot listen on ${host}:${options.port}: ${errorMessage(err)}`, {
      cause: err,
    });
  }
  const { port } = server.address() as AddressInfo;
  const shownHost = host.includes(":") ? `[${host}]` : host;
  return {
    url: `http://${shownHost === "0.0.0.0" ? "127.0.0.1" : shownHost}:${port}/`,
    port,
    latest: () => latest,
    close: async () => {
      clearInterval(timer);
      sub.unsubscribe();
      for (const c of clients) c.end();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
};
