import { mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import test from "ava";
import { tempDir } from "@hsmfleet/testkit";
import { runCli, startBus } from "./helpers.js";

test("hsmfleet jobs prints a table whose every column has a heading above it", async (t) => {
  const dir = await tempDir();
  t.teardown(() => dir.cleanup());
  const tree = join(dir.path, "tree");
  await mkdir(join(tree, "sub"), { recursive: true });
  await writeFile(join(tree, "sub", "f"), "12345");
  const { server } = await startBus(t);
  const scan = await runCli(["--nats", server.url, "--workers", "1", "scan", tree, "--json"]);
  t.is(scan.code, 0, scan.stderr);
  const jobs = await runCli(["--nats", server.url, "jobs"]);
  t.is(jobs.code, 0, jobs.stderr);
  const [header, row] = jobs.stdout.split("\n");
  t.truthy(row);
  const headings = [...header!.matchAll(/\S+(?: \(\S+\))?/g)].map((m) => ({
    name: m[0],
    start: m.index,
    end: m.index + m[0].length,
  }));
  t.deepEqual(
    headings.map((h) => h.name),
    ["JOB", "KIND", "STATE", "STARTED (UTC)", "ENTRIES", "UNIT", "BYTES", "ROOT"],
  );
  // Each value lies under its heading: left-aligned columns start with it, numbers end with it.
  const at = (name: string) => headings.find((h) => h.name === name)!;
  t.is(row!.indexOf("scan-"), at("JOB").start);
  t.is(row!.indexOf(" scan ") + 1, at("KIND").start);
  t.is(row!.indexOf("succeeded"), at("STATE").start);
  t.regex(row!.slice(at("STARTED (UTC)").start), /^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d /);
  t.is(row!.slice(0, at("ENTRIES").end).trimEnd().endsWith(" 3"), true, row);
  t.regex(row!.slice(0, at("BYTES").end), /\d B$/);
  t.is(row!.slice(at("ROOT").start), tree);
});
