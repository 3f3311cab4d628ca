import { performance } from "node:perf_hooks";

/**
 * Where a command's fixed cost goes (issue 17; `npm run bench:startup` prints it). Each phase
 * boundary is a performance mark ("hsmfleet:<phase>", milliseconds since the process started);
 * bin/hsmfleet.js marks its own steps the same way before the CLI is loaded. With
 * HSMFLEET_STARTUP_TRACE=1 the process writes, as it exits, one line to stderr:
 *
 *   hsmfleet-startup-trace {"launcher":41.2,"loaded":190.5,…,"exit":402.7}
 *
 * A mark costs well under a microsecond and nothing is written without the variable.
 */
export const STARTUP_TRACE_PREFIX = "hsmfleet-startup-trace ";

const MARK = "hsmfleet:";

export const markStartup = (phase: string): void => {
  performance.mark(`${MARK}${phase}`);
};

/** The marks so far, phase → ms since the process started (the first of each phase). */
export const startupMarks = (): Record<string, number> => {
  const out: Record<string, number> = {};
  for (const m of performance.getEntriesByType("mark")) {
    if (!m.name.startsWith(MARK)) continue;
    const phase = m.name.slice(MARK.length);
    out[phase] ??= Math.round(m.startTime * 10) / 10;
  }
  return out;
};

/** With HSMFLEET_STARTUP_TRACE=1, print the marks to stderr when the process exits. */
export const traceStartupOnExit = (env: NodeJS.ProcessEnv = process.env): void => {
  if (env["HSMFLEET_STARTUP_TRACE"] !== "1") return;
  process.once("exit", () => {
    markStartup("exit");
    process.stderr.write(`${STARTUP_TRACE_PREFIX}${JSON.stringify(startupMarks())}\n`);
  });
};
