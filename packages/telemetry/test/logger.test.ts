import { Writable } from "node:stream";
import test from "ava";
import { createLogger } from "../src/index.js";

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
