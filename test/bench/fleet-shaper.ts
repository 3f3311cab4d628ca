/**
 * Per-"VM" NIC limits on the loopback interface: an HTB root qdisc on `lo` with one class per
 * VM address, each at the same rate, fed by two u32 filters: `match ip src 127.0.0.N/32` (what the
 * VM sends: uploads) and `match ip dst 127.0.0.N/32` (what it receives: downloads, restores). A
 * run moves data one way; the other way carries only requests, responses and ACKs, so one class
 * for both directions is the VM's NIC either way. Traffic between other addresses is unclassified
 * and passes unshaped (HTB's direct queue; no default class), so the coordinator and NATS (which
 * the workers reach from 127.0.0.1, not from their --bind address) are not limited.
 *
 * The qdisc is removed by remove(), and also on process exit and SIGINT/SIGTERM, whatever happens.
 * Needs root and `tc` (iproute2); shapingUnavailable() says why it cannot run.
 */
import { execFileSync } from "node:child_process";

const run = (args: string[]): string =>
  execFileSync("tc", args, { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] });

/** Why the shaper cannot run here, or undefined when it can. */
export const shapingUnavailable = (): string | undefined => {
  if (process.getuid?.() !== 0) return "shaping loopback traffic with tc needs root";
  let qdiscs: string;
  try {
    qdiscs = run(["qdisc", "show", "dev", "lo"]);
  } catch (err) {
    return `tc is not usable (${err instanceof Error ? err.message.split("\n")[0] : String(err)}); install iproute2`;
  }
  // Another shaper (another benchmark, an admin) owns lo: never replace it.
  const root = qdiscs.split("\n").find((l) => l.includes(" root "));
  if (root !== undefined && !/^qdisc (noqueue|pfifo_fast|fq_codel|mq) /.test(root.trim()))
    return `lo already has a root qdisc (${root.trim()}); not replacing it`;
  return undefined;
};

export class LoopbackShaper {
  #installed = false;
  readonly #onExit = (): void => this.remove();
  readonly #onSignal = (signal: NodeJS.Signals): void => {
    this.remove();
    process.kill(process.pid, signal);
  };

  /**
   * Limits each of `sources` (127.0.0.N) to `mbit` Mbit/s. Burst 1 MiB: loopback segments are up
   * to 64 KiB, far more than HTB's default burst at these rates.
   */
  install(sources: readonly string[], mbit: number): void {
    const reason = shapingUnavailable();
    if (reason !== undefined) throw new Error(reason);
    process.once("exit", this.#onExit);
    process.once("SIGINT", this.#onSignal);
    process.once("SIGTERM", this.#onSignal);
    this.#installed = true;
    try {
      run(["qdisc", "add", "dev", "lo", "root", "handle", "1:", "htb"]);
      sources.forEach((src, i) => {
        const classId = LoopbackShaper.classIdOf(i);
        run([
          "class",
          "add",
          "dev",
          "lo",
          "parent",
          "1:",
          "classid",
          classId,
          "htb",
          "rate",
          `${mbit}mbit`,
          "ceil",
          `${mbit}mbit`,
          "burst",
          "1mb",
          "cburst",
          "1mb",
        ]);
        for (const direction of ["src", "dst"])
          run([
            "filter",
            "add",
            "dev",
            "lo",
            "parent",
            "1:",
            "protocol",
            "ip",
            "prio",
            "1",
            "u32",
            "match",
            "ip",
            direction,
            `${src}/32`,
            "flowid",
            classId,
          ]);
      });
    } catch (err) {
      this.remove();
      throw err;
    }
  }

  /** The class id of the i-th source given to install() (0-based). */
  static classIdOf(i: number): string {
    return `1:${(i + 10).toString(16)}`;
  }

  /** Bytes sent through each class so far (from `tc -s class show`), by class id. */
  classBytes(): Record<string, number> {
    const out: Record<string, number> = {};
    let current: string | undefined;
    for (const line of run(["-s", "class", "show", "dev", "lo"]).split("\n")) {
      const cls = /^class htb (\S+)/.exec(line);
      if (cls) current = cls[1];
      const sent = /^\s*Sent (\d+) bytes/.exec(line);
      if (sent && current !== undefined) out[current] = Number(sent[1]);
    }
    return out;
  }

  /** Removes the qdisc (idempotent; synchronous, so it can run in exit handlers). */
  remove(): void {
    if (!this.#installed) return;
    this.#installed = false;
    process.removeListener("exit", this.#onExit);
    process.removeListener("SIGINT", this.#onSignal);
    process.removeListener("SIGTERM", this.#onSignal);
    try {
      run(["qdisc", "del", "dev", "lo", "root"]);
    } catch {
      // already gone
    }
  }
}
