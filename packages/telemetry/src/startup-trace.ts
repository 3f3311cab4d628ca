import { performance } from "node:perf_hooks";
import type { PerformanceMark } from "node:perf_hooks";

/**
 * Where a command's fixed cost goes (issue 17; `npm run bench:startup` prints it). Each phase
 * boundary is a performance mark ("hsmfleet:<phase>") at the time since the process started, with
 * the process's CPU time (user + system) so far as its detail — on a loaded machine the wall clock
 * says more about the neighbours than about us. bin/hsmfleet.js marks its own steps the same way
 * before the CLI is loaded. With HSMFLEET_STARTUP_TRACE=1 the process writes, as it exits, one line
 * to stderr, each phase as [wall ms, CPU ms]:
 *
 *   hsmfleet-startup-trace {"launcher":[41.2,30.1],"loaded":[190.5,160.2],…,"exit":[402.7,301.0]}
 *
 * A mark costs about a microsecond and nothing is written without the variable.
 */
export const STARTUP_TRACE_PREFIX = "hsmfleet-startup-trace ";

const MARK = "hsmfleet:";

const cpuMs = (): number => {
  const { user, system } = process.cpuUsage();
  return (user + system) / 1000;
};

/** Phases marked so far: only the first mark of a phase is read, and a mark lives as long as the process. */
const marked = new Set<string>();

/**
 * Marks a phase boundary, once per phase and process: a long-running service (policy serve runs a
 * job every few minutes, each passing the same phases) must not pile up marks.
 */
export const markStartup = (phase: string): void => {
  if (marked.has(phase)) return;
  marked.add(phase);
  performance.mark(`${MARK}${phase}`, { detail: { cpuMs: cpuMs() } });
};

const tenth = (ms: number): number => Math.round(ms * 10) / 10;

/** The marks so far, phase → [ms since the process started, CPU ms] (the first of each phase). */
export const startupMarks = (): Record<string, [number, number]> => {
  const out: Record<string, [number, number]> = {};
  for (const m of performance.getEntriesByType("mark")) {
    if (!m.name.startsWith(MARK)) continue;
    const phase = m.name.slice(MARK.length);
    const detail = (m as PerformanceMark).detail as { cpuMs?: unknown } | null;
    const cpu = typeof detail?.cpuMs === "number" ? detail.cpuMs : Number.NaN;
    out[phase] ??= [tenth(m.startTime), tenth(cpu)];
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
