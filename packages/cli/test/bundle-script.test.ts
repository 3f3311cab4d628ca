import { execFile } from "node:child_process";
import { mkdir, readFile, stat, utimes, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import test from "ava";
import { tempDir } from "@hsmfleet/testkit";

const BUNDLE_SCRIPT = fileURLToPath(new URL("../../scripts/bundle.mjs", import.meta.url));

const bundle = (args: string[]): Promise<{ code: number; stdout: string; stderr: string }> =>
  new Promise((resolve) => {
    execFile(
      process.execPath,
      [BUNDLE_SCRIPT, ...args],
      { timeout: 120_000 },
      (err, stdout, stderr) => resolve({ code: err ? Number(err.code ?? -1) : 0, stdout, stderr }),
    );
  });

test("bundle.mjs --if-stale builds a missing bundle, leaves a fresh one alone and builds again once an input is newer (the root build ends with it: turbo replays a cached CLI build without it)", async (t) => {
  const dir = await tempDir("hsmfleet-bundle-");
  t.teardown(() => dir.cleanup());
  const workspace = join(dir.path, "packages");
  const pkg = join(workspace, "cli");
  const dep = join(workspace, "core", "dist", "answer.js");
  await mkdir(join(pkg, "dist", "src"), { recursive: true });
  await mkdir(join(workspace, "core", "dist"), { recursive: true });
  await writeFile(dep, "export const answer = 42;\n");
  await writeFile(
    join(pkg, "dist", "src", "bin.js"),
    'import { answer } from "../../../core/dist/answer.js";\nconsole.log(answer);\n',
  );
  const args = ["--pkg-dir", pkg, "--workspace-dir", workspace, "--if-stale"];
  const out = join(pkg, "dist", "hsmfleet.cjs");

  const first = await bundle(args);
  t.is(first.code, 0, first.stderr);
  t.regex(first.stdout, /^bundle: .*2 workspace files checked/m);
  const inputs = JSON.parse(await readFile(join(pkg, "dist", "hsmfleet.inputs.json"), "utf8")) as {
    inputs: string[];
  };
  t.true(
    inputs.inputs.some((rel) => rel.endsWith("core/dist/answer.js")),
    JSON.stringify(inputs),
  );
  const made = (await stat(out)).mtimeMs;

  const again = await bundle(args);
  t.is(again.code, 0, again.stderr);
  t.is(again.stdout, "bundle: up to date\n");
  t.is((await stat(out)).mtimeMs, made);

  // An input compiled again after the bundle (a package's own tsc): stale, so it is made again.
  const later = new Date(made + 1); // newer than the bundle, older than a bundle made now
  await utimes(dep, later, later);
  const rebuilt = await bundle(args);
  t.is(rebuilt.code, 0, rebuilt.stderr);
  t.regex(rebuilt.stdout, /^bundle: /m);
  t.notRegex(rebuilt.stdout, /up to date/);
  t.true((await stat(out)).mtimeMs > made + 1);
  t.is((await bundle(args)).stdout, "bundle: up to date\n");
});
