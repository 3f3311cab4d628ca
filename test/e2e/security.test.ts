import { mkdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import test from "ava";
import type { ExecutionContext } from "ava";
import { connectBus, jetstream } from "@hsmfleet/bus";
import { startNatsServer, tempDir } from "@hsmfleet/testkit";
import { runCli, spawnCli, startStorage, waitFor } from "./helpers.js";

const PASSWORD = "Very-S3cret-pw-4711";

const authServer = async (t: ExecutionContext) => {
  const server = await startNatsServer({
    configText: `authorization { users: [ { user: "fleet", password: "${PASSWORD}" } ] }\n`,
  });
  t.teardown(() => server.stop());
  return server;
};

/** The password-protected server, Azurite and a tree of one-line files `names`. */
const securedWorld = async (t: ExecutionContext, names: string[]) => {
  const server = await authServer(t);
  const azurite = await startStorage(t);
  const dir = await tempDir();
  t.teardown(() => dir.cleanup());
  const root = join(dir.path, "tree");
  await mkdir(root);
  for (const n of names) await writeFile(join(root, n), n);
  return { server, azurite, root };
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
  const { server, azurite, root } = await securedWorld(t, ["a", "b", "c"]);
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

test("every command that runs its own workers connects with the NATS credentials (hsm, scan, report)", async (t) => {
  const { server, azurite, root } = await securedWorld(t, ["a", "b"]);
  const env = {
    NATS_USER: "fleet",
    NATS_PASSWORD: PASSWORD,
    AZURE_STORAGE_CONNECTION_STRING: azurite.connectionString,
  };
  const fleet = ["--nats", server.url, "--workers", "1"];
  const commands: { argv: string[]; expect: object }[] = [
    {
      argv: ["hsm", "archive", "-r", root, "--container", "arch", "--json", "--quiet"],
      expect: { done: 2, failed: 0 },
    },
    { argv: ["scan", root, "--json"], expect: { files: 2 } },
    { argv: ["report", root, "--json"], expect: { state: "succeeded", files: { count: 2 } } },
  ];
  for (const { argv, expect } of commands) {
    const run = await runCli([...fleet, ...argv], { env, timeoutMs: 90_000 });
    t.is(run.code, 0, `${argv.join(" ")}: ${run.stderr}`);
    t.like(JSON.parse(run.stdout || "{}") as object, expect, argv.join(" "));
    t.false(`${run.stdout}${run.stderr}`.includes(PASSWORD), `${argv[0]}: no password shown`);
  }
});

test("the NATS permissions of deploy/nats/hsmfleet-permissions.conf run an export with a worker and a coordinator user; an other user cannot touch hsmfleet subjects", async (t) => {
  const confPath = fileURLToPath(
    new URL("../../../deploy/nats/hsmfleet-permissions.conf", import.meta.url),
  );
  const server = await startNatsServer({ configText: await readFile(confPath, "utf8") });
  t.teardown(() => server.stop());
  const azurite = await startStorage(t);
  const dir = await tempDir();
  t.teardown(() => dir.cleanup());
  const root = join(dir.path, "tree");
  await mkdir(join(root, "sub"), { recursive: true });
  for (const n of ["a", "b", "sub/c"]) await writeFile(join(root, n), n);
  const storageEnv = { AZURE_STORAGE_CONNECTION_STRING: azurite.connectionString };

  // The coordinator's user creates the topology (the first export does), then a worker attaches.
  const jobsRun = await runCli(["--nats", server.url, "jobs", "--json"], {
    env: { NATS_USER: "coordinator", NATS_PASSWORD: "change-me-coordinator" },
  });
  t.is(jobsRun.code, 0, jobsRun.stderr);
  const worker = spawnCli(["--nats", server.url, "--log-level", "info", "worker"], {
    env: { ...storageEnv, NATS_USER: "worker", NATS_PASSWORD: "change-me-worker" },
  });
  let workerLog = "";
  worker.stdout?.on("data", (d: Buffer) => (workerLog += d.toString()));
  worker.stderr?.on("data", (d: Buffer) => (workerLog += d.toString()));
  t.teardown(() => worker.kill("SIGKILL"));
  await waitFor("the worker to start", () => workerLog.includes("worker started"), 30_000).catch(
    () => t.fail(workerLog),
  );
  const run = await runCli(
    [
      "--nats",
      server.url,
      "--workers",
      "0",
      "export",
      root,
      "--container",
      "perm",
      "--json",
      "--quiet",
    ],
    {
      env: { ...storageEnv, NATS_USER: "coordinator", NATS_PASSWORD: "change-me-coordinator" },
      timeoutMs: 90_000,
    },
  );
  t.is(run.code, 0, `${run.stderr}\n--- worker:\n${workerLog}\n--- server:\n${server.logs()}`);
  t.like(JSON.parse(run.stdout || "{}") as object, { state: "succeeded", filesExported: 3 });
  t.false(/Permissions Violation/i.test(workerLog), workerLog);
  // Nor did the server refuse anything either side sent or subscribed to (item progress, cancel
  // notices, heartbeats: core NATS subjects fail silently on the client).
  t.false(/Violation/i.test(server.logs()), server.logs());

  // Another application's user can neither publish work nor read job records.
  const other = await connectBus({
    servers: server.url,
    auth: { user: "other", password: "change-me-other" },
    reconnectForever: false,
  });
  t.teardown(() => other.close());
  const js = jetstream(other);
  await t.throwsAsync(js.publish("hsmfleet.work.x.walk", Buffer.from("forged"), { timeout: 2000 }));
  await t.throwsAsync(js.jetstreamManager().then((m) => m.streams.info("KV_hsmfleet-jobs")));
});
