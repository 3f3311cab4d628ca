// Generates src/gen/hsmfleet.js (ESM static module) and src/gen/hsmfleet.d.ts from proto/hsmfleet/v1.
import { execFileSync } from "node:child_process";
import { mkdirSync, readdirSync, writeFileSync, readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const pkg = resolve(here, "..");
const protoRoot = resolve(pkg, "../../proto");
const outDir = join(pkg, "src/gen");
const require = createRequire(import.meta.url);
const cliDir = dirname(require.resolve("protobufjs-cli/package.json"));
const pbjs = join(cliDir, "bin/pbjs");
const pbts = join(cliDir, "bin/pbts");

const protos = readdirSync(join(protoRoot, "hsmfleet/v1"))
  .filter((f) => f.endsWith(".proto"))
  .sort()
  .map((f) => join(protoRoot, "hsmfleet/v1", f));

mkdirSync(outDir, { recursive: true });
const js = join(outDir, "hsmfleet.js");
execFileSync(
  process.execPath,
  [
    pbjs,
    "-t",
    "static-module",
    "-w",
    "es6",
    "--no-beautify",
    "--no-verify",
    "--no-delimited",
    "--force-long",
    "-p",
    protoRoot,
    "-o",
    js,
    ...protos,
  ],
  { cwd: protoRoot, stdio: "inherit" },
);
// The generated module imports "protobufjs/minimal"; Node ESM needs the explicit file.
writeFileSync(
  js,
  readFileSync(js, "utf8").replace(/from "protobufjs\/minimal"/g, 'from "protobufjs/minimal.js"'),
);
execFileSync(process.execPath, [pbts, "-o", join(outDir, "hsmfleet.d.ts"), js], {
  stdio: "inherit",
});
console.log(`generated ${protos.length} proto files into ${outDir}`);
