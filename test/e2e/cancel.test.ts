import { writeFile, mkdir } from "node:fs/promises";
import { join } from "node:path";
import test from "ava";
import { tempDir } from "@hsmfleet/testkit";
import { exitOf, listJobs, runCli, spawnCli, startBus, startStorage, waitFor } from "./helpers.js";
import type { ChildProcess } from "node:child_process";

/** Collects a child's stdout and stderr. */
const collect = (child: ChildProcess) => {
  const out = { stdout: "", stderr: "" };
  child.stdout?.on("data", (d: Buffer) => (out.stdout += d.toString()));
  child.stderr?.on("data", (d: Buffer) => (out.stderr += d.toString()));
  return out;
};

// Issue 16 items 1 and 12: Ctrl-C on a running export. The files the workers finished before the
// cancel are reported as exported — the count a re-run then finds already there — and a cancelled
// item is logged as cancelled, not as a failure handed back.
test("Ctrl-C on an export: the files reported exported are exactly those a re-run finds already exported; no failure warnings", async (t) => {
  const dir = await tempDir();
  t.teardown(() => dir.cleanup());
  const root = join(dir.path, "tree");
  await mkdir(root);
  const FILES = 120;
  for (let i = 0; i < FILES; i++)
    await writeFile(join(root, `f${String(i).padStart(3, "0")}`), Buffer.alloc(64 * 1024, i));
  const azurite = await startStorage(t);
  const { server } = await startBus(t);
  const env = { AZURE_STORAGE_CONNECTION_STRING: azurite.connectionString };
  const base = ["--nats", server.url, "--workers", "1"];
  // 7.5 MiB at 1 MiB/s: about 8 s; Ctrl-C after about 3 s.
  const first = spawnCli(
    [
      ...base,
      "export",
      root,
      "--container",
      "cut",
      "--json",
      "--quiet",
      "--max-bandwidth",
      "1MiB/s",
    ],
    { env: { ...env, HSMFLEET_LOG_LEVEL: "info" } },
  );
  t.teardown(() => void first.kill("SIGKILL"));
  const out = collect(first);
  await waitFor("the job to run", async () =>
    (await listJobs(server.url)).some((j) => j.state === "running"),
  );
  await new Promise((r) => setTimeout(r, 3000));
  first.kill("SIGINT");
  const exit = await exitOf(first);
  t.is(exit.code, 130, out.stderr);
  const cancelled = JSON.parse(out.stdout) as {
    state: string;
    filesExported: number;
    bytes: number;
  };
  t.is(cancelled.state, "cancelled");
  t.log(`cancelled after ${cancelled.filesExported} of ${FILES} files`);
  t.true(cancelled.filesExported > 0 && cancelled.filesExported < FILES, out.stdout);
  t.is(cancelled.bytes, cancelled.filesExported * 64 * 1024);
  const warnings = out.stderr
    .split("\n")
    .filter((l) => /failed; handed back|"level":(40|50)|WARN|ERROR/.test(l));
  t.deepEqual(warnings, [], "a cancelled item is not a failure");

  const again = await runCli([...base, "export", root, "--container", "cut", "--json", "--quiet"], {
    env,
    timeoutMs: 120_000,
  });
  t.is(again.code, 0, again.stderr);
  const rerun = JSON.parse(again.stdout) as { skipped: number; filesExported: number };
  t.is(rerun.skipped, cancelled.filesExported, "what the cancelled run reported is what is there");
  t.is(rerun.filesExported, FILES - cancelled.filesExported);
});

// Issue 16 item 2: `hsmfleet cancel` of an HSM job stopped nothing and said it had.
test("hsmfleet cancel stops a running hsm archive: the archive ends cancelled, the job record says so, cancel exits 0", async (t) => {
  const dir = await tempDir();
  t.teardown(() => dir.cleanup());
  const root = join(dir.path, "tree");
  await mkdir(root);
  const FILES = 3000;
  for (let i = 0; i < FILES; i++) await writeFile(join(root, `f${i}`), `file ${i}`);
  const azurite = await startStorage(t);
  const { server } = await startBus(t);
  const env = { AZURE_STORAGE_CONNECTION_STRING: azurite.connectionString };
  const base = ["--nats", server.url, "--workers", "1"];
  const archive = spawnCli(
    [
      ...base,
      "hsm",
      "archive",
      "-r",
      root,
      "--hsm-xattr",
      "user.hsm",
      "--container",
      "arch",
      "--json",
    ],
    { env },
  );
  t.teardown(() => void archive.kill("SIGKILL"));
  const out = collect(archive);
  let jobId = "";
  await waitFor("the HSM job to run", async () => {
    jobId = (await listJobs(server.url)).find((j) => j.state === "running")?.jobId ?? "";
    return jobId !== "";
  });
  await new Promise((r) => setTimeout(r, 1000));
  const cancel = await runCli([...base, "cancel", jobId], { env });
  t.is(cancel.code, 0, cancel.stderr);
  t.regex(cancel.stdout, /cancelled/);
  t.notRegex(cancel.stdout, /no coordinator answered/);
  const exit = await exitOf(archive);
  t.is(exit.code, 130, out.stderr);
  const summary = JSON.parse(out.stdout) as { state: string; done: number; items: number };
  t.is(summary.state, "cancelled", out.stdout);
  t.true(summary.done < FILES, `${summary.done} of ${FILES} archived before the cancel`);
  const record = (await listJobs(server.url)).find((j) => j.jobId === jobId);
  t.is(record?.state, "cancelled");
});

test("hsmfleet cancel exits non-zero and says so when the job had already ended", async (t) => {
  const { server } = await startBus(t);
  const dir = await tempDir();
  t.teardown(() => dir.cleanup());
  const scan = await runCli(["--nats", server.url, "--workers", "1", "scan", dir.path, "--json"]);
  const jobId = (JSON.parse(scan.stdout) as { jobId: string }).jobId;
  const cancel = await runCli(["--nats", server.url, "cancel", jobId]);
  t.not(cancel.code, 0);
  t.regex(cancel.stderr, /already ended/);
});

test("hsmfleet cancel from another terminal stops an export; a job whose coordinator died is cancelled by cancel itself, which says so", async (t) => {
  const dir = await tempDir();
  t.teardown(() => dir.cleanup());
  const root = join(dir.path, "tree");
  await mkdir(root);
  for (let i = 0; i < 200; i++) await writeFile(join(root, `f${i}`), Buffer.alloc(64 * 1024, i));
  const azurite = await startStorage(t);
  const { server } = await startBus(t);
  const env = { AZURE_STORAGE_CONNECTION_STRING: azurite.connectionString };
  const base = ["--nats", server.url, "--workers", "1"];
  const running = spawnCli(
    [...base, "export", root, "--container", "other", "--json", "--quiet"].concat([
      "--max-bandwidth",
      "512KiB/s",
    ]),
    { env },
  );
  t.teardown(() => void running.kill("SIGKILL"));
  const out = collect(running);
  let jobId = "";
  await waitFor("the export to run", async () => {
    jobId = (await listJobs(server.url)).find((j) => j.state === "running")?.jobId ?? "";
    return jobId !== "";
  });
  await new Promise((r) => setTimeout(r, 1500));
  const cancel = await runCli([...base, "cancel", jobId], { env });
  t.is(cancel.code, 0, cancel.stderr);
  t.regex(cancel.stdout, new RegExp(`^${jobId}: cancelled \\(cancelled by request\\)`));
  t.is((await exitOf(running)).code, 130, out.stderr);
  t.like(JSON.parse(out.stdout), { jobId, state: "cancelled" });

  // No workers, and the coordinator is killed: nobody answers the cancel.
  const orphan = spawnCli(
    ["--nats", server.url, "--workers", "0", "export", root, "--container", "orphan", "--quiet"],
    { env },
  );
  t.teardown(() => void orphan.kill("SIGKILL"));
  const orphanOut = collect(orphan);
  let orphanExited = false;
  orphan.once("exit", () => (orphanExited = true));
  let orphanId = "";
  await waitFor(
    "the second export to run",
    async () => {
      if (orphanExited) throw new Error(`the second export ended early: ${orphanOut.stderr}`);
      orphanId =
        (await listJobs(server.url)).find((j) => j.state === "running" && j.jobId !== jobId)
          ?.jobId ?? "";
      return orphanId !== "";
    },
    60_000,
  );
  orphan.kill("SIGKILL");
  await exitOf(orphan);
  const takeover = await runCli(["--nats", server.url, "cancel", orphanId], { env });
  t.is(takeover.code, 0, takeover.stderr);
  t.regex(takeover.stdout, /cancelled \(.*no coordinator answered/);
  t.is((await listJobs(server.url)).find((j) => j.jobId === orphanId)?.state, "cancelled");
});
