import { mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import test from "ava";
import { tempDir } from "@hsmfleet/testkit";
import { runCli, startBus, startStorage } from "./helpers.js";

// docs/json.md: every job command's --json summary spells the common fields the same way.
test("every job command's --json summary has root, errors and elapsedSeconds, spelled alike", async (t) => {
  t.timeout(240_000);
  const dir = await tempDir();
  t.teardown(() => dir.cleanup());
  const tree = join(dir.path, "tree");
  await mkdir(join(tree, "sub"), { recursive: true });
  await writeFile(join(tree, "a"), "aaaa");
  await writeFile(join(tree, "sub", "b"), "bbbbbbbb");
  const target = join(dir.path, "target");
  await mkdir(target);
  const azurite = await startStorage(t);
  const { server } = await startBus(t);
  const env = {
    AZURE_STORAGE_CONNECTION_STRING: azurite.connectionString,
    HSMFLEET_STATE_DIR: join(dir.path, "state"),
  };
  const common = ["--nats", server.url, "--workers", "1"];
  const runs: Array<[string, string[], string]> = [
    ["scan", ["scan", tree, "--json"], tree],
    ["export", ["export", tree, "--container", "fields", "--json", "--quiet"], tree],
    ["verify", ["verify", tree, "--container", "fields", "--json", "--quiet"], tree],
    [
      "import",
      ["import", target, "--container", "fields", "--mode", "full", "--json", "--quiet"],
      target,
    ],
    ["restore", ["restore", target, "--json", "--quiet"], target],
    [
      "hsm archive",
      [
        "hsm",
        "archive",
        join(tree, "a"),
        "--hsm-xattr",
        "user.hsm",
        "--root",
        tree,
        "--container",
        "arch",
        "--json",
      ],
      tree,
    ],
  ];
  for (const [name, args, root] of runs) {
    const run = await runCli([...common, ...args], { env, timeoutMs: 120_000 });
    t.is(run.code, 0, `${name}: ${run.stderr}`);
    const summary = JSON.parse(run.stdout) as Record<string, unknown>;
    t.is(summary["root"], root, `${name}: root`);
    t.is(summary["errors"], 0, `${name}: errors`);
    t.is(typeof summary["elapsedSeconds"], "number", `${name}: elapsedSeconds`);
    t.is(typeof summary["jobId"], "string", `${name}: jobId`);
    t.is(typeof summary["state"], "string", `${name}: state`);
  }
});
