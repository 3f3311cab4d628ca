/**
 * `npm run release` makes one tarball that installs with npm alone: built here, installed into a
 * clean prefix outside the repository with --offline (everything is bundled), then the installed
 * `hsmfleet` prints its version (through the CLI bundle, not the compiled modules) and runs an
 * export on the embedded default (local nats-server and Azurite) from a directory that is not the
 * repository.
 */
import { execFile } from "node:child_process";
import { mkdir, readdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import test from "ava";
import { tempDir } from "@hsmfleet/testkit";

const run = promisify(execFile);
const REPO = fileURLToPath(new URL("../../../", import.meta.url));

test("npm run release makes hsmfleet-<version>.tgz; npm install -g --offline into a clean prefix gives a working hsmfleet: --version and an export on the embedded default", async (t) => {
  t.timeout(25 * 60_000, "release, install (tens of thousands of files) and an export");
  const dir = await tempDir();
  t.teardown(() => dir.cleanup());
  const out = join(dir.path, "out");
  const built = await run(process.execPath, [join(REPO, "scripts/release.mjs"), "--out", out], {
    cwd: REPO,
    maxBuffer: 1 << 26,
  });
  const cli = JSON.parse(await readFile(join(REPO, "packages/cli/package.json"), "utf8")) as {
    version: string;
  };
  const version = cli.version;
  const tarball = join(out, `hsmfleet-${version}.tgz`);
  t.deepEqual(await readdir(out), [`hsmfleet-${version}.tgz`]);
  t.is(built.stdout.trim(), tarball);

  // A clean prefix, no repository on the way: npm's cache and config live in the temp dir too.
  const prefix = join(dir.path, "prefix");
  const home = join(dir.path, "home");
  await mkdir(home);
  const env = {
    ...process.env,
    HOME: home,
    npm_config_cache: join(dir.path, "npm-cache"),
    npm_config_update_notifier: "false",
    // npm 11 asks before it runs install scripts (the addon check); older npm ignores this.
    npm_config_allow_scripts: "hsmfleet",
    NODE_PATH: "",
  };
  await run(
    "npm",
    [
      "install",
      "-g",
      "--prefix",
      prefix,
      "--offline",
      "--no-audit",
      "--no-fund",
      "--foreground-scripts",
      tarball,
    ],
    { cwd: dir.path, env, maxBuffer: 1 << 26 },
  );
  const bin = join(prefix, "bin", "hsmfleet");
  const v = await run(bin, ["--version"], {
    cwd: dir.path,
    env: { ...env, HSMFLEET_STARTUP_TRACE: "1" },
  });
  t.is(v.stdout.trim(), version);
  // It runs the one-file bundle made for the installed layout, not the compiled modules one by one
  // (a command's fixed cost, issue 17): the launcher's trace names the phases it went through.
  const trace = v.stderr.split("\n").find((l) => l.startsWith("hsmfleet-startup-trace "));
  t.truthy(trace, v.stderr);
  const phases = Object.keys(
    JSON.parse(trace!.slice("hsmfleet-startup-trace ".length)) as Record<string, unknown>,
  );
  t.true(phases.includes("bundle-compiled") && !phases.includes("modules"), phases.join(","));
  // ... read by the installed fs addon (its path from the launcher is the workspace's).
  t.true(phases.includes("bundle-read-native"), phases.join(","));
  // The native addon is in the installed package, prebuilt and loadable.
  const addons = await readdir(
    join(prefix, "lib/node_modules/hsmfleet/node_modules/@hsmfleet/fs/build/Release"),
  );
  t.true(
    addons.includes("hsmfleet_fs.node") && addons.includes("hsmfleet_crc64.node"),
    addons.join(","),
  );

  const tree = join(dir.path, "tree");
  await mkdir(join(tree, "sub"), { recursive: true });
  await writeFile(join(tree, "a.txt"), "hello\n");
  await writeFile(join(tree, "sub", "b.txt"), "world\n");
  const exported = await run(
    bin,
    [
      "--state-dir",
      join(dir.path, "state"),
      "--workers",
      "1",
      "export",
      tree,
      "--container",
      "demo",
      "--json",
    ],
    { cwd: dir.path, env, maxBuffer: 1 << 24 },
  );
  const summary = JSON.parse(exported.stdout.trim().split("\n").pop()!) as {
    state: string;
    filesExported: number;
    directoriesExported: number;
    bytes: number;
  };
  t.like(summary, { state: "succeeded", filesExported: 2, directoriesExported: 1, bytes: 12 });
});
