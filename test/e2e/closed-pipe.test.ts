import test from "ava";
import { runCli, startBus } from "./helpers.js";

// `hsmfleet jobs | head -1`: the reader goes away before the command has written everything.
// Closing our end of the pipe before the child writes anything makes every write of the child
// fail with EPIPE, every time (no race with how much `head` reads).

test("a closed stdout: jobs, status --json, plan and --help exit quietly with their own exit code", async (t) => {
  const { server } = await startBus(t);
  const nats = ["--nats", server.url];
  for (const [args, code] of [
    [[...nats, "jobs"], 0],
    [[...nats, "jobs", "--json"], 0],
    [["plan", "--target", "7.5GiB/s", "--vm-size", "Standard_D32ds_v5"], 0],
    [["--help"], 0],
  ] as const) {
    const run = await runCli([...args], { closeStdout: true });
    t.is(run.stderr, "", `${args.join(" ")}: nothing on stderr`);
    t.is(run.code, code, `${args.join(" ")}: exit code`);
  }
});

test("a closed stderr (and stdout): an error exits with its own exit code, not a crash", async (t) => {
  const { server } = await startBus(t);
  // An unknown job: the error line goes to the closed stderr; the exit code stays 2 (a crash on
  // the failed write would be 1 or 7).
  const unknown = await runCli(["--nats", server.url, "status", "no-such-job"], {
    closeStderr: true,
  });
  t.is(unknown.code, 2);
  t.is(unknown.stdout, "");
  // `hsmfleet jobs 2>&1 | head -1`: both closed.
  const both = await runCli(["--nats", server.url, "jobs"], {
    closeStdout: true,
    closeStderr: true,
  });
  t.is(both.code, 0);
  t.is(both.signal, null);
});
