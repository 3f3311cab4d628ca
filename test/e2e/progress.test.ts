import { mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import test from "ava";
import { tempDir } from "@hsmfleet/testkit";
import { listJobs, runCli, spawnCli, startBus, startStorage, waitFor, exitOf } from "./helpers.js";

// Issue 16 item 1: the progress of an export moved only when a whole transfer batch ended. Here
// the whole job is one batch (24 files in one directory), slowed by --max-bandwidth: the piped
// progress lines and `status` must show files and bytes going up while that batch runs.
test("export progress (piped line mode, status --json) moves with the bytes before the first batch completes", async (t) => {
  const dir = await tempDir();
  t.teardown(() => dir.cleanup());
  const root = join(dir.path, "tree");
  await mkdir(root);
  const FILES = 24;
  const SIZE = 256 * 1024;
  for (let i = 0; i < FILES; i++) await writeFile(join(root, `f${i}`), Buffer.alloc(SIZE, i));
  const azurite = await startStorage(t);
  const { server } = await startBus(t);
  const env = {
    AZURE_STORAGE_CONNECTION_STRING: azurite.connectionString,
    HSMFLEET_PROGRESS_EVERY_MS: "500",
  };
  const base = ["--nats", server.url, "--workers", "1"];
  // 6 MiB at 1 MiB/s: about 6 s, all in one transfer batch.
  const child = spawnCli(
    [...base, "export", root, "--container", "slow", "--json", "--max-bandwidth", "1MiB/s"],
    { env },
  );
  t.teardown(() => void child.kill("SIGKILL"));
  let stderr = "";
  let stdout = "";
  child.stderr?.on("data", (d: Buffer) => (stderr += d.toString()));
  child.stdout?.on("data", (d: Buffer) => (stdout += d.toString()));
  let jobId = "";
  await waitFor("the job to run", async () => {
    jobId = (await listJobs(server.url)).find((j) => j.state === "running")?.jobId ?? "";
    return jobId !== "";
  });
  // `status` from another process while the batch runs.
  const midway: Array<{ state: string; filesExported: number; bytes: number }> = [];
  await waitFor(
    "status to show bytes moving",
    async () => {
      const s = await runCli([...base, "status", jobId, "--json"], { env });
      if (s.code !== 0) return false;
      const st = JSON.parse(s.stdout) as { state: string; filesExported: number; bytes: number };
      if (st.state !== "running") return true;
      midway.push(st);
      return st.bytes > 0 && st.bytes < FILES * SIZE;
    },
    60_000,
  );
  const exit = await exitOf(child);
  t.is(exit.code, 0, stderr);
  t.like(JSON.parse(stdout), { state: "succeeded", filesExported: FILES });
  const running = midway.filter((s) => s.state === "running");
  t.true(
    running.some((s) => s.bytes > 0 && s.bytes < FILES * SIZE && s.filesExported < FILES),
    `status while running: ${JSON.stringify(midway)}`,
  );
  const lines = stderr.split("\n").filter((l) => l.startsWith("export "));
  t.log(lines.join("\n"));
  const files = lines
    .map((l) => /: (\d+)\/(\d+) files/.exec(l))
    .filter((m) => m !== null)
    .map((m) => Number(m[1]));
  const partial = files.filter((f) => f > 0 && f < FILES);
  t.true(partial.length >= 2, "files done move while the only batch runs");
  t.true(new Set(partial).size >= 2, "and keep moving");
  const rates = lines.map((l) => /([\d.]+) MiB\/s/.exec(l)?.[1]).filter((r) => r !== undefined);
  t.true(
    rates.some((r) => Number(r) > 0),
    "the rate is not stuck at 0",
  );
  t.true(
    lines.some((l) => /ETA \d/.test(l)),
    "an ETA while it runs",
  );
});

// Issue 16 item 7: `hsm archive -r` showed no progress line, printed its bytes unformatted and
// its paths as //tmp/….
test("hsm archive -r shows a progress line, formats the bytes moved and prints paths without a doubled slash", async (t) => {
  const dir = await tempDir();
  t.teardown(() => dir.cleanup());
  const root = join(dir.path, "tree");
  await mkdir(root);
  for (let i = 0; i < 400; i++) await writeFile(join(root, `f${i}`), Buffer.alloc(4096, i));
  await writeFile(join(root, "big"), Buffer.alloc(3 * 1024 * 1024, 7));
  const azurite = await startStorage(t);
  const { server } = await startBus(t);
  const env = {
    AZURE_STORAGE_CONNECTION_STRING: azurite.connectionString,
    HSMFLEET_PROGRESS_EVERY_MS: "200",
  };
  const run = await runCli(
    [
      ...["--nats", server.url, "--workers", "1"],
      ...["hsm", "archive", "-r", root, "--hsm-xattr", "user.hsm", "--container", "arch", "-v"],
    ],
    { env, timeoutMs: 120_000 },
  );
  t.is(run.code, 0, run.stderr);
  const progress = run.stderr.split("\n").filter((l) => l.startsWith("hsm archive "));
  t.log(progress.join("\n"));
  t.true(progress.length >= 1, `a progress line on stderr: ${run.stderr}`);
  t.regex(progress.at(-1) ?? "", /\d+\/\d+ files/);
  t.regex(run.stdout, /items 401 in/);
  t.regex(run.stdout, /\d+(\.\d+)? MiB moved/, "bytes in human units");
  t.notRegex(run.stdout, /\d{7,} bytes/);
  t.notRegex(run.stdout, /\/\/tmp/, "no doubled slash in paths");
  t.regex(run.stdout, new RegExp(`^${root}/f0: done$`, "m"));
});
