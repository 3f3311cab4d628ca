import { mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import test from "ava";
import type { ExecutionContext } from "ava";
import { startNatsServer, tempDir } from "@hsmfleet/testkit";
import { runCli, startStorage } from "./helpers.js";

const PASSWORD = "Very-S3cret-pw-4711";

const authServer = async (t: ExecutionContext) => {
  const server = await startNatsServer({
    configText: `authorization { users: [ { user: "fleet", password: "${PASSWORD}" } ] }\n`,
  });
  t.teardown(() => server.stop());
  return server;
};

test("a worker with wrong NATS credentials fails to start with a clear message and never shows the password", async (t) => {
  const server = await authServer(t);
  const run = await runCli(["--nats", server.url, "worker"], {
    env: { NATS_USER: "fleet", NATS_PASSWORD: "wrong-Pw-0815" },
    timeoutMs: 30_000,
  });
  t.is(run.code, 2);
  t.regex(run.stderr, /hsmfleet: NATS at nats:\/\/127\.0\.0\.1:\d+ refused the connection/);
  t.regex(run.stderr, /user "fleet"/);
  t.false(`${run.stdout}${run.stderr}`.includes("wrong-Pw-0815"));

  // The password in the URL is not shown either.
  const inUrl = await runCli(
    ["--nats", server.url.replace("nats://", "nats://fleet:wrong-Pw-0815@"), "jobs"],
    { timeoutMs: 30_000 },
  );
  t.is(inUrl.code, 2);
  t.false(`${inUrl.stdout}${inUrl.stderr}`.includes("wrong-Pw-0815"), inUrl.stderr);
});

test("with the right credentials (flags or NATS_* variables) an export runs against a secured server", async (t) => {
  const server = await authServer(t);
  const azurite = await startStorage(t);
  const dir = await tempDir();
  t.teardown(() => dir.cleanup());
  const root = join(dir.path, "tree");
  await mkdir(root);
  for (const n of ["a", "b", "c"]) await writeFile(join(root, n), n);
  const run = await runCli(
    [
      "--nats",
      server.url,
      "--nats-user",
      "fleet",
      "--workers",
      "1",
      "--log-level",
      "debug",
      "export",
      root,
      "--container",
      "secured",
      "--json",
      "--quiet",
    ],
    {
      env: { NATS_PASSWORD: PASSWORD, AZURE_STORAGE_CONNECTION_STRING: azurite.connectionString },
      timeoutMs: 60_000,
    },
  );
  t.is(run.code, 0, run.stderr);
  t.like(JSON.parse(run.stdout) as object, { state: "succeeded", filesExported: 3 });
  t.false(`${run.stdout}${run.stderr}`.includes(PASSWORD), "no password in any output");
  const jobs = await runCli(["--nats", server.url, "jobs", "--json"], {
    env: { NATS_USER: "fleet", NATS_PASSWORD: PASSWORD },
  });
  t.is(jobs.code, 0, jobs.stderr);
  t.false(`${jobs.stdout}${jobs.stderr}`.includes(PASSWORD));
});
