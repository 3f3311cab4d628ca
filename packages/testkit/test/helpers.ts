import { execFile } from "node:child_process";
import { createConnection } from "node:net";

/** True if a TCP connection to host:port is accepted. */
export const tcpOpen = (host: string, port: number): Promise<boolean> =>
  new Promise((resolve) => {
    const socket = createConnection({ host, port });
    socket.setTimeout(2000, () => {
      socket.destroy();
      resolve(false);
    });
    socket.once("connect", () => {
      socket.destroy();
      resolve(true);
    });
    socket.once("error", () => resolve(false));
  });

/** Poll `check` until it returns true or `timeoutMs` passes. */
export const eventually = async (
  check: () => Promise<boolean>,
  timeoutMs = 5000,
): Promise<boolean> => {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await check()) return true;
    if (Date.now() > deadline) return false;
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
};

export interface ExecResult {
  code: number;
  stdout: Buffer;
  stderr: string;
}

/** Run a command; never rejects on a non-zero exit. */
export const exec = (cmd: string, args: string[], cwd?: string): Promise<ExecResult> =>
  new Promise((resolve, reject) => {
    execFile(
      cmd,
      args,
      { cwd, encoding: "buffer", maxBuffer: 256 * 1024 * 1024 },
      (error, stdout, stderr) => {
        if (error && typeof error.code !== "number") {
          reject(new Error(`${cmd}: ${error.message}`));
          return;
        }
        resolve({
          code: typeof error?.code === "number" ? error.code : 0,
          stdout,
          stderr: stderr.toString(),
        });
      },
    );
  });

/** Undo getfattr's name quoting (\ooo octal escapes; other bytes are raw). */
export const unquoteGetfattr = (quoted: Buffer): Buffer => {
  const out: number[] = [];
  for (let i = 0; i < quoted.length; i++) {
    const byte = quoted[i]!;
    if (
      byte === 0x5c &&
      i + 3 < quoted.length &&
      /^[0-7]{3}$/.test(quoted.toString("latin1", i + 1, i + 4))
    ) {
      out.push(parseInt(quoted.toString("latin1", i + 1, i + 4), 8));
      i += 3;
    } else {
      out.push(byte);
    }
  }
  return Buffer.from(out);
};

/**
 * Parse `getfattr -d -e hex` output into (raw path bytes as hex) -> (attribute -> hex value).
 * A leading "./" is dropped so paths compare with root-relative manifest paths.
 */
export const parseGetfattrDump = (dump: Buffer): Map<string, Map<string, string>> => {
  const result = new Map<string, Map<string, string>>();
  let current: Map<string, string> | undefined;
  let start = 0;
  while (start < dump.length) {
    let end = dump.indexOf(0x0a, start);
    if (end < 0) end = dump.length;
    const line = dump.subarray(start, end);
    start = end + 1;
    if (line.subarray(0, 8).toString("latin1") === "# file: ") {
      let path = unquoteGetfattr(line.subarray(8));
      if (path.subarray(0, 2).toString("latin1") === "./") path = path.subarray(2);
      current = new Map();
      result.set(path.toString("hex"), current);
    } else if (line.length > 0 && current) {
      const text = line.toString("latin1");
      const eq = text.indexOf("=");
      if (eq > 0) current.set(text.slice(0, eq), text.slice(eq + 1));
    }
  }
  return result;
};
