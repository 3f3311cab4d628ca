import { execFile } from "node:child_process";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import test from "ava";

/** The repository root (test/dist/e2e/ → ../../..). */
const ROOT = fileURLToPath(new URL("../../../", import.meta.url));
const SCRIPT = join(ROOT, "scripts", "check-structure.mjs");

const check = (root: string): Promise<{ code: number; stdout: string; stderr: string }> =>
  new Promise((resolve) => {
    execFile(process.execPath, [SCRIPT, root], (err, stdout, stderr) =>
      resolve({ code: err ? Number(err.code ?? 1) : 0, stdout, stderr }),
    );
  });

test("the packages have no import cycle and no source file over 500 lines", async (t) => {
  const { code, stdout, stderr } = await check(ROOT);
  t.is(stderr, "");
  t.is(code, 0);
  t.regex(stdout, /no import cycle, no source file over 500 lines/);
});

test("the structure check names an import cycle (type-only too) and a file over 500 lines", async (t) => {
  const root = await mkdtemp(join(tmpdir(), "hsmfleet-structure-"));
  t.teardown(() => rm(root, { recursive: true, force: true }));
  const src = join(root, "packages", "demo", "src");
  await mkdir(join(src, "gen"), { recursive: true });
  await writeFile(
    join(root, "packages", "demo", "package.json"),
    JSON.stringify({ name: "@demo/demo", dependencies: {} }),
  );
  await writeFile(join(src, "a.ts"), 'import { b } from "./b.js";\nexport const a = b;\n');
  await writeFile(
    join(src, "b.ts"),
    'import type { C } from "./c.js";\nexport const b = 1 as C;\n',
  );
  await writeFile(join(src, "c.ts"), 'import { a } from "./a.js";\nexport type C = typeof a;\n');
  await writeFile(join(src, "long.ts"), "export const x = 1;\n".repeat(501));
  // Generated code is exempt from the line limit.
  await writeFile(join(src, "gen", "big.ts"), "export const y = 1;\n".repeat(900));
  const { code, stderr } = await check(root);
  t.is(code, 1);
  t.regex(
    stderr,
    /import cycle: packages\/demo\/src\/a\.ts <-> packages\/demo\/src\/b\.ts <-> packages\/demo\/src\/c\.ts/,
  );
  t.regex(stderr, /packages\/demo\/src\/long\.ts: 501 lines \(at most 500\)/);
  t.notRegex(stderr, /gen\/big\.ts/);
});
