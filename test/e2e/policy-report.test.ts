import { chown, mkdir, utimes, writeFile } from "node:fs/promises";
import { join } from "node:path";

import test from "ava";
import { LAST_REPORT_KEY, POLICY_STATE_BUCKET, readPolicyPanel } from "@hsmfleet/coordinator";
import { startDashboard } from "@hsmfleet/dashboard";
import type { FleetReport } from "@hsmfleet/coordinator";
import { HsmEmulationBackend, hsmAtAbsolutePaths } from "@hsmfleet/fs";
import { tempDir } from "@hsmfleet/testkit";
import { Kvm } from "@nats-io/kv";

import { TEST_TOPOLOGY, runCli, startBus, waitFor } from "./helpers.js";

const XATTR = "user.hsm";
const hsm = hsmAtAbsolutePaths(new HsmEmulationBackend({ xattr: XATTR }));

test("hsmfleet report: counts and bytes by HSM state, owner, group, class, size profile; oldest files; top directories; table and --json", async (t) => {
  t.timeout(120_000);
  const dir = await tempDir();
  t.teardown(() => dir.cleanup());
  const root = join(dir.path, "fs");
  const now = Date.now() / 1000;
  await mkdir(join(root, "big"), { recursive: true });
  await mkdir(join(root, "small/deeper"), { recursive: true });
  // big/: 3 files of 100 KiB owned by 1001:2002, archived; small/: 10 files of 10 B, new;
  // small/deeper/ancient: the oldest.
  for (let i = 0; i < 3; i++) {
    const p = join(root, "big", `b${i}`);
    await writeFile(p, Buffer.alloc(100 * 1024, i));
    await chown(p, 1001, 2002);
    await hsm.markArchived(Buffer.from(p), 1);
  }
  for (let i = 0; i < 10; i++) await writeFile(join(root, "small", `s${i}.log`), "0123456789");
  const ancient = join(root, "small/deeper/ancient");
  await writeFile(ancient, "");
  await utimes(ancient, now, 1_000_000_000);
  const policies = join(dir.path, "p.yaml");
  await writeFile(
    policies,
    `settings: { hsm_xattr: ${XATTR} }\nfileclasses:\n  logs: { path: "*.log" }\n  large: { size_min: 64KiB }\npolicies: {}\n`,
  );
  const { server, nc } = await startBus(t, TEST_TOPOLOGY);
  const base = ["--nats", server.url, "--workers", "2"];
  const json = await runCli([
    ...base,
    "report",
    root,
    "--policies",
    policies,
    "--top",
    "3",
    "--json",
  ]);
  t.is(json.code, 0, json.stderr);
  const r = JSON.parse(json.stdout) as FleetReport;
  t.deepEqual(r.files, { count: 14, bytes: 3 * 100 * 1024 + 100 });
  t.deepEqual(r.byState, {
    archived: { count: 3, bytes: 307200 },
    new: { count: 11, bytes: 100 },
  });
  t.deepEqual(r.byUid["1001"], { count: 3, bytes: 307200 });
  t.deepEqual(r.byGid["2002"], { count: 3, bytes: 307200 });
  t.deepEqual(r.byClass, {
    large: { count: 3, bytes: 307200 },
    logs: { count: 10, bytes: 100 },
    "(none)": { count: 1, bytes: 0 },
  });
  t.deepEqual(
    r.sizeProfile.map((b) => b.count),
    [1, 10, 0, 0, 3, 0, 0, 0, 0, 0],
  );
  t.is(r.oldest[0]?.path, "small/deeper/ancient");
  t.is(r.oldest.length, 3);
  t.deepEqual(
    r.topDirs.map((d) => [d.path, d.count, d.bytes]),
    [
      ["big", 3, 307200],
      ["small", 10, 100],
      ["small/deeper", 1, 0],
    ],
  );
  const table = await runCli([...base, "report", root, "--policies", policies]);
  t.is(table.code, 0, table.stderr);
  t.regex(
    table.stdout,
    /by HSM state:\n\s+state\s+files\s+bytes\s+%bytes\n\s+archived\s+3\s+300 KiB\s+100\.0/,
  );
  t.regex(table.stdout, /size profile:[\s\S]*32K~1M-\s+3/);
  t.regex(table.stdout, /top directories[\s\S]*300 KiB\s+3 files\s+big/);
  // The last report is kept for the dashboard.
  const kv = await new Kvm(nc).open(POLICY_STATE_BUCKET);
  const kept = JSON.parse((await kv.get(LAST_REPORT_KEY))!.string()) as FleetReport;
  t.is(kept.files.count, 14);
  const dashboard = await startDashboard({
    nc,
    listJobs: () => Promise.resolve([]),
    port: 0,
    intervalMs: 200,
    policies: () => readPolicyPanel(nc),
  });
  t.teardown(() => dashboard.close());
  let shown: { report?: { files: { count: number } } } | undefined;
  await waitFor("the report on the dashboard", async () => {
    const snap = (await (await fetch(`${dashboard.url}api/snapshot`)).json()) as {
      policies?: typeof shown;
    };
    shown = snap.policies;
    return shown?.report !== undefined;
  });
  t.is(shown?.report?.files.count, 14);
});
