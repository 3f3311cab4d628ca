import { spawnSync } from "node:child_process";
import { mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import test from "ava";
import { decodeWorkerHeartbeat, subjects } from "@hsmfleet/protocol";
import { AZURITE_ACCOUNT_KEY, contentOf, freePort, generateTree, tempDir } from "@hsmfleet/testkit";
import { exitOf, runCli, spawnCli, startBus, startStorage, waitFor } from "./helpers.js";
import { startOtlpReceiver } from "./otlp-receiver.js";

const REPO = new URL("../../../", import.meta.url);

test("one trace per export job, spanning the coordinator and two worker processes across NATS", async (t) => {
  const dir = await tempDir();
  t.teardown(() => dir.cleanup());
  const root = join(dir.path, "tree");
  const manifest = await generateTree(root, {
    depth: 2,
    fanout: 3,
    filesPerDir: 3,
    symlinksPerDir: 1,
  });
  const azurite = await startStorage(t);
  const { server, nc } = await startBus(t);
  const receiver = await startOtlpReceiver();
  t.teardown(() => receiver.close());
  const env = {
    OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url,
    OTEL_EXPORTER_OTLP_PROTOCOL: "http/json",
    OTEL_METRICS_EXPORTER: "none",
    OTEL_BSP_SCHEDULE_DELAY: "200",
    HSMFLEET_TRACE_PATHS: "full",
    // Every entry gets a span here (by default only files ≥ 1 MiB and failures do).
    HSMFLEET_TRACE_FILE_MIN_BYTES: "0",
    HSMFLEET_LOG_LEVEL: "debug",
  };
  // Credentials on the command line: they must reach neither spans nor logs.
  const storage = ["--storage", azurite.connectionString];

  const seen = new Set<string>();
  const sub = nc.subscribe(subjects.heartbeatAll, {
    callback: (_err, msg) => {
      seen.add(decodeWorkerHeartbeat(msg.data).workerId);
    },
  });
  t.teardown(() => sub.unsubscribe());
  const workers = ["vm-a", "vm-b"].map((vm) => {
    const child = spawnCli(
      ["--nats", server.url, ...storage, "worker", "--vm-name", vm, "--worker-id", `w-${vm}`],
      { env: { ...env, HSMFLEET_LOG_LEVEL: "debug" } },
    );
    let stderr = "";
    child.stderr?.on("data", (d: Buffer) => (stderr += d.toString()));
    t.teardown(() => {
      child.kill("SIGKILL");
    });
    return { child, stderr: () => stderr };
  });
  await waitFor("both workers' heartbeats", () => seen.has("w-vm-a") && seen.has("w-vm-b"));

  const run = await runCli(
    [
      "--nats",
      server.url,
      ...storage,
      "--workers",
      "0",
      "export",
      root,
      "--container",
      "traced",
      "--json",
    ],
    { env },
  );
  t.is(run.code, 0, run.stderr);
  const summary = JSON.parse(run.stdout) as { jobId: string; filesExported: number };
  t.is(summary.filesExported, manifest.files);
  // Workers flush their spans when they stop.
  for (const w of workers) w.child.kill("SIGTERM");
  for (const w of workers) t.like(await exitOf(w.child), { code: 0 });

  // OTLP export is at-least-once: a batch the receiver was slow to acknowledge is sent again, so
  // a span can arrive twice (seen on a loaded CI machine). Count each span id once.
  const spans = [...new Map(receiver.spans.map((s) => [s.spanId, s])).values()];
  const jobSpans = spans.filter((s) => s.name === "export job");
  t.is(jobSpans.length, 1, "one job span");
  const job = jobSpans[0]!;
  t.like(job, { service: "hsmfleet-coordinator", parentSpanId: "" });
  t.like(job.attributes, { "hsmfleet.job_id": summary.jobId, "hsmfleet.outcome": "succeeded" });
  const inTrace = spans.filter((s) => s.traceId === job.traceId);
  // Every span about this job is in its trace, and nothing else is.
  t.deepEqual(
    spans.filter(
      (s) => s.attributes["hsmfleet.job_id"] === summary.jobId && s.traceId !== job.traceId,
    ),
    [],
  );
  const phase = inTrace.find((s) => s.name === "export transfer");
  t.truthy(phase);
  t.is(phase!.parentSpanId, job.spanId);
  t.is(phase!.service, "hsmfleet-coordinator");

  const items = inTrace.filter((s) => s.name === "walk item" || s.name === "transfer item");
  const byId = new Map(inTrace.map((s) => [s.spanId, s]));
  // Work items are children of the phase, across NATS, in the worker processes.
  for (const item of items) {
    t.is(item.parentSpanId, phase!.spanId, item.name);
    t.is(item.service, "hsmfleet-worker");
    t.is(item.attributes["hsmfleet.outcome"], "ok");
  }
  // Every directory is walked once (siblings are grouped in shards, so fewer shards than directories).
  t.true(items.some((s) => s.name === "walk item"));
  t.true(items.some((s) => s.name === "transfer item"));
  const processes = new Set(items.map((s) => s.resource["hsmfleet.worker_id"]));
  t.deepEqual([...processes].sort(), ["w-vm-a", "w-vm-b"], "both worker processes took items");
  t.deepEqual([...new Set(items.map((s) => s.resource["hsmfleet.vm_name"]))].sort(), [
    "vm-a",
    "vm-b",
  ]);

  // File spans hang under transfer items; one per entry exported.
  const files = inTrace.filter((s) => s.name.startsWith("export "));
  const fileSpans = files.filter((s) => s.name !== "export job" && s.name !== "export transfer");
  const countOf = (type: string) =>
    fileSpans.filter((s) => s.attributes["hsmfleet.entry.type"] === type).length;
  t.is(countOf("file"), manifest.files);
  t.is(countOf("symlink"), manifest.symlinks);
  for (const f of fileSpans) t.is(byId.get(f.parentSpanId)?.name, "transfer item", f.name);
  const bytes = fileSpans.reduce((n, s) => n + Number(s.attributes["hsmfleet.bytes"] ?? 0), 0);
  t.is(bytes, manifest.bytes);
  t.true(fileSpans.every((s) => String(s.attributes["hsmfleet.path"]).length > 0));

  // No credential anywhere: not in exported telemetry, not in any log line.
  const everything = [...receiver.bodies, run.stderr, ...workers.map((w) => w.stderr())];
  for (const text of everything) {
    t.false(text.includes(AZURITE_ACCOUNT_KEY));
    t.false(text.includes(azurite.connectionString));
  }
});

const scrape = async (port: number): Promise<string> =>
  (await fetch(`http://127.0.0.1:${port}/metrics`)).text();

const metricValue = (text: string, name: string): number => {
  let total = 0;
  for (const line of text.split("\n"))
    if (line.startsWith(`${name}{`) || line.startsWith(`${name} `))
      total += Number(line.slice(line.lastIndexOf(" ") + 1));
  return total;
};

test("a worker's Prometheus endpoint shows bytes growing during a transfer", async (t) => {
  const dir = await tempDir();
  t.teardown(() => dir.cleanup());
  const root = join(dir.path, "tree");
  await generateTree(root, { depth: 0, fanout: 0, filesPerDir: 0 });
  const size = 96 * 1024 * 1024;
  await writeFile(join(root, "large.bin"), contentOf(3, Buffer.from("large"), size));
  const azurite = await startStorage(t);
  const { server } = await startBus(t);
  const port = await freePort();
  const env = { AZURE_STORAGE_CONNECTION_STRING: azurite.connectionString };
  const worker = spawnCli(
    ["--nats", server.url, "--metrics-port", String(port), "worker", "--vm-name", "prom"],
    { env: { ...env, HSMFLEET_METRICS_HOST: "127.0.0.1" } },
  );
  t.teardown(() => {
    worker.kill("SIGKILL");
  });
  await waitFor("the metrics endpoint", async () => {
    try {
      await scrape(port);
      return true;
    } catch {
      return false;
    }
  });
  const exporting = runCli(
    [
      "--nats",
      server.url,
      "--workers",
      "0",
      "export",
      root,
      "--container",
      "prom",
      "--block-size",
      "1MiB",
      "--quiet",
    ],
    { env },
  );
  const samples: number[] = [];
  let done = false;
  void exporting.finally(() => (done = true));
  while (!done) {
    samples.push(metricValue(await scrape(port), "hsmfleet_transfer_bytes_total"));
    await new Promise((r) => setTimeout(r, 20));
  }
  const run = await exporting;
  t.is(run.code, 0, run.stderr);
  const text = await scrape(port);
  t.is(metricValue(text, "hsmfleet_transfer_bytes_total"), size);
  const during = [...new Set(samples.filter((v) => v > 0 && v < size))];
  t.true(during.length >= 2, `values seen mid-transfer: ${during.join(", ")}`);
  t.deepEqual(
    during,
    [...during].sort((a, b) => a - b),
    "the counter only grows",
  );
  t.regex(text, /hsmfleet_transfer_files_total\{[^}]*outcome="ok"[^}]*\} 1/);
  t.regex(text, /hsmfleet_worker_concurrency\{[^}]*vm_name="prom"[^}]*\} 16/);
  // The storage request concurrency now (auto mode starts at 32).
  t.regex(text, /hsmfleet_worker_request_concurrency\{[^}]*vm_name="prom"[^}]*\} \d+/);
  t.regex(text, /hsmfleet_transfer_duration_bucket/);
  // Resource attributes as labels: per-VM panels need no join.
  t.regex(text, /hsmfleet_transfer_bytes_total\{[^}]*hsmfleet_vm_name="prom"/);
});

const promtool = spawnSync("promtool", ["--version"]).status === 0;
if (!promtool)
  console.warn(
    "promtool not found (Debian package `prometheus`): skipping the scrape config check",
  );
(promtool ? test : test.skip)(
  "deploy/prometheus/prometheus.yml passes promtool check config",
  (t) => {
    const r = spawnSync("promtool", [
      "check",
      "config",
      new URL("deploy/prometheus/prometheus.yml", REPO).pathname,
    ]);
    t.is(r.status, 0, `${r.stdout.toString()}${r.stderr.toString()}`);
  },
);

test("chunks and HSM action lists are spans of their job's trace across NATS, with their attributes", async (t) => {
  const MiB = 1024 * 1024;
  const dir = await tempDir();
  t.teardown(() => dir.cleanup());
  // A file of four chunks (2+2+2 MiB and 100 bytes: --chunk-size 2MiB, --block-size 1MiB) and a
  // small one; then four files archived and released.
  const root = join(dir.path, "tree");
  await mkdir(root);
  const big = contentOf(7, Buffer.from("chunked"), 6 * MiB + 100);
  await writeFile(join(root, "big.bin"), big);
  await writeFile(join(root, "small.bin"), "small");
  const hsmRoot = join(dir.path, "hsm");
  await mkdir(hsmRoot);
  const hsmFiles = ["a", "b", "c", "large"].map((n) => join(hsmRoot, n));
  for (const [i, p] of hsmFiles.entries())
    await writeFile(p, i === 3 ? contentOf(8, Buffer.from("large"), 2 * MiB) : `file ${i}`);

  const azurite = await startStorage(t);
  const { server, nc } = await startBus(t);
  const receiver = await startOtlpReceiver();
  t.teardown(() => receiver.close());
  // The default threshold (1 MiB): small chunks, small archives and releases are counted in their
  // item's span, not traced one by one.
  const env = {
    OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url,
    OTEL_EXPORTER_OTLP_PROTOCOL: "http/json",
    OTEL_METRICS_EXPORTER: "none",
    OTEL_BSP_SCHEDULE_DELAY: "200",
    HSMFLEET_TRACE_PATHS: "full",
  };
  const storage = ["--storage", azurite.connectionString];
  const seen = new Set<string>();
  const sub = nc.subscribe(subjects.heartbeatAll, {
    callback: (_err, msg) => {
      seen.add(decodeWorkerHeartbeat(msg.data).workerId);
    },
  });
  t.teardown(() => sub.unsubscribe());
  const workers = ["vm-a", "vm-b"].map((vm) => {
    const child = spawnCli(
      ["--nats", server.url, ...storage, "worker", "--vm-name", vm, "--worker-id", `w-${vm}`],
      { env },
    );
    t.teardown(() => {
      child.kill("SIGKILL");
    });
    return child;
  });
  await waitFor("both workers' heartbeats", () => seen.has("w-vm-a") && seen.has("w-vm-b"));
  const fleet = ["--nats", server.url, ...storage, "--workers", "0"];

  const exported = await runCli(
    [
      ...fleet,
      "export",
      root,
      "--container",
      "chunks",
      "--block-size",
      "1MiB",
      "--chunk-size",
      "2MiB",
      "--json",
    ],
    { env },
  );
  t.is(exported.code, 0, exported.stderr);
  const exportJobId = (JSON.parse(exported.stdout) as { jobId: string }).jobId;
  const hsm = ["--hsm-xattr", "user.hsm", "--root", hsmRoot, "--container", "hsm-traced"];
  const archived = await runCli([...fleet, "hsm", "archive", ...hsm, "--json", ...hsmFiles], {
    env,
  });
  t.is(archived.code, 0, archived.stderr);
  const archive = JSON.parse(archived.stdout) as { jobId: string; done: number };
  t.is(archive.done, 4);
  const released = await runCli([...fleet, "hsm", "release", ...hsm, "--json", ...hsmFiles], {
    env,
  });
  t.is(released.code, 0, released.stderr);
  const release = JSON.parse(released.stdout) as { jobId: string; done: number };
  t.is(release.done, 4);
  for (const w of workers) w.kill("SIGTERM");
  for (const w of workers) t.like(await exitOf(w), { code: 0 });

  const spans = [...new Map(receiver.spans.map((s) => [s.spanId, s])).values()];
  const byId = new Map(spans.map((s) => [s.spanId, s]));
  /** The job's root span and phase; every span naming the job is in its trace. */
  const traceOf = (name: string, phaseName: string, jobId: string) => {
    const job = spans.find((s) => s.name === name && s.attributes["hsmfleet.job_id"] === jobId);
    t.truthy(job, name);
    t.like(job!, { service: "hsmfleet-coordinator", parentSpanId: "" });
    t.deepEqual(
      spans.filter((s) => s.attributes["hsmfleet.job_id"] === jobId && s.traceId !== job!.traceId),
      [],
      `one trace for ${name} ${jobId}`,
    );
    const inTrace = spans.filter((s) => s.traceId === job!.traceId);
    const phase = inTrace.find((s) => s.name === phaseName);
    t.is(phase?.parentSpanId, job!.spanId, phaseName);
    return { inTrace, phase: phase! };
  };

  // (1) The chunked export: four chunk items, children of the phase, in the worker processes.
  const exp = traceOf("export job", "export transfer", exportJobId);
  const chunkItems = exp.inTrace.filter((s) => s.name === "chunk item");
  t.is(chunkItems.length, 4);
  for (const c of chunkItems) {
    t.is(c.parentSpanId, exp.phase.spanId);
    t.is(c.service, "hsmfleet-worker");
    t.like(c.attributes, {
      "hsmfleet.path": "big.bin",
      "hsmfleet.chunk.count": 4,
      "hsmfleet.file.size": big.length,
      "hsmfleet.outcome": "ok",
    });
  }
  t.deepEqual(chunkItems.map((c) => c.attributes["hsmfleet.chunk.index"]).sort(), [0, 1, 2, 3]);
  // The ranges' uploads, under their chunk items: the three of 2 MiB get spans, the 100-byte tail
  // (below HSMFLEET_TRACE_FILE_MIN_BYTES) is counted in its item only.
  const ranges = exp.inTrace.filter((s) => s.name === "export chunk");
  t.deepEqual(ranges.map((s) => s.attributes["hsmfleet.chunk.offset"]).sort(), [
    0,
    2 * MiB,
    4 * MiB,
  ]);
  for (const r of ranges) {
    t.is(byId.get(r.parentSpanId)?.name, "chunk item");
    t.like(r.attributes, {
      "hsmfleet.bytes": 2 * MiB,
      "hsmfleet.chunk.length": 2 * MiB,
      "hsmfleet.chunk.blocks": 2,
      "hsmfleet.path": "big.bin",
      "hsmfleet.outcome": "ok",
    });
  }
  // One commit, by the chunk that completed the file.
  const commits = exp.inTrace.filter((s) => s.name === "export commit");
  t.is(commits.length, 1);
  t.like(byId.get(commits[0]!.parentSpanId)?.attributes ?? {}, {
    "hsmfleet.chunk.committed": true,
  });
  t.is(chunkItems.filter((c) => c.attributes["hsmfleet.chunk.committed"] === true).length, 1);

  // (2) HSM jobs: one span per action list, a child of the job's phase across NATS.
  const arc = traceOf("hsm job", "hsm actions", archive.jobId);
  const arcLists = arc.inTrace.filter((s) => s.name === "hsm archive");
  t.true(arcLists.length > 0);
  for (const l of arcLists) {
    t.is(l.parentSpanId, arc.phase.spanId);
    t.is(l.service, "hsmfleet-worker");
    t.like(l.attributes, { "hsmfleet.hsm.action": "archive", "hsmfleet.outcome": "ok" });
  }
  const sum = (ss: typeof spans, key: string) =>
    ss.reduce((n, s) => n + Number(s.attributes[key] ?? 0), 0);
  t.is(sum(arcLists, "hsmfleet.files"), 4);
  t.is(sum(arcLists, "hsmfleet.hsm.done"), 4);
  t.is(sum(arcLists, "hsmfleet.bytes"), 2 * MiB + 3 * "file 0".length);
  // Only the large archive gets a span of its own.
  const arcFiles = arc.inTrace.filter((s) => s.name === "archive file");
  t.is(arcFiles.length, 1);
  t.like(arcFiles[0]!.attributes, {
    "hsmfleet.path": "large",
    "hsmfleet.bytes": 2 * MiB,
    "hsmfleet.outcome": "ok",
  });
  t.is(byId.get(arcFiles[0]!.parentSpanId)?.name, "hsm archive");

  const rel = traceOf("hsm job", "hsm actions", release.jobId);
  const relLists = rel.inTrace.filter((s) => s.name === "hsm release");
  t.true(relLists.length > 0);
  for (const l of relLists) t.is(l.parentSpanId, rel.phase.spanId);
  t.is(sum(relLists, "hsmfleet.hsm.done"), 4);
  // Releases are counted in their list's span: no span per file.
  t.is(rel.inTrace.filter((s) => s.name === "release file").length, 0);
});
