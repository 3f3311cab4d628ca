import test from "ava";
import { tempDir } from "@hsmfleet/testkit";
import { exitOf, runCli, spawnCli, waitFor } from "./helpers.js";

test("hsmfleet worker without --nats joins the local `hsmfleet server`, as other commands do", async (t) => {
  const dir = await tempDir();
  t.teardown(() => dir.cleanup());
  const env = { HSMFLEET_STATE_DIR: dir.path, HSMFLEET_NATS_URL: "" };
  const server = spawnCli(["server"], { env });
  t.teardown(() => server.kill("SIGKILL"));
  let serverOut = "";
  server.stdout?.on("data", (d: Buffer) => (serverOut += d.toString()));
  await waitFor("hsmfleet server to start", () => /nats-server at nats:\/\//.test(serverOut));

  const worker = spawnCli(["worker", "--vm-name", "local-vm"], { env });
  t.teardown(() => worker.kill("SIGKILL"));
  let workerErr = "";
  worker.stderr?.on("data", (d: Buffer) => (workerErr += d.toString()));
  let seen: Array<{ vmName: string }> = [];
  await waitFor(
    "the worker's heartbeat on the local server",
    async () => {
      if (worker.exitCode !== null)
        throw new Error(`worker exited ${worker.exitCode}: ${workerErr}`);
      const run = await runCli(["workers", "--wait", "1500", "--json"], { env });
      seen = run.code === 0 ? (JSON.parse(run.stdout) as typeof seen) : [];
      return seen.some((w) => w.vmName === "local-vm");
    },
    60_000,
  );
  t.true(seen.some((w) => w.vmName === "local-vm"));
  worker.kill("SIGTERM");
  t.is((await exitOf(worker)).code, 0, workerErr);
  server.kill("SIGTERM");
  await exitOf(server);
});

test("hsmfleet worker with no --nats and no local server says how to give one", async (t) => {
  const dir = await tempDir();
  t.teardown(() => dir.cleanup());
  const run = await runCli(["worker"], {
    env: { HSMFLEET_STATE_DIR: dir.path, HSMFLEET_NATS_URL: "" },
  });
  t.is(run.code, 2);
  t.regex(run.stderr, /--nats URL.*or start `hsmfleet server`/);
});
