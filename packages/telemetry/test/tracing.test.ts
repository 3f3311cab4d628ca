import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { Writable } from "node:stream";
import test from "ava";
import {
  bindTraceContext,
  createLogger,
  extractTraceContext,
  injectTraceContext,
  shutdownTelemetry,
  startStep,
  startTelemetry,
  startWorkItem,
  traceLogFields,
  tracingEnabled,
  withJobSpan,
} from "../src/index.js";

// One telemetry per process: these tests share it and run one after another.
test.serial("without configuration nothing is set up and nothing is injected", async (t) => {
  const telemetry = await startTelemetry({ role: "worker", env: {} });
  t.false(tracingEnabled());
  const carrier: Record<string, string> = {};
  injectTraceContext((k, v) => (carrier[k] = v), {});
  t.deepEqual(carrier, {});
  await telemetry.shutdown();
});

test.serial(
  "a job span's context crosses a carrier; work items are its phase's children; logs name the span",
  async (t) => {
    const bodies: string[] = [];
    const receiver = createServer((req, res) => {
      let body = "";
      req.on("data", (c: Buffer) => (body += c.toString()));
      req.on("end", () => {
        bodies.push(body);
        res.end("{}");
      });
    });
    await new Promise<void>((r) => receiver.listen(0, "127.0.0.1", r));
    t.teardown(() => receiver.close());
    const url = `http://127.0.0.1:${(receiver.address() as AddressInfo).port}`;
    await startTelemetry({
      role: "coordinator",
      env: {
        OTEL_EXPORTER_OTLP_ENDPOINT: url,
        OTEL_EXPORTER_OTLP_PROTOCOL: "http/json",
        OTEL_METRICS_EXPORTER: "none",
      },
    });
    t.teardown(() => shutdownTelemetry());
    t.true(tracingEnabled());

    const lines: string[] = [];
    const log = createLogger({
      role: "coordinator",
      level: "info",
      destination: new Writable({
        write(chunk: Buffer, _enc, done) {
          lines.push(chunk.toString());
          done();
        },
      }),
    });
    const sent: Record<string, string> = {};
    let phaseSpanId = "";
    const job = {};
    await withJobSpan({ kind: "scan", phase: "walk", jobId: "job-1", key: job }, () => {
      injectTraceContext((k, v) => (sent[k] = v), job);
      log.info(traceLogFields(job), "inside the job");
      phaseSpanId = (JSON.parse(lines[0]!) as { span_id: string }).span_id;
      return Promise.resolve();
    });
    log.info(traceLogFields(undefined), "outside");
    t.regex(sent["traceparent"] ?? "", /^00-[0-9a-f]{32}-[0-9a-f]{16}-01$/);
    const [, traceId = "", spanId = ""] = sent["traceparent"]!.split("-");
    t.like(JSON.parse(lines[0]!), { trace_id: traceId, span_id: spanId });
    t.is(phaseSpanId, spanId);
    t.false("trace_id" in JSON.parse(lines[1]!));

    // What is extracted is what was injected.
    const received = {};
    bindTraceContext(
      received,
      extractTraceContext((k) => sent[k]),
    );
    const again: Record<string, string> = {};
    injectTraceContext((k, v) => (again[k] = v), received);
    t.is(again["traceparent"], sent["traceparent"]);

    // The worker side: the item's span is a child of the phase, and what it publishes is too.
    const msg = {};
    const item = startWorkItem((k) => sent[k], {
      kind: "walk",
      jobId: "job-1",
      itemId: "shard-1",
      workerId: "w1",
      path: Buffer.from("a/b"),
      attempt: 1,
      key: msg,
    });
    const republished: Record<string, string> = {};
    await item.run(() => {
      injectTraceContext((k, v) => (republished[k] = v), msg);
      log.info(traceLogFields(msg), "inside the item");
      return Promise.resolve();
    });
    item.end("ok");
    t.is(republished["traceparent"], sent["traceparent"]);
    const itemLine = JSON.parse(lines[2]!) as { trace_id: string; span_id: string };
    t.is(itemLine.trace_id, traceId);
    t.not(itemLine.span_id, spanId);
    await shutdownTelemetry();
    const spans = bodies.join("");
    t.true(spans.includes('"name":"walk item"'));
    t.true(spans.includes(`"parentSpanId":"${spanId}"`));
  },
);

test.serial(
  "steps of an item get spans when they fail or move at least the threshold (1 MiB); the rest are only counted",
  async (t) => {
    const bodies: string[] = [];
    const receiver = createServer((req, res) => {
      let body = "";
      req.on("data", (c: Buffer) => (body += c.toString()));
      req.on("end", () => {
        bodies.push(body);
        res.end("{}");
      });
    });
    await new Promise<void>((r) => receiver.listen(0, "127.0.0.1", r));
    t.teardown(() => receiver.close());
    const url = `http://127.0.0.1:${(receiver.address() as AddressInfo).port}`;
    await startTelemetry({
      role: "worker",
      env: {
        OTEL_EXPORTER_OTLP_ENDPOINT: url,
        OTEL_EXPORTER_OTLP_PROTOCOL: "http/json",
        OTEL_METRICS_EXPORTER: "none",
      },
    });
    t.teardown(() => shutdownTelemetry());
    const msg = {};
    const item = startWorkItem(() => undefined, {
      kind: "hsm",
      name: "hsm archive",
      jobId: "job-2",
      itemId: "0-0",
      workerId: "w1",
      path: Buffer.from("a"),
      attempt: 1,
      key: msg,
    });
    const step = (name: string, size?: number) =>
      startStep(msg, name, { jobId: "job-2", path: Buffer.from(`d/${name}`), size });
    step("small-ok").end("ok", { bytes: 10 });
    step("release-ok").end("ok", { bytes: 0 });
    step("small-failed").end("error", { err: new Error("no space") });
    step("big-after").end("ok", { bytes: 2 * 1024 * 1024 });
    step("big-known", 4 * 1024 * 1024).end("ok");
    item.end("ok");
    await shutdownTelemetry();
    const spans = bodies.join("");
    t.true(spans.includes('"name":"hsm archive"'));
    for (const traced of ["small-failed", "big-after", "big-known"])
      t.true(spans.includes(`"name":"${traced}"`), traced);
    for (const counted of ["small-ok", "release-ok"])
      t.false(spans.includes(`"name":"${counted}"`), counted);
    t.true(spans.includes("no space"));
  },
);
