import { homedir } from "node:os";
import { join, resolve } from "node:path";

/**
 * Where the embedded default keeps its state (JetStream store, later Azurite data, job files):
 * --state-dir, else $HSMFLEET_STATE_DIR, else $XDG_STATE_HOME/hsmfleet, else ~/.local/state/hsmfleet.
 */
export const resolveStateDir = (flag?: string): string => {
  if (flag) return resolve(flag);
  const env = process.env["HSMFLEET_STATE_DIR"];
  if (env) return resolve(env);
  const xdg = process.env["XDG_STATE_HOME"];
  return join(xdg ? resolve(xdg) : join(homedir(), ".local", "state"), "hsmfleet");
};
