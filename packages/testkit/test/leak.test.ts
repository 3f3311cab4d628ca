import { spawn } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import test, { type ExecutionContext } from "ava";
import { eventually, tcpOpen } from "./helpers.js";

interface Started {
  pid: number;
  port: number;
  dir: string;
}

const INDEX = new URL("../src/index.js", import.meta.url).href;

/** A process is gone when kill(0) fails or it is a zombie awaiting its (new) parent's reaping. */
const gone = (pid: number): boolean => {
  try {
    process.kill(pid, 0);
  } catch {
    return true;
  }
  try {
    return /^\d+ \(.*\) Z/.test(readFileSync(`/proc/${pid}/stat`, "utf8"));
  } catch {
    return true;
  }
};

/**
 * Run a script that starts fixtures and then ends badly (`ending`), reporting what it started
 * on stdout; resolve with that and how the script process ended.
 */
const runLeaky = (
  setup: string,
  ending: string,
  onStarted?: (child: ReturnType<typeof spawn>) => void,
): Promise<{ started: Started[]; code: number | null; signal: NodeJS.Signals | null }> =>
  new Promise((resolve, reject) => {
    const script = `import { startNatsServer, startAzurite } from ${JSON.stringify(INDEX)};
const started = [];
${setup}
process.stdout.write(JSON.stringify(started) + "\\n");
${ending}`;
    const child = spawn(process.execPath, ["--input-type=module", "-e", script], {
      stdio: ["ignore", "pipe", "pipe"],
    });
    let out = "";
    let err = "";
    let notified = false;
    child.stdout.on("data", (chunk: Buffer) => {
      out += chunk.toString();
      if (!notified && out.includes("\n")) {
        notified = true;
        onStarted?.(child);
      }
    });
    child.stderr.on("data", (chunk: Buffer) => (err += chunk.toString()));
    child.once("error", reject);
    child.once("close", (code, signal) => {
      const line = out.split("\n")[0] ?? "";
      if (line === "") reject(new Error(`script failed before starting fixtures: ${err}`));
      else resolve({ started: JSON.parse(line) as Started[], code, signal });
    });
  });

const NATS = `const n = await startNatsServer(); started.push({ pid: n.pid, port: n.port, dir: n.storeDir });`;
const AZURITE = `const a = await startAzurite(); started.push({ pid: a.pid, port: a.port, dir: a.location });`;

const assertCleanedUp = async (t: ExecutionContext, started: Started[]): Promise<void> => {
  for (const s of started) {
    t.true(await eventually(() => Promise.resolve(gone(s.pid)), 5000), `pid ${s.pid} killed`);
    t.true(
      await eventually(async () => !(await tcpOpen("127.0.0.1", s.port)), 5000),
      `port ${s.port} closed`,
    );
    t.false(existsSync(s.dir), `${s.dir} removed`);
  }
};

test("servers a script forgets to stop die with it (and don't keep it alive)", async (t) => {
  const result = await runLeaky(`${NATS}\n${AZURITE}`, "");
  t.is(result.code, 0);
  t.is(result.started.length, 2);
  await assertCleanedUp(t, result.started);
});

test("servers die when the test process crashes", async (t) => {
  const result = await runLeaky(NATS, `throw new Error("boom");`);
  t.is(result.code, 1);
  await assertCleanedUp(t, result.started);
});

test("servers die when the test process calls process.exit", async (t) => {
  const result = await runLeaky(NATS, "process.exit(7);");
  t.is(result.code, 7);
  await assertCleanedUp(t, result.started);
});

test("servers die when the test process is SIGTERMed (as ava does on timeout); the signal still terminates it", async (t) => {
  const result = await runLeaky(NATS, "setInterval(() => {}, 1000);", (child) =>
    child.kill("SIGTERM"),
  );
  t.is(result.signal, "SIGTERM");
  await assertCleanedUp(t, result.started);
});
