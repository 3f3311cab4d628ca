#!/usr/bin/env node
import "./threadpool.js";
import { errorMessage } from "@hsmfleet/core";
import { markStartup, traceStartupOnExit } from "@hsmfleet/telemetry";
import { ignoreClosedPipes } from "./closed-pipes.js";
import { ExitCode, main } from "./main.js";

markStartup("loaded");
traceStartupOnExit();
ignoreClosedPipes();
// No top-level await: the same module is the entry of the one-file CommonJS bundle
// (scripts/bundle.mjs). main() turns every error into a message and an exit code itself.
main().catch((err: unknown) => {
  process.stderr.write(`hsmfleet: unexpected error: ${errorMessage(err)}\n`);
  process.exitCode = ExitCode.Failed;
});
