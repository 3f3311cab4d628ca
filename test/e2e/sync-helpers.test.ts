import { spawn } from "node:child_process";
import test from "ava";
import { startBus } from "./helpers.js";
import { waitInStep } from "./sync-helpers.js";
import type { SyncServiceProcess } from "./sync-helpers.js";

/** A stand-in for a sync service that never saves a status: writes to stderr, then waits or exits. */
const standIn = (exitAfterMs: number | undefined): SyncServiceProcess => {
  const script =
    `process.stderr.write("stand-in service: stuck before its first status\\n");` +
    (exitAfterMs === undefined
      ? "setInterval(() => {}, 1000);"
      : `setTimeout(() => process.exit(3), ${exitAfterMs});`);
  const child = spawn(process.execPath, ["-e", script], { stdio: ["ignore", "ignore", "pipe"] });
  let stderr = "";
  child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
  return { child, stderr: () => stderr };
};

test("a sync wait that times out says what it waited for, what was not met, and shows the service's stderr", async (t) => {
  const { nc } = await startBus(t);
  const service = standIn(undefined);
  t.teardown(() => void service.child.kill("SIGKILL"));
  // This test is about the wait's own deadline: 3 s is that deadline, not a shortened one.
  const err = await t.throwsAsync(
    waitInStep(nc, "never", 0, { service, deletes: true, timeoutMs: 3_000 }),
  );
  t.regex(err.message, /^waiting for sync never in step since .*: timed out after \d+ ms/);
  t.regex(err.message, /not met: a status saved in KV \(none yet\)/);
  t.regex(err.message, /last status: undefined/);
  t.regex(err.message, /service: running \(pid \d+\); its stderr:\nstand-in service: stuck/);
});

test("a sync wait ends as soon as the service exits, with its exit status and stderr", async (t) => {
  const { nc } = await startBus(t);
  const service = standIn(500);
  t.teardown(() => void service.child.kill("SIGKILL"));
  const started = Date.now();
  const err = await t.throwsAsync(waitInStep(nc, "gone", 0, { service }));
  t.true(Date.now() - started < 100_000, "did not wait out the 120 s deadline");
  t.regex(err.message, /: the service exited after \d+ ms/);
  t.regex(err.message, /service: exited \(code 3, signal null\); its stderr:\nstand-in service/);
});
