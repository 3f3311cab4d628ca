#!/usr/bin/env node
// Launcher committed in the repository so `npm ci` links `hsmfleet` into node_modules/.bin before
// anything is built (npm skips bins whose file does not exist yet). The CLI itself is compiled.
import { existsSync } from "node:fs";

const compiled = new URL("../dist/src/bin.js", import.meta.url);
if (!existsSync(compiled)) {
  process.stderr.write(
    "hsmfleet: the CLI is not built yet; run `npm run build` at the repository root\n",
  );
  process.exit(2);
}
await import(compiled.href);
