import { mkdir, utimes, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";

import test from "ava";
import { HsmFlag } from "@hsmfleet/core";
import { HsmEmulationBackend, hsmAtAbsolutePaths } from "@hsmfleet/fs";
import { tempDir } from "@hsmfleet/testkit";

import { TEST_TOPOLOGY, exitOf, runCli, spawnCli, startBus } from "./helpers.js";

const XATTR = "user.hsm";
const hsm = hsmAtAbsolutePaths(new HsmEmulationBackend({ xattr: XATTR }));

test("policy check: a valid file prints the resolved policies; a bad one names line and key, exit 2", async (t) => {
  const dir = await tempDir();
  t.teardown(() => dir.cleanup());
  const good = join(dir.path, "good.yaml");
  await writeFile(
    good,
    "policies:\n  lru:\n    action: release\n    root: /mnt/fs\n    rules: [{ last_access: 1d }]\n    triggers: { usage: { of: ost, high: 85%, low: 80% } }\n",
  );
  const ok = await runCli(["policy", "check", good]);
  t.is(ok.code, 0, ok.stderr);
  t.regex(ok.stdout, /lru: release under \/mnt\/fs/);
  t.regex(ok.stdout, /any OST above 85% used, until 80%/);
  const bad = join(dir.path, "bad.yaml");
  await writeFile(bad, "policies:\n  lru:\n    action: relase\n");
  const no = await runCli(["policy", "check", bad]);
  t.is(no.code, 2);
  t.regex(
    no.stderr,
    /bad\.yaml:3:\d+: policies\.lru\.action: "relase" is not archive, release or remove/,
  );
});

test("policy run --dry-run and --execute, and policy serve stops cleanly on SIGTERM, through the CLI", async (t) => {
  t.timeout(120_000);
  const dir = await tempDir();
  t.teardown(() => dir.cleanup());
  const root = join(dir.path, "fs");
  await mkdir(join(root, "d"), { recursive: true });
  const now = Date.now() / 1000;
  for (let i = 0; i < 5; i++) {
    const p = join(root, "d", `f${i}`);
    await writeFile(p, `data ${i}`);
    await utimes(p, now - (10 + i) * 86_400, now - 30 * 86_400);
    await hsm.markArchived(Buffer.from(p), 1);
  }
  const policies = join(dir.path, "policies.yaml");
  await writeFile(
    policies,
    `settings: { hsm_xattr: ${XATTR} }\npolicies:\n  lru:\n    action: release\n    root: ${root}\n    rules: [{ last_access: 1d }]\n    limits: { max_actions: 3 }\n`,
  );
  const { server } = await startBus(t, TEST_TOPOLOGY);
  const base = ["--nats", server.url, "--workers", "1"];
  const dry = await runCli([...base, "policy", "run", "lru", "--dry-run", "--policies", policies]);
  t.is(dry.code, 0, dry.stderr);
  t.regex(dry.stdout, /eligible: 5 files/);
  t.regex(dry.stdout, /would release d\/f4 .*\n.*would release d\/f3/);
  t.is(
    (await hsm.state(Buffer.from(join(root, "d/f4"))))?.flags,
    HsmFlag.Exists | HsmFlag.Archived,
  );
  const run = await runCli([
    ...base,
    "policy",
    "run",
    "lru",
    "--execute",
    "--json",
    "--policies",
    policies,
  ]);
  t.is(run.code, 0, run.stderr);
  const summary = JSON.parse(run.stdout) as { done: number; selected: number };
  t.like(summary, { done: 3, selected: 3 });
  t.true(await hsm.isReleased(Buffer.from(join(root, "d/f2"))));
  t.false(await hsm.isReleased(Buffer.from(join(root, "d/f1"))));
  const serve = spawnCli([...base, "policy", "serve", "--policies", policies]);
  await sleep(3000);
  serve.kill("SIGTERM");
  const exit = await exitOf(serve);
  t.deepEqual(exit, { code: 0, signal: null });
});
