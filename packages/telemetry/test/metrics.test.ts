import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import test from "ava";
import { countBytes, shutdownTelemetry, startTelemetry, traceFileTransfer } from "../src/index.js";

const freePort = async (): Promise<number> => {
  const server = createServer();
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((r) => server.close(() => r()));
  return port;
};

/** The value of the series of `name` whose labels include all of `labels` (undefined: none). */
const series = (text: string, name: string, labels: Record<string, string>): number | undefined => {
  for (const line of text.split("\n")) {
    const m = /^([a-z_]+)(?:\{([^}]*)\})? (\S+)$/.exec(line);
    if (!m || m[1] !== name) continue;
    const have = m[2] ?? "";
    if (Object.entries(labels).every(([k, v]) => have.includes(`${k}="${v}"`))) return Number(m[3]);
  }
  return undefined;
};

test.serial("metrics off: file transfers and byte counts run and count nothing", async (t) => {
  const telemetry = await startTelemetry({ role: "worker", env: {} });
  t.teardown(() => telemetry.shutdown());
  const seen: number[] = [];
  const onBytes = countBytes("export", "job-off", (n) => seen.push(n));
  const r = await traceFileTransfer(
    {
      direction: "export",
      jobId: "job-off",
      path: Buffer.from("a"),
      type: "file",
      size: 3,
      item: {},
    },
    () => {
      onBytes(3);
      return Promise.resolve({ bytes: 3 });
    },
  );
  t.deepEqual(r, { bytes: 3 });
  t.deepEqual(seen, [3]);
});

test.serial(
  "the per-file counters (summed by hsmfleet, observed at collection) show on the Prometheus endpoint",
  async (t) => {
    const port = await freePort();
    await startTelemetry({ role: "worker", metricsPort: port, metricsHost: "127.0.0.1", env: {} });
    t.teardown(() => shutdownTelemetry());
    const scrape = async (): Promise<string> =>
      (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
    const item = {};
    const onBytes = countBytes("export", "job-m", () => undefined);
    let inFlightDuring: number | undefined;
    for (let i = 0; i < 3; i++) {
      await traceFileTransfer(
        {
          direction: "export",
          jobId: "job-m",
          path: Buffer.from(`f${i}`),
          type: "file",
          size: 10,
          item,
        },
        async () => {
          onBytes(4);
          onBytes(6);
          if (i === 1) inFlightDuring = series(await scrape(), "hsmfleet_transfer_in_flight", {});
          return { bytes: 10 };
        },
      );
    }
    await traceFileTransfer(
      {
        direction: "export",
        jobId: "job-m",
        path: Buffer.from("bad"),
        type: "file",
        size: 10,
        item,
      },
      () =>
        Promise.resolve({
          bytes: 0,
          error: { operation: "upload", code: "EIO", message: "i/o error" },
        }),
    );
    const onImport = countBytes("import", "job-m", () => undefined);
    onImport(5);
    const text = await scrape();
    t.is(series(text, "hsmfleet_transfer_bytes_total", { direction: "export", job: "job-m" }), 30);
    t.is(series(text, "hsmfleet_transfer_bytes_total", { direction: "import", job: "job-m" }), 5);
    t.is(
      series(text, "hsmfleet_transfer_files_total", {
        direction: "export",
        job: "job-m",
        outcome: "ok",
      }),
      3,
    );
    t.is(
      series(text, "hsmfleet_transfer_files_total", {
        direction: "export",
        job: "job-m",
        outcome: "error",
      }),
      1,
    );
    t.is(series(text, "hsmfleet_errors_total", { kind: "upload", code: "EIO" }), 1);
    t.is(inFlightDuring, 1);
    t.is(series(text, "hsmfleet_transfer_in_flight", {}), 0);
    t.is(series(text, "hsmfleet_transfer_duration_count", { direction: "export" }), 3);
    t.regex(text, /# TYPE hsmfleet_transfer_bytes_total counter/);
    t.regex(text, /# TYPE hsmfleet_transfer_in_flight gauge/);
  },
);
