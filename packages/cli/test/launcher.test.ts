import { execFile } from "node:child_process";
import { copyFile, mkdir, readFile, readdir, rm, utimes, writeFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import test from "ava";
import { tempDir } from "@hsmfleet/testkit";
import { STARTUP_TRACE_PREFIX } from "@hsmfleet/telemetry";

const LAUNCHER = fileURLToPath(new URL("../../bin/hsmfleet.js", import.meta.url));

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
  /** The startup trace's phases (HSMFLEET_STARTUP_TRACE=1), when the process printed one. */
  phases: string[];
}

const runNode = (argv: string[], env: NodeJS.ProcessEnv = {}): Promise<Run> =>
  new Promise((resolve) => {
    execFile(
      process.execPath,
      argv,
      { env: { ...process.env, HSMFLEET_STARTUP_TRACE: "1", ...env }, timeout: 120_000 },
      (err, stdout, stderr) => {
        const line = stderr.split("\n").find((l) => l.startsWith(STARTUP_TRACE_PREFIX));
        const phases = line
          ? Object.keys(JSON.parse(line.slice(STARTUP_TRACE_PREFIX.length)) as object)
          : [];
        const code = err ? (typeof err.code === "number" ? err.code : -1) : 0;
        resolve({ code, stdout, stderr, phases });
      },
    );
  });

/** What the CLI's own startup trace prints (only the phases matter here), for the stand-ins. */
const PRINT_MARKS = `process.once("exit", () => {
  const marks = performance.getEntriesByType("mark").map((m) => [m.name.slice(9), [m.startTime, 0]]);
  process.stderr.write(${JSON.stringify(STARTUP_TRACE_PREFIX)} + JSON.stringify(Object.fromEntries(marks)) + "\\n");
});
`;

/**
 * A package laid out like packages/cli (bin/hsmfleet.js, dist/src/bin.js, dist/hsmfleet.cjs,
 * dist/hsmfleet.inputs.json) whose two entries only say which of them ran.
 */
const fakePackage = async (
  t: { teardown(fn: () => Promise<void>): void },
  bundleBody = 'process.stdout.write(`bundle ${__filename} ${typeof require("node:fs").statSync}\\n`);',
) => {
  const dir = await tempDir("hsmfleet-launcher-");
  t.teardown(() => dir.cleanup());
  const pkg = join(dir.path, "packages", "cli");
  await mkdir(join(pkg, "bin"), { recursive: true });
  await mkdir(join(pkg, "dist", "src"), { recursive: true });
  await mkdir(join(dir.path, "packages", "core", "dist"), { recursive: true });
  await writeFile(join(pkg, "package.json"), '{ "type": "module" }\n');
  await copyFile(LAUNCHER, join(pkg, "bin", "hsmfleet.js"));
  await copyFile(join(dirname(LAUNCHER), "package.json"), join(pkg, "bin", "package.json")).catch(
    () => undefined,
  );
  await writeFile(
    join(pkg, "dist", "src", "bin.js"),
    `${PRINT_MARKS}process.stdout.write("modules\\n");\n`,
  );
  const input = join(dir.path, "packages", "core", "dist", "index.js");
  await writeFile(input, "export {};\n");
  // Made after its input, as the build makes it; "#!" first, as esbuild keeps the entry's.
  await writeFile(
    join(pkg, "dist", "hsmfleet.cjs"),
    `#!/usr/bin/env node\n${PRINT_MARKS}${bundleBody}\n`,
  );
  await writeFile(
    join(pkg, "dist", "hsmfleet.inputs.json"),
    JSON.stringify({ hash: "0123456789abcdef", inputs: ["../../core/dist/index.js"] }),
  );
  return { pkg, input, launcher: join(pkg, "bin", "hsmfleet.js") };
};

test("the launcher runs the bundle as a CommonJS module, writes its code cache on the first run and uses it on the next", async (t) => {
  const { pkg, launcher } = await fakePackage(t);
  const first = await runNode([launcher, "export"]);
  t.is(first.code, 0, first.stderr);
  t.is(first.stdout, `bundle ${join(pkg, "dist", "hsmfleet.cjs")} function\n`);
  t.true(first.phases.includes("code-cache-missed"), first.phases.join(","));
  const caches = await readdir(join(pkg, "dist", "v8-cache"));
  t.deepEqual(caches, [`export-0123456789abcdef-${process.version}-${process.arch}.bin`]);

  const second = await runNode([launcher, "export"]);
  t.is(second.code, 0, second.stderr);
  t.true(second.phases.includes("code-cache-used"), second.phases.join(","));
  // Another command has a cache of its own.
  const other = await runNode([launcher, "--version"]);
  t.true(other.phases.includes("code-cache-missed"), other.phases.join(","));
  t.is((await readdir(join(pkg, "dist", "v8-cache"))).length, 2);
});

test("scan starts with TurboFan off and turns it on after HSMFLEET_TURBOFAN_AFTER_MS; its code cache is written under the start's flags, so the next scan uses it", async (t) => {
  const { pkg, launcher } = await fakePackage(t);
  // The bundle outlives the delay (TurboFan is on again when it exits and writes its cache).
  await writeFile(
    join(pkg, "dist", "hsmfleet.cjs"),
    `${PRINT_MARKS}setTimeout(() => process.stdout.write("done\\n"), 300);\n`,
  );
  const env = { HSMFLEET_TURBOFAN_AFTER_MS: "20" };
  const first = await runNode([launcher, "scan", "/x"], env);
  t.is(first.code, 0, first.stderr);
  t.is(first.stdout, "done\n");
  t.true(first.phases.includes("code-cache-missed"), first.phases.join(","));
  // A cache made with TurboFan's flag back on would be refused here (V8 hashes the flags).
  const second = await runNode([launcher, "scan", "/x"], env);
  t.is(second.code, 0, second.stderr);
  t.true(second.phases.includes("code-cache-used"), second.phases.join(","));
  t.deepEqual(await readdir(join(pkg, "dist", "v8-cache")), [
    `scan-0123456789abcdef-${process.version}-${process.arch}.bin`,
  ]);
});

test("a bundle older than a workspace file it was made from is not run: the compiled modules are", async (t) => {
  const { input, launcher } = await fakePackage(t);
  t.is((await runNode([launcher])).stdout.split(" ")[0], "bundle");
  // A package rebuilt on its own (tsc) after the bundle was made.
  const later = new Date(Date.now() + 60_000);
  await utimes(input, later, later);
  const stale = await runNode([launcher]);
  t.is(stale.code, 0, stale.stderr);
  t.is(stale.stdout, "modules\n");
  t.true(stale.phases.includes("modules"), stale.phases.join(","));
});

test("with the fs addon where a release and the workspace have it, the launcher reads the bundle through it, and still runs the modules for a stale bundle", async (t) => {
  const { pkg, input, launcher } = await fakePackage(t);
  const addonDir = join(pkg, "..", "fs", "build", "Release");
  await mkdir(addonDir, { recursive: true });
  await copyFile(
    join(dirname(LAUNCHER), "..", "..", "fs", "build", "Release", "hsmfleet_fs.node"),
    join(addonDir, "hsmfleet_fs.node"),
  );
  const fresh = await runNode([launcher, "export"]);
  t.is(fresh.code, 0, fresh.stderr);
  t.is(fresh.stdout, `bundle ${join(pkg, "dist", "hsmfleet.cjs")} function\n`);
  t.true(fresh.phases.includes("bundle-read-native"), fresh.phases.join(","));
  // The staleness check through the addon's newestMtimeMs: an input newer than the bundle...
  const later = new Date(Date.now() + 60_000);
  await utimes(input, later, later);
  t.is((await runNode([launcher])).stdout, "modules\n");
  // ...or one gone.
  await utimes(input, new Date(0), new Date(0));
  t.is((await runNode([launcher])).stdout.split(" ")[0], "bundle");
  await rm(input);
  t.is((await runNode([launcher])).stdout, "modules\n");
});

test("HSMFLEET_BUNDLE=0 runs the compiled modules", async (t) => {
  const { launcher } = await fakePackage(t);
  const run = await runNode([launcher], { HSMFLEET_BUNDLE: "0" });
  t.is(run.stdout, "modules\n");
});

test("the built CLI runs from its fresh bundle: --version through bin/hsmfleet.js", async (t) => {
  const run = await runNode([LAUNCHER, "--version"]);
  t.is(run.code, 0, run.stderr);
  t.is(run.stdout.trim(), "0.1.0");
  t.true(
    run.phases.includes("bundle-compiled"),
    `the build's bundle (dist/hsmfleet.cjs) is missing or stale: ${run.phases.join(",")}`,
  );
  t.true(run.phases.includes("loaded") && run.phases.includes("exit"), run.phases.join(","));
  // Read by the fs addon as an external string: the bundle is ASCII and carries its wrapper.
  t.true(run.phases.includes("bundle-read-native"), run.phases.join(","));
  const bundle = await readFile(join(dirname(LAUNCHER), "..", "dist", "hsmfleet.cjs"));
  t.true(
    bundle
      .toString("latin1")
      .startsWith("(function (exports, require, module, __filename, __dirname) { //"),
  );
  t.is(
    bundle.findIndex((b) => b > 0x7f),
    -1,
    "a byte of the bundle is not ASCII",
  );
  // The plain read gives the same command.
  const plain = await runNode([LAUNCHER, "--version"], { HSMFLEET_BUNDLE_READ: "plain" });
  t.is(plain.stdout.trim(), "0.1.0");
  t.false(plain.phases.includes("bundle-read-native"), plain.phases.join(","));
});

/** A bundle that keeps 64 file-system calls in flight, then prints how many threads it runs. */
const POOL_BUNDLE = `const fs = require("node:fs");
Promise.all(Array.from({ length: 64 }, () => fs.promises.stat("/"))).then(() =>
  process.stdout.write("threads " + fs.readdirSync("/proc/self/task").length + "\\n"));`;
const threadsOf = (run: Run): number => Number(/threads (\d+)/.exec(run.stdout)?.[1] ?? NaN);

test("the launcher's libuv threadpool has 16 threads unless UV_THREADPOOL_SIZE says otherwise (it is set before the pool is made)", async (t) => {
  const { launcher } = await fakePackage(t, POOL_BUNDLE);
  const env = { UV_THREADPOOL_SIZE: undefined };
  const ours = await runNode([launcher, "worker"], env);
  t.is(ours.code, 0, ours.stderr);
  // The same process with 4 pool threads (set before Node starts) has 12 threads fewer.
  const four = await runNode([launcher, "worker"], { UV_THREADPOOL_SIZE: "4" });
  t.is(four.code, 0, four.stderr);
  t.is(threadsOf(ours) - threadsOf(four), 12, `${ours.stdout} / ${four.stdout}`);
  const admins = await runNode([launcher, "worker"], { UV_THREADPOOL_SIZE: "8" });
  t.is(threadsOf(admins) - threadsOf(four), 4, "an admin's UV_THREADPOOL_SIZE is kept");
});
