/**
 * The benchmarks' PEER: rclone (`rclone copy`), run against the same endpoint in the same run as
 * hsmfleet, so that the tables can print hsmfleet / rclone ratios — a strong single-process
 * client, not our own ceiling, is what a user compares us with.
 *
 * - ensureRclone(): rclone on PATH, else installed from Debian (`apt-get install -y rclone`, as
 *   root; nothing else is downloaded). Undefined (and the peer column left out, with the reason)
 *   when neither works.
 * - rclone reaches the endpoint through an ACCOUNT SAS URL (`:azureblob,sas_url='…':container`),
 *   the connection-string-free way its docs give for a storage account; the benchmark sink
 *   ignores the signature, Azure would check it.
 * - Tuned as its docs advise for many files and large files: `--transfers` (files at once),
 *   `--checkers` (listing/compare lanes), `--multi-thread-streams` (ranged streams per large
 *   file; rclone skips the MD5 check of a file it downloaded with several streams, hsmfleet never
 *   skips it). Defaults here: hsmfleet's one-worker concurrency (32 files, 8 streams).
 * - timedRun(): one command as a user runs it, wall clock and the CPU seconds (user, system) of
 *   it and everything it waited for (bash's `times` of its children), so a loaded machine can
 *   still be read through CPU seconds.
 */
import { execFileSync, spawn } from "node:child_process";

export interface TimedRun {
  seconds: number;
  /** CPU seconds of the command and its children (user, system). */
  cpuUser: number;
  cpuSystem: number;
  /** Exit code; stderr's last lines when it failed. */
  code: number;
  stderrTail: string;
}

const parseTimes = (line: string): [number, number] => {
  const part = (s: string | undefined): number => {
    const m = /^(\d+)m([\d.]+)s$/.exec(s ?? "");
    return m ? Number(m[1]) * 60 + Number(m[2]) : Number.NaN;
  };
  const [u, s] = line.trim().split(/\s+/);
  return [part(u), part(s)];
};

/**
 * Runs `argv` to completion (stdout discarded) under bash, which then prints its children's CPU
 * times (`times`): the wall clock of the whole command, and its CPU. Never throws for a non-zero
 * exit: the caller decides (code, stderrTail).
 */
export const timedRun = (
  argv: readonly string[],
  env: NodeJS.ProcessEnv = process.env,
): Promise<TimedRun> =>
  new Promise((resolve, reject) => {
    const script = '"$@" >/dev/null 2>&3; rc=$?; times >&2; exit $rc';
    const t0 = performance.now();
    const child = spawn("bash", ["-c", script, "timed", ...argv], {
      stdio: ["ignore", "ignore", "pipe", "pipe"],
      env,
    });
    let err = "";
    let cmdErr = "";
    child.stderr!.on("data", (c: Buffer) => (err += c.toString()));
    (child.stdio[3] as NodeJS.ReadableStream).on("data", (c: Buffer) => {
      cmdErr = (cmdErr + c.toString()).slice(-4000);
    });
    child.once("error", reject);
    child.once("close", (code) => {
      const seconds = (performance.now() - t0) / 1000;
      const lines = err.trim().split("\n");
      // `times`: line 1 the shell's own, line 2 its children's.
      const [cpuUser, cpuSystem] = parseTimes(lines[lines.length - 1] ?? "");
      resolve({ seconds, cpuUser, cpuSystem, code: code ?? -1, stderrTail: cmdErr.trim() });
    });
  });

const which = (cmd: string): string | undefined => {
  try {
    return (
      execFileSync("bash", ["-c", `command -v ${cmd}`], { encoding: "utf8" }).trim() || undefined
    );
  } catch {
    return undefined;
  }
};

export interface Peer {
  path: string;
  version: string;
}

/** rclone on PATH, or installed from Debian when missing (root only); else why not. */
export const ensureRclone = (log: (line: string) => void): Peer | { missing: string } => {
  let path = which("rclone");
  if (path === undefined) {
    if (process.getuid?.() !== 0 || which("apt-get") === undefined)
      return { missing: "rclone is not installed (apt-get install rclone as root)" };
    log("rclone missing: apt-get install -y rclone (Debian package) …");
    try {
      execFileSync("apt-get", ["install", "-y", "--no-install-recommends", "rclone"], {
        stdio: ["ignore", "ignore", "inherit"],
        env: { ...process.env, DEBIAN_FRONTEND: "noninteractive" },
      });
    } catch (err) {
      return { missing: `apt-get install rclone failed: ${(err as Error).message}` };
    }
    path = which("rclone");
    if (path === undefined) return { missing: "rclone still not on PATH after apt-get" };
  }
  const version = execFileSync(path, ["version"], { encoding: "utf8" }).split("\n")[0]!.trim();
  return { path, version };
};

/**
 * An account SAS URL for `blobEndpoint` (http://host:port/account). The benchmark sink does not
 * check signatures; the fields are those of a real account SAS (blob service; service, container
 * and object resources; read, write, delete, list, add, create).
 */
export const accountSasUrl = (blobEndpoint: string): string =>
  `${blobEndpoint.replace(/\/+$/, "")}?sv=2021-06-08&ss=b&srt=sco&sp=rwdlac` +
  `&se=2099-01-01T00:00:00Z&st=2020-01-01T00:00:00Z&spr=https,http&sig=benchmark-sink-ignores-it`;

export interface RcloneTuning {
  /** --transfers: files at once. Default 32 (one hsmfleet worker: 4 × 8 files). */
  transfers?: number;
  /** --checkers. Default 32. */
  checkers?: number;
  /** --multi-thread-streams: ranged streams per large file. Default 8 (hsmfleet's per file). */
  multiThreadStreams?: number;
}

/** The tuning flags of a run (printed with the table). */
export const rcloneFlags = (t: RcloneTuning = {}): string[] => [
  "--transfers",
  String(t.transfers ?? 32),
  "--checkers",
  String(t.checkers ?? 32),
  "--multi-thread-streams",
  String(t.multiThreadStreams ?? 8),
];

/** The remote of `container` through an account SAS URL. */
export const rcloneRemote = (blobEndpoint: string, container: string): string =>
  `:azureblob,sas_url='${accountSasUrl(blobEndpoint)}':${container}`;

/** `rclone copy src dst` tuned, as a user would run it; throws when it fails. */
export const rcloneCopy = async (
  peer: Peer,
  src: string,
  dst: string,
  tuning: RcloneTuning = {},
): Promise<TimedRun> => {
  const r = await timedRun(
    [peer.path, "copy", src, dst, ...rcloneFlags(tuning), "--stats", "0"],
    // No config file: everything is on the command line.
    { ...process.env, RCLONE_CONFIG: "/dev/null" },
  );
  if (r.code !== 0) throw new Error(`rclone copy ${dst} failed (${r.code}): ${r.stderrTail}`);
  return r;
};
