import { Writable } from "node:stream";
import test from "ava";
import { createLogger } from "../src/index.js";
import { prettyLine } from "../src/pretty.js";

test("log lines are JSON with the role, and secrets are redacted", async (t) => {
  const lines: string[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      lines.push(chunk.toString());
      done();
    },
  });
  const log = createLogger({ role: "worker", level: "info", destination: sink });
  log.info({ password: "hunter2", nats: { token: "s3cret" }, path: "/mnt/fs/a" }, "connected");
  log.debug("not shown at info");
  await new Promise((r) => setImmediate(r));
  t.is(lines.length, 1);
  const line = JSON.parse(lines[0]!) as Record<string, unknown>;
  t.like(line, {
    role: "worker",
    msg: "connected",
    password: "[redacted]",
    nats: { token: "[redacted]" },
    path: "/mnt/fs/a",
  });
  t.false(lines[0]!.includes("hunter2"));
  t.false(lines[0]!.includes("s3cret"));
});

test("pretty lines for a terminal: time, level, role, message, then the fields", (t) => {
  const line = prettyLine(
    JSON.stringify({
      level: 40,
      time: Date.UTC(2026, 0, 2, 3, 4, 5),
      pid: 1,
      role: "worker",
      msg: "slow",
      jobId: "j1",
      n: 3,
    }),
    false,
  );
  t.is(line, "03:04:05 WARN  worker: slow jobId=j1 n=3\n");
  t.is(prettyLine("not json", false), "not json");
});
