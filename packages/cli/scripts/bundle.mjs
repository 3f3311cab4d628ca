#!/usr/bin/env node
// Bundles the compiled CLI (dist/src/bin.js, every workspace package and every run-time dependency
// it imports) into ONE CommonJS file, dist/hsmfleet.cjs, which bin/hsmfleet.js runs when it is
// fresh, with a V8 code cache (see bin/hsmfleet.js).
//
// Why: a command's fixed cost was mostly Node's ES module loader — ~1,300 files resolved, read,
// compiled and linked one by one before a byte moved (Node 20 has no module compile cache). One
// file is read and parsed once, and as one classic script its compiled code can be cached
// (vm.Script cachedData), which Node 20 offers for no ES module (docs/benchmarks.md, "Fixed cost
// of a command").
//
// What a bundle changes, and how this keeps it the same:
// - `import.meta.url` of a bundled module would be the bundle's own URL, and CommonJS modules'
//   `__dirname`/`__filename` do not exist in an ES module. Each is rewritten to the ORIGINAL
//   file's location, expressed relative to the bundle, so native addons (packages/fs/build),
//   data files (packages/cli/data), azurite's and pino's worker files are found where they were.
// - `require` is the real one of the bundle's path (the launcher passes it), so `require("node:…")`
//   and the addons' absolute paths load as before; `import()` of a builtin is left to Node.
// - Native addons (*.node) are never bundled: the code that loads them computes their path.
// - dist/hsmfleet.inputs.json lists the workspace files the bundle was made from and the bundle's
//   hash; the launcher runs the unbundled dist/src/bin.js instead when any of them is newer than
//   the bundle (a package rebuilt on its own with `tsc`, without the CLI's build), so a stale
//   bundle never runs, and names its code caches by the hash, so a cache never outlives its bundle.
//
// Usage: node scripts/bundle.mjs   (after tsc; part of the package's `npm run build`)
//        node scripts/bundle.mjs --pkg-dir DIR --workspace-dir DIR
//   bundles the CLI package at DIR (default: this script's package) whose workspace packages live
//   in --workspace-dir (default: the repository's packages/). scripts/release.mjs uses it to bundle
//   the staged release, where the packages are node_modules/@hsmfleet/* and their dependencies sit
//   elsewhere than in the repository, so the bundle's relative paths are the installed ones.
//        node scripts/bundle.mjs --if-stale
//   does nothing when the bundle exists and none of its inputs is newer (the root `npm run build`
//   ends with it: turbo replays a cached CLI build without running this script, so a package
//   compiled on its own with `tsc` before left the bundle stale, and every command ran the
//   compiled modules, 0.3–0.8 s slower, until the next change to the CLI's sources).
//        … --installed
//   lists no input files for the staleness check: an installed release is never rebuilt in place,
//   and npm gives every file it unpacks the time of the install, in no particular order, so the
//   check would find the bundle "older" than its inputs and never run it.
import { createHash } from "node:crypto";
import { readFile, rm, stat, writeFile } from "node:fs/promises";
import { builtinModules } from "node:module";
import { dirname, join, relative, resolve } from "node:path";
import { Script } from "node:vm";
import { build } from "esbuild";

const option = (name) => {
  const at = process.argv.indexOf(name);
  return at > 0 ? resolve(process.argv[at + 1]) : undefined;
};
const pkgDir = option("--pkg-dir") ?? resolve(import.meta.dirname, "..");
const workspaceDir = option("--workspace-dir") ?? resolve(pkgDir, "..");
const outFile = join(pkgDir, "dist", "hsmfleet.cjs");
const inputsFile = join(pkgDir, "dist", "hsmfleet.inputs.json");
const outDir = dirname(outFile);
/** The CommonJS module function around the bundle (the launcher checks for it: BUNDLE_WRAPPER_HEAD). */
const BUNDLE_WRAPPER_HEAD = "(function (exports, require, module, __filename, __dirname) { ";

/** A path relative to the bundle's folder, always with '/' and a leading './' or '../'. */
const fromBundle = (path) => {
  const rel = relative(outDir, path).split("\\").join("/");
  return rel.startsWith(".") ? rel : `./${rel}`;
};

/** Whether the bundle exists and no input listed beside it is newer (the launcher's own test). */
const upToDate = async () => {
  try {
    const made = (await stat(outFile)).mtimeMs;
    const { inputs } = JSON.parse(await readFile(inputsFile, "utf8"));
    for (const rel of inputs) if ((await stat(join(outDir, rel))).mtimeMs > made) return false;
    return true;
  } catch {
    return false; // no bundle, no inputs list, or an input gone
  }
};
if (process.argv.includes("--if-stale") && (await upToDate())) {
  process.stdout.write("bundle: up to date\n");
  process.exit(0);
}

const BUILTINS = new Set(builtinModules);
/** `import("http")`, `import("node:fs")`: a dynamic import of a Node builtin. */
const BUILTIN_IMPORT = /(?<![\w$.])import\(\s*(["'])((?:node:)?[a-z_/]+)\1\s*\)/g;

const declares = (text, name) =>
  new RegExp(`\\b(?:let|const|var|function)\\s+${name}\\b`).test(text);

/** Rewrites a module's view of its own location to where the file really is. */
const relocate = {
  name: "hsmfleet-relocate",
  setup(b) {
    b.onLoad({ filter: /\.(?:m|c)?js$/ }, async (args) => {
      const text = await readFile(args.path, "utf8");
      const hasMeta = text.includes("import.meta.url") || text.includes("import.meta.dirname");
      const hasDir = text.includes("__dirname") || text.includes("__filename");
      const hasImport = text.includes("import(");
      if (!hasMeta && !hasDir && !hasImport) return undefined;
      const file = JSON.stringify(fromBundle(args.path));
      const dir = JSON.stringify(`${fromBundle(dirname(args.path))}/`);
      let out = text
        .replaceAll("import.meta.url", `__hsmfleetUrl(${file})`)
        .replaceAll("import.meta.dirname", `__hsmfleetPath(${dir})`)
        .replaceAll("import.meta.filename", `__hsmfleetPath(${file})`);
      // Only a free __dirname/__filename (a module that declares its own derives it from
      // import.meta.url, rewritten above).
      if (!declares(text, "__dirname"))
        out = out.replace(/(?<![\w$.])__dirname\b/g, `__hsmfleetPath(${dir})`);
      if (!declares(text, "__filename"))
        out = out.replace(/(?<![\w$.])__filename\b/g, `__hsmfleetPath(${file})`);
      // A classic script's import() needs a loader hook that Node 20 only has as an experimental
      // feature (it warns): a builtin is required instead, as an ES namespace would look.
      out = out.replace(BUILTIN_IMPORT, (whole, _q, id) =>
        BUILTINS.has(id.replace(/^node:/, ""))
          ? `Promise.resolve().then(() => __hsmfleetBuiltin(${JSON.stringify(id)}))`
          : whole,
      );
      return { contents: out, loader: "js", resolveDir: dirname(args.path) };
    });
  },
};

// `__filename` here is the bundle's own path: the launcher runs it as a CommonJS module.
const banner = [
  "// hsmfleet CLI bundle, made by packages/cli/scripts/bundle.mjs from dist/src/bin.js: do not edit.",
  'const { fileURLToPath: __hsmfleetFileURLToPath, pathToFileURL: __hsmfleetFileURL } = require("node:url");',
  "const __hsmfleetSelf = __hsmfleetFileURL(__filename);",
  "const __hsmfleetUrl = (rel) => new URL(rel, __hsmfleetSelf).href;",
  "const __hsmfleetPath = (rel) => __hsmfleetFileURLToPath(new URL(rel, __hsmfleetSelf));",
  "const __hsmfleetBuiltin = (id) => { const m = require(id); return { ...m, default: m }; };",
].join("\n");

const result = await build({
  entryPoints: [join(pkgDir, "dist", "src", "bin.js")],
  outfile: outFile,
  bundle: true,
  platform: "node",
  format: "cjs",
  target: "node20",
  // Native addons are loaded by path at run time (see relocate).
  external: ["*.node"],
  banner: { js: banner },
  plugins: [relocate],
  metafile: true,
  logLevel: "warning",
  legalComments: "none",
  minifyWhitespace: true,
  minifySyntax: true,
});

// The launcher compiles the file as it is (no copy of 5 MB): it reads it into memory of its own and
// hands it to V8 as an external one-byte string (packages/fs native/hugebuf.c), which must be
// ASCII, and it needs no wrapper added. So the bundle is made ASCII (esbuild leaves a non-ASCII
// character in a regular expression: `µs` in @nats-io/jetstream) and wrapped in the CommonJS
// module function the launcher calls, the "#!" line made a comment (line numbers stay). A \uXXXX escape means the same as the
// character in strings, regular expressions, template literals (not in their raw text) and
// identifiers; the compile below proves the result is still a script.
const raw = await readFile(outFile, "utf8");
const body = (raw.startsWith("#!") ? `//${raw.slice(2)}` : raw).replace(
  /[^\x00-\x7f]/g,
  (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`,
);
const wrapped = `${BUNDLE_WRAPPER_HEAD}${body}\n});\n`;
new Script(wrapped, { filename: outFile });
await writeFile(outFile, wrapped);

// The workspace files (not node_modules: those change only with `npm ci`, which is followed by a
// full build) whose change makes the bundle stale.
const installed = process.argv.includes("--installed");
const inputs = Object.keys(result.metafile.inputs)
  .map((p) => resolve(process.cwd(), p))
  .filter(
    (p) =>
      !installed &&
      p.startsWith(`${workspaceDir}/`) &&
      !p.slice(workspaceDir.length).includes("/node_modules/"),
  )
  .map(fromBundle)
  .sort();
const hash = createHash("sha256")
  .update(await readFile(outFile))
  .digest("hex")
  .slice(0, 16);
await writeFile(inputsFile, `${JSON.stringify({ hash, inputs }, null, 1)}\n`);
// Code caches of an earlier bundle are of no use any more (their names carry the old hash, so one
// left behind, e.g. written by root in a user's checkout, is never read: only a warning).
await rm(join(outDir, "v8-cache"), { recursive: true, force: true }).catch((err) =>
  process.stderr.write(`bundle: could not remove old code caches: ${err.message}\n`),
);
const { size } = await stat(outFile);
process.stdout.write(
  `bundle: ${relative(process.cwd(), outFile) || outFile} (${(size / 1e6).toFixed(1)} MB, ${Object.keys(result.metafile.inputs).length} modules; ${inputs.length} workspace files checked for staleness)\n`,
);
