#!/usr/bin/env node
// Launcher committed in the repository so `npm ci` links `hsmfleet` into node_modules/.bin before
// anything is built (npm skips bins whose file does not exist yet). The CLI itself is compiled.
//
// It runs the one-file bundle (dist/hsmfleet.cjs, made by scripts/bundle.mjs in the build) when it
// is there and no workspace file it was made from is newer: loading ~1,800 modules one by one was
// most of a command's fixed cost (issue 17). The bundle is compiled with a V8 code cache
// (dist/v8-cache/<command>-<bundle hash>-<node version>.bin), written beside it when a run found
// none or V8 refused it (another Node), so the functions a command needs are not compiled again.
// Otherwise, or with HSMFLEET_BUNDLE=0, the compiled modules (dist/src/bin.js) run as they are.
//
// A CommonJS file (bin/package.json): libuv makes its threadpool at the first use, with the size
// UV_THREADPOOL_SIZE has then, and Node's ES-module loader reads an ES-module main file through
// that pool, before a line of it runs. So the size is set here, first, in a file Node loads
// without the pool; set later (as src/threadpool.ts did alone), it changed nothing and every
// command and worker ran with libuv's 4 threads.
"use strict";
// Directory reads, lstat, xattr calls, file creates and writes run on libuv's threadpool: a worker
// keeps many in flight, so give it 16 unless the admin chose a size.
process.env["UV_THREADPOOL_SIZE"] ??= "16";
const {
  existsSync,
  mkdirSync,
  readFileSync,
  renameSync,
  statSync,
  writeFileSync,
} = require("node:fs");
const { createRequire } = require("node:module");
const { dirname, join } = require("node:path");
const { performance } = require("node:perf_hooks");
const { pathToFileURL } = require("node:url");
const { Script, constants: vmConstants } = require("node:vm");

/** A phase boundary for HSMFLEET_STARTUP_TRACE (see @hsmfleet/telemetry startup-trace.ts). */
const mark = (phase) => {
  const { user, system } = process.cpuUsage();
  performance.mark(`hsmfleet:${phase}`, { detail: { cpuMs: (user + system) / 1000 } });
};
mark("launcher");

const compiled = join(__dirname, "..", "dist", "src", "bin.js");
const bundleFile = join(__dirname, "..", "dist", "hsmfleet.cjs");
const bundleInputs = join(__dirname, "..", "dist", "hsmfleet.inputs.json");

/**
 * The @hsmfleet/fs addon when it is built, for its launcher helpers: whole-file reads into huge-page
 * memory, the bundle an external string over it (native/hugebuf.c), and the newest mtime of many
 * files in one call (native/mtimes.c). fs.readFileSync's fresh 4 KiB pages and UTF-8 decoding of
 * the 5 MB bundle and its 3–4 MB code cache took ~70 ms of every command on a VM whose page faults
 * trap to the hypervisor, the staleness check's ~300 statSync calls ~14 ms; these ~3 ms and <1 ms
 * (docs/benchmarks.md, "The bundle read into huge pages"). The path is the same in the workspace
 * and in a release (node_modules/@hsmfleet/{cli,fs}). HSMFLEET_BUNDLE_READ=plain does without it.
 */
const launcherAddon = (() => {
  if (process.env["HSMFLEET_BUNDLE_READ"] === "plain") return undefined;
  try {
    const addon = require(
      join(__dirname, "..", "..", "fs", "build", "Release", "hsmfleet_fs.node"),
    );
    return typeof addon.readAsciiExternal === "function" &&
      typeof addon.newestMtimeMs === "function"
      ? addon
      : undefined;
  } catch {
    // Not built (the modules then fail to load with the build instructions) or another platform.
    return undefined;
  }
})();

/** The bundle's hash when it exists and no file it was made from changed after it. */
const freshBundle = () => {
  if (process.env["HSMFLEET_BUNDLE"] === "0") return undefined;
  try {
    const made = statSync(bundleFile).mtimeMs;
    const { hash, inputs } = JSON.parse(readFileSync(bundleInputs, "utf8"));
    const dir = dirname(bundleFile);
    if (launcherAddon !== undefined) {
      const newest = launcherAddon.newestMtimeMs(dir, inputs);
      if (newest < 0 || newest > made) return undefined;
    } else for (const rel of inputs) if (statSync(join(dir, rel)).mtimeMs > made) return undefined;
    return typeof hash === "string" ? hash : undefined;
  } catch {
    // No bundle, no inputs list, or an input gone: the compiled modules are the truth.
    return undefined;
  }
};

/**
 * Commands that run jobs or services, each with a code cache of its own (they compile different
 * parts of the CLI); every other command shares one. Only a cache's name depends on this.
 */
const CACHED_COMMANDS = new Set([
  "scan",
  "export",
  "import",
  "restore",
  "hsm",
  "verify",
  "sync",
  "worker",
  "autoimport",
  "serve",
  "policy",
]);
const commandWord = () => process.argv.slice(2).find((a) => CACHED_COMMANDS.has(a)) ?? "other";

/**
 * Commands that start with V8's optimizing compiler (TurboFan) off, and after how many ms it is
 * turned on. A one-shot scan of a few hundred thousand entries is over in 1–2 s, before
 * TurboFan's background compiles pay back: they cost ~0.2 of ~2.5 CPU s per 226k-entry scan on 2
 * CPUs, both CPUs being busy with the walk (docs/benchmarks.md, `scan5`); a longer scan gets it
 * back after this delay. HSMFLEET_TURBOFAN_AFTER_MS overrides it for these commands (0: on from
 * the start, as every other command runs).
 */
const TURBOFAN_AFTER_MS = new Map([["scan", 3000]]);

/** Turns TurboFan off for `command`'s first moments (TURBOFAN_AFTER_MS); before any compile. */
const delayTurbofan = (command) => {
  if (!TURBOFAN_AFTER_MS.has(command)) return;
  const raw = process.env["HSMFLEET_TURBOFAN_AFTER_MS"];
  const afterMs = raw ? Number(raw) : TURBOFAN_AFTER_MS.get(command);
  if (!(afterMs > 0)) return;
  // Required here, not at the top: node:v8 is not in Node's start-up snapshot (~5 ms to load).
  const { setFlagsFromString } = require("node:v8");
  setFlagsFromString("--no-opt");
  setTimeout(() => setFlagsFromString("--opt"), afterMs).unref();
  // V8 checks a code cache against a hash of the flags: the one written at exit must be made
  // with the flags the next run compiles with (runBundle adds its writer after this listener).
  process.once("exit", () => setFlagsFromString("--no-opt"));
};

/** The bundle made by scripts/bundle.mjs starts with the CommonJS module function's head. */
const WRAPPER_HEAD = "(function (exports, require, module, __filename, __dirname) { ";

const runBundle = (hash) => {
  // null: not ASCII (a bundle not made by bundle.mjs), unreadable, or an older Node.
  const external = launcherAddon?.readAsciiExternal(bundleFile) ?? null;
  const source = external ?? readFileSync(bundleFile, "utf8");
  const cacheFile = join(
    dirname(bundleFile),
    "v8-cache",
    `${commandWord()}-${hash}-${process.version}-${process.arch}.bin`,
  );
  let cachedData = launcherAddon?.readFileHuge(cacheFile) ?? undefined;
  if (cachedData === undefined) {
    try {
      cachedData = readFileSync(cacheFile);
    } catch {
      // None yet.
    }
  }
  if (external !== null) mark("bundle-read-native");
  mark("bundle-read");
  // The CommonJS module wrapper (what Node's own loader compiles), in the file already when
  // bundle.mjs made it (no 5 MB concatenation to copy); a "#!" line becomes a comment.
  const wrapped = source.startsWith(WRAPPER_HEAD)
    ? source
    : `${WRAPPER_HEAD}${source.startsWith("#!") ? `//${source.slice(2)}` : source}\n});`;
  const script = new Script(wrapped, {
    filename: bundleFile,
    cachedData,
    importModuleDynamically: vmConstants.USE_MAIN_CONTEXT_DEFAULT_LOADER,
  });
  const cacheUsed = cachedData !== undefined && !script.cachedDataRejected;
  mark(cacheUsed ? "code-cache-used" : "code-cache-missed");
  mark("bundle-compiled");
  if (!cacheUsed) {
    // At exit the script holds every function this command compiled: that is the cache worth
    // keeping. Written atomically; a folder we may not write to only means no cache.
    process.once("exit", () => {
      try {
        mkdirSync(dirname(cacheFile), { recursive: true, mode: 0o755 });
        const tmp = `${cacheFile}.${process.pid}.tmp`;
        writeFileSync(tmp, script.createCachedData(), { mode: 0o644 });
        renameSync(tmp, cacheFile);
      } catch {
        // Read-only install: run without a cache.
      }
    });
  }
  const module = { exports: {}, filename: bundleFile, id: bundleFile, loaded: false };
  script
    .runInThisContext()
    .call(
      module.exports,
      module.exports,
      createRequire(bundleFile),
      module,
      bundleFile,
      dirname(bundleFile),
    );
};

if (!existsSync(compiled)) {
  process.stderr.write(
    "hsmfleet: the CLI is not built yet; run `npm run build` at the repository root\n",
  );
  process.exit(2);
}
const hash = freshBundle();
mark("bundle-checked");
delayTurbofan(commandWord());
if (hash !== undefined) runBundle(hash);
else {
  mark("modules");
  // A failure to load is an unhandled rejection: Node prints it and exits 1.
  void import(pathToFileURL(compiled).href);
}
