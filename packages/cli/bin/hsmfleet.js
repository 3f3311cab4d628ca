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
import { existsSync, mkdirSync, readFileSync, renameSync, statSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { performance } from "node:perf_hooks";
import { fileURLToPath } from "node:url";
import { setFlagsFromString } from "node:v8";
import { Script, constants as vmConstants } from "node:vm";

/** A phase boundary for HSMFLEET_STARTUP_TRACE (see @hsmfleet/telemetry startup-trace.ts). */
const mark = (phase) => {
  const { user, system } = process.cpuUsage();
  performance.mark(`hsmfleet:${phase}`, { detail: { cpuMs: (user + system) / 1000 } });
};
mark("launcher");

const compiled = new URL("../dist/src/bin.js", import.meta.url);
const bundleFile = fileURLToPath(new URL("../dist/hsmfleet.cjs", import.meta.url));
const bundleInputs = fileURLToPath(new URL("../dist/hsmfleet.inputs.json", import.meta.url));

/** The bundle's hash when it exists and no file it was made from changed after it. */
const freshBundle = () => {
  if (process.env["HSMFLEET_BUNDLE"] === "0") return undefined;
  try {
    const made = statSync(bundleFile).mtimeMs;
    const { hash, inputs } = JSON.parse(readFileSync(bundleInputs, "utf8"));
    const dir = dirname(bundleFile);
    for (const rel of inputs) if (statSync(join(dir, rel)).mtimeMs > made) return undefined;
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

// V8 tiering for a command that lives seconds, not hours (docs/architecture.md "How a command
// starts"): V8 sends a function to its optimizing compiler (TurboFan, on background threads) once
// it has run its "interrupt budget" of bytecode; with V8's default (67,584) that is most of the hot
// code of a 3-second import, and the compiles cost more CPU than the optimized code saves before
// the command ends. A budget 16 times V8's optimizes only what stays hot. Only for the commands
// that run one job and exit: a worker or a service lives long enough for the compiles to pay (a
// standalone worker's restores cost more CPU under the larger budget). Set before the bundle is
// compiled. HSMFLEET_V8_INTERRUPT_BUDGET replaces it (0: V8's default); an --interrupt-budget given
// to Node itself (command line or NODE_OPTIONS) wins. Only this flag: V8 flags changed at run time
// are not all safe (a GC flag set here crashed V8 20's marker).
const ONE_SHOT_COMMANDS = new Set(["scan", "export", "import", "restore", "hsm", "verify", "sync"]);
const DEFAULT_INTERRUPT_BUDGET = 1_081_344;
const interruptBudget = () => {
  const given = process.env["HSMFLEET_V8_INTERRUPT_BUDGET"];
  if (given === undefined || given === "") return DEFAULT_INTERRUPT_BUDGET;
  return /^\d{1,10}$/.test(given) ? Number(given) : DEFAULT_INTERRUPT_BUDGET;
};
const setInterruptBudget = () => {
  const budget = interruptBudget();
  if (
    budget > 0 &&
    ONE_SHOT_COMMANDS.has(commandWord()) &&
    !process.execArgv.some((a) => a.startsWith("--interrupt-budget=")) &&
    !(process.env["NODE_OPTIONS"] ?? "").includes("--interrupt-budget=")
  )
    setFlagsFromString(`--interrupt-budget=${budget}`);
};

const runBundle = (hash) => {
  const source = readFileSync(bundleFile, "utf8");
  const cacheFile = join(
    dirname(bundleFile),
    "v8-cache",
    `${commandWord()}-${hash}-${process.version}-${process.arch}.bin`,
  );
  let cachedData;
  try {
    cachedData = readFileSync(cacheFile);
  } catch {
    // None yet.
  }
  mark("bundle-read");
  // The CommonJS module wrapper (what Node's own loader compiles); a "#!" line becomes a comment.
  const body = source.startsWith("#!") ? `//${source.slice(2)}` : source;
  const wrapped = `(function (exports, require, module, __filename, __dirname) { ${body}\n});`;
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
setInterruptBudget();
const hash = freshBundle();
mark("bundle-checked");
if (hash !== undefined) runBundle(hash);
else {
  mark("modules");
  await import(compiled.href);
}
