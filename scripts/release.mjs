#!/usr/bin/env node
// `npm run release`: one installable npm tarball, hsmfleet-<version>.tgz, of the hsmfleet CLI with
// its workspace packages and every run-time dependency bundled (bundleDependencies, the versions
// package-lock.json installed, which the tests ran against), so `npm install -g
// ./hsmfleet-<version>.tgz` works on a machine with Node 20, no repository and no registry. The
// CLI ships as the one-file bundle its launcher runs (as in the repository, see
// packages/cli/scripts/bundle.mjs), made here from the staged packages. The
// native addon (packages/fs, Node-API 8) ships prebuilt for the build machine's platform; the
// package's install script loads it and, when it cannot (another architecture or libc), rebuilds
// it with node-gyp (npm provides it to install scripts; needs g++, make, python3).
//
// Usage: node scripts/release.mjs [--out DIR]   (after npm run build; default DIR: the repo root)
import { execFileSync } from "node:child_process";
import {
  cpSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, relative, resolve } from "node:path";

const repo = resolve(import.meta.dirname, "..");
const outIndex = process.argv.indexOf("--out");
const outDir = resolve(outIndex > 0 ? process.argv[outIndex + 1] : repo);
const readJson = (path) => JSON.parse(readFileSync(path, "utf8"));

/** Workspace packages the CLI needs at run time (not testkit, not the tests). */
const RUNTIME = [
  "core",
  "protocol",
  "telemetry",
  "fs",
  "blob",
  "bus",
  "worker",
  "coordinator",
  "dashboard",
  "cli",
];

const cli = readJson(join(repo, "packages/cli/package.json"));
for (const addon of ["hsmfleet_fs.node", "hsmfleet_crc64.node"])
  if (!existsSync(join(repo, "packages/fs/build/Release", addon)))
    throw new Error(`packages/fs/build/Release/${addon} is missing: run npm run build first`);
if (!existsSync(join(repo, "packages/cli/dist/src/bin.js")))
  throw new Error("packages/cli/dist is missing: run npm run build first");

/**
 * Where Node would find `dep` from the package at `from` (a directory in the repository): the
 * nearest node_modules/<dep> up the tree, as npm ci laid it out from package-lock.json.
 */
const resolveFrom = (from, dep) => {
  for (let dir = from; dir.startsWith(repo); dir = dirname(dir)) {
    const candidate = join(dir, "node_modules", dep);
    if (existsSync(join(candidate, "package.json"))) return candidate;
    if (dir === repo) break;
  }
  return undefined;
};

/** The stage path of a repository path: packages/<n>/… lives under node_modules/@hsmfleet/<n>/…. */
const stagePath = (stage, path) => {
  const rel = relative(repo, path);
  const m = /^packages\/([^/]+)\/(.*)$/.exec(rel);
  return m ? join(stage, "node_modules", "@hsmfleet", m[1], m[2]) : join(stage, rel);
};

const work = mkdtempSync(join(tmpdir(), "hsmfleet-release-"));
try {
  const stage = join(work, "hsmfleet");
  // 1. The workspace packages, as npm pack makes them ("files" applied).
  for (const name of RUNTIME) {
    const dir = join(repo, "packages", name);
    const [{ filename }] = JSON.parse(
      execFileSync("npm", ["pack", "--json", "--ignore-scripts", "--pack-destination", work], {
        cwd: dir,
        encoding: "utf8",
        maxBuffer: 1 << 28,
      }),
    );
    const target = join(stage, "node_modules", "@hsmfleet", name);
    mkdirSync(target, { recursive: true });
    execFileSync("tar", ["-xzf", join(work, filename), "-C", target, "--strip-components=1"]);
    const shipped = readJson(join(target, "package.json"));
    delete shipped.devDependencies;
    delete shipped.scripts; // build scripts need the repository; the addon is handled below
    writeFileSync(join(target, "package.json"), `${JSON.stringify(shipped, null, 2)}\n`);
  }
  // 2. Their run-time dependencies, transitively, copied from node_modules as package-lock.json
  // installed them (the versions the tests ran against), in the same nesting so Node resolves
  // each import as it does in the repository.
  const copied = new Set();
  const queue = RUNTIME.map((name) => join(repo, "packages", name));
  while (queue.length > 0) {
    const from = queue.shift();
    const pkg = readJson(join(from, "package.json"));
    const deps = { ...pkg.optionalDependencies, ...pkg.peerDependencies, ...pkg.dependencies };
    for (const dep of Object.keys(deps)) {
      if (dep.startsWith("@hsmfleet/")) continue;
      const found = resolveFrom(from, dep);
      if (found === undefined) {
        if (pkg.dependencies?.[dep] !== undefined)
          throw new Error(`${pkg.name}: its dependency ${dep} is not installed (npm ci first)`);
        continue; // an optional or peer dependency that is not installed
      }
      if (copied.has(found)) continue;
      copied.add(found);
      cpSync(found, stagePath(stage, found), {
        recursive: true,
        // Nested node_modules come through the walk; type declarations and source maps are not
        // needed at run time (fewer files: a faster pack and install).
        filter: (src) =>
          !src.startsWith(join(found, "node_modules")) && !/\.(map|d\.[cm]?ts)$/.test(src),
      });
      queue.push(found);
    }
  }
  // 3. The CLI as one bundle (packages/cli/scripts/bundle.mjs), made from the staged tree so its
  // relative paths (native addons, data files, dependencies' worker files) are the installed ones;
  // the CLI's launcher runs it, with the compiled modules as its fallback, as in the repository.
  execFileSync(
    process.execPath,
    [
      join(repo, "packages/cli/scripts/bundle.mjs"),
      "--pkg-dir",
      join(stage, "node_modules/@hsmfleet/cli"),
      "--workspace-dir",
      join(stage, "node_modules/@hsmfleet"),
      "--installed",
    ],
    { cwd: stage, stdio: ["ignore", "ignore", "inherit"] },
  );
  // npm packs a bundled dependency with its own "files" list: the bundle must be on it.
  const cliManifest = join(stage, "node_modules/@hsmfleet/cli/package.json");
  const shippedCli = readJson(cliManifest);
  shippedCli.files = [...shippedCli.files, "dist/hsmfleet.cjs", "dist/hsmfleet.inputs.json"];
  writeFileSync(cliManifest, `${JSON.stringify(shippedCli, null, 2)}\n`);
  mkdirSync(join(stage, "bin"), { recursive: true });
  writeFileSync(
    join(stage, "bin", "hsmfleet.cjs"),
    // CommonJS, as the launcher it loads: an ES-module main would make libuv's threadpool before
    // the launcher sets its size (packages/cli/bin/hsmfleet.js).
    '#!/usr/bin/env node\n// The hsmfleet CLI (bundled @hsmfleet/cli and its launcher).\nrequire("../node_modules/@hsmfleet/cli/bin/hsmfleet.js");\n',
    { mode: 0o755 },
  );
  mkdirSync(join(stage, "scripts"), { recursive: true });
  cpSync(join(repo, "scripts", "release-native.cjs"), join(stage, "scripts", "native.cjs"));
  // Everything is bundled: the install needs no registry and gets exactly these versions.
  const topLevel = readdirSync(join(stage, "node_modules"))
    .flatMap((n) =>
      n.startsWith("@") ? readdirSync(join(stage, "node_modules", n)).map((m) => `${n}/${m}`) : [n],
    )
    .filter((n) => !n.startsWith("."))
    .sort();
  const manifest = {
    name: "hsmfleet",
    version: cli.version,
    description: cli.description,
    type: "module",
    license: cli.license,
    engines: cli.engines,
    bin: { hsmfleet: "bin/hsmfleet.cjs" },
    scripts: { install: "node scripts/native.cjs" },
    dependencies: Object.fromEntries(
      topLevel.map((n) => [n, readJson(join(stage, "node_modules", n, "package.json")).version]),
    ),
    bundleDependencies: topLevel,
  };
  writeFileSync(join(stage, "package.json"), `${JSON.stringify(manifest, null, 2)}\n`);
  writeFileSync(
    join(stage, "README.md"),
    "# hsmfleet\n\nLustre <-> Azure Blob data mover with a fleet of workers over NATS JetStream. " +
      "Install: `npm install -g ./hsmfleet-<version>.tgz` (Node 20.19+). See the repository's README.\n",
  );
  mkdirSync(outDir, { recursive: true });
  const [{ filename }] = JSON.parse(
    execFileSync("npm", ["pack", "--json", "--ignore-scripts", "--pack-destination", outDir], {
      cwd: stage,
      encoding: "utf8",
      maxBuffer: 1 << 28,
    }),
  );
  process.stdout.write(`${join(outDir, filename)}\n`);
} finally {
  rmSync(work, { recursive: true, force: true });
}
