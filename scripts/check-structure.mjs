#!/usr/bin/env node
// Structure rules every package's sources keep (run by `npm run lint` and test/e2e/structure):
//  1. no import cycle between the modules of a package — type-only imports count too, since a
//     cycle of types is the same tangle to a reader (a leaf module breaks it);
//  2. no cycle between packages (their package.json dependencies);
//  3. no source file over MAX_LINES lines (generated code under gen/ aside).
// Prints every breach, one a line, and exits 1 when there is one.
//
// usage: node scripts/check-structure.mjs [repo root]   (default: this script's parent folder)
import { readFileSync, readdirSync, statSync, existsSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";

export const MAX_LINES = 500;
const SOURCE = /\.(ts|mts|tsx)$/;
const SKIP_DIRS = new Set(["node_modules", "dist", "build", "gen"]);

const root = resolve(process.argv[2] ?? join(dirname(fileURLToPath(import.meta.url)), ".."));
const packagesDir = join(root, "packages");

const sourceFiles = (dir) =>
  readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) return SKIP_DIRS.has(name) ? [] : sourceFiles(path);
    return SOURCE.test(name) && !name.endsWith(".d.ts") ? [path] : [];
  });

// `import … from "./x.js"`, `export … from "./x.js"`, `import("./x.js")`, `import "./x.js"`.
const SPECIFIER = /(?:\bfrom\s*|\bimport\s*\(\s*|\bimport\s+)["'](\.{1,2}\/[^"']+)["']/g;

const resolveImport = (from, specifier) => {
  const base = resolve(dirname(from), specifier);
  const candidates = [
    base.replace(/\.(m?)js$/, ".$1ts"),
    base.replace(/\.js$/, ".tsx"),
    base,
    `${base}.ts`,
    join(base, "index.ts"),
  ];
  return candidates.find((c) => existsSync(c) && statSync(c).isFile());
};

/** Strongly connected components of more than one node (or a self-loop): Tarjan. */
const cycles = (graph) => {
  const index = new Map();
  const low = new Map();
  const stack = [];
  const onStack = new Set();
  const found = [];
  let next = 0;
  const visit = (v) => {
    index.set(v, next);
    low.set(v, next);
    next++;
    stack.push(v);
    onStack.add(v);
    for (const w of graph.get(v) ?? []) {
      if (!index.has(w)) {
        visit(w);
        low.set(v, Math.min(low.get(v), low.get(w)));
      } else if (onStack.has(w)) low.set(v, Math.min(low.get(v), index.get(w)));
    }
    if (low.get(v) === index.get(v)) {
      const component = [];
      let w;
      do {
        w = stack.pop();
        onStack.delete(w);
        component.push(w);
      } while (w !== v);
      if (component.length > 1 || (graph.get(v) ?? new Set()).has(v)) found.push(component.sort());
    }
  };
  for (const v of graph.keys()) if (!index.has(v)) visit(v);
  return found;
};

const problems = [];
const packageGraph = new Map();
for (const name of readdirSync(packagesDir).sort()) {
  const dir = join(packagesDir, name);
  const manifestPath = join(dir, "package.json");
  if (!existsSync(manifestPath)) continue;
  const manifest = JSON.parse(readFileSync(manifestPath, "utf8"));
  packageGraph.set(
    manifest.name,
    new Set(Object.keys({ ...manifest.dependencies, ...manifest.devDependencies })),
  );
  const src = join(dir, "src");
  if (!existsSync(src)) continue;
  const graph = new Map();
  for (const file of sourceFiles(src)) {
    const text = readFileSync(file, "utf8");
    const lines = text.split("\n").length - (text.endsWith("\n") ? 1 : 0);
    if (lines > MAX_LINES)
      problems.push(`${relative(root, file)}: ${lines} lines (at most ${MAX_LINES})`);
    const edges = new Set();
    for (const [, specifier] of text.matchAll(SPECIFIER)) {
      const target = resolveImport(file, specifier);
      // Generated modules (gen/) may not exist before `npm run generate`; they import nothing of ours.
      if (target === undefined && !specifier.includes("/gen/"))
        problems.push(`${relative(root, file)}: import "${specifier}" resolves to no source file`);
      else if (target !== undefined) edges.add(target);
    }
    graph.set(file, edges);
  }
  for (const component of cycles(graph))
    problems.push(`import cycle: ${component.map((f) => relative(root, f)).join(" <-> ")}`);
}
for (const component of cycles(packageGraph))
  problems.push(`package dependency cycle: ${component.join(" <-> ")}`);

if (problems.length > 0) {
  for (const p of problems) process.stderr.write(`check-structure: ${p}\n`);
  process.exit(1);
}
process.stdout.write(
  `check-structure: ${packageGraph.size} packages, no import cycle, no source file over ${MAX_LINES} lines\n`,
);
