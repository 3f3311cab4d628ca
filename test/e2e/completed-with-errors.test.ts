import { mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import test from "ava";
import { tempDir } from "@hsmfleet/testkit";
import { runCli, startBus, startStorage } from "./helpers.js";

// Issue 16 item 11: a job that ends with errors under --max-errors -1 did not succeed; it is
// "completed with N errors" (AMLFS's CompletedPartial) in the summary, `status`, --json and the
// job record, and the command exits 1.
test("an export with errors under --max-errors -1 is completed with errors in the CLI, status, --json and the job record", async (t) => {
  const dir = await tempDir();
  t.teardown(() => dir.cleanup());
  const root = join(dir.path, "tree");
  // Two files whose blob names are over 1,024 characters: two errors; one good file.
  let deep = root;
  // (the directory's own name, 1,003 characters, is fine).
  for (let i = 0; i < 4; i++) deep = join(deep, String(i).repeat(250));
  await mkdir(deep, { recursive: true });
  await writeFile(join(deep, "f".repeat(30)), "x");
  await writeFile(join(deep, "g".repeat(30)), "y");
  await writeFile(join(root, "ok"), "ok");
  const azurite = await startStorage(t);
  const { server } = await startBus(t);
  const env = { AZURE_STORAGE_CONNECTION_STRING: azurite.connectionString };
  const base = ["--nats", server.url, "--workers", "1"];
  const exportArgs = [...base, "export", root, "--container", "partial", "--max-errors", "-1"];

  const text = await runCli([...exportArgs, "--quiet"], { env, timeoutMs: 120_000 });
  t.is(text.code, 1, text.stderr);
  t.regex(text.stdout, /: completed with 2 errors/, text.stdout);
  t.notRegex(text.stdout, /succeeded/);

  const json = await runCli([...exportArgs, "--quiet", "--json"], { env, timeoutMs: 120_000 });
  t.is(json.code, 1, json.stderr);
  const summary = JSON.parse(json.stdout) as { jobId: string; state: string; errors: number };
  t.like(summary, { state: "completed-with-errors", errors: 2 });

  const status = await runCli([...base, "status", summary.jobId, "--json"], { env });
  t.is(status.code, 0, status.stderr);
  t.like(JSON.parse(status.stdout), { state: "completed-with-errors", errors: 2 });
  const statusText = await runCli([...base, "status", summary.jobId], { env });
  t.regex(statusText.stdout, /: completed with 2 errors/, statusText.stdout);

  const jobs = await runCli([...base, "jobs", "--json"], { env });
  const listed = (JSON.parse(jobs.stdout) as Array<{ jobId: string; state: string }>).find(
    (j) => j.jobId === summary.jobId,
  );
  t.is(listed?.state, "completed-with-errors", "the job record holds the state");
});
