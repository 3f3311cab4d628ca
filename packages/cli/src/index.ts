export { buildProgram, main, ExitCode } from "./main.js";
export { openRuntime, defaultWorkerCount } from "./runtime.js";
export type { Runtime, RuntimeOptions } from "./runtime.js";
export { startEmbeddedNats } from "./embedded-nats.js";
export type { EmbeddedNats, EmbeddedNatsOptions } from "./embedded-nats.js";
export { resolveStateDir } from "./state-dir.js";
