import { existsSync } from "node:fs";
import { readdir, readFile } from "node:fs/promises";
import { join, relative } from "node:path";
import test from "ava";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { startNatsServer, tempDir, type NatsServerFixture } from "../src/index.js";
import { eventually, tcpOpen } from "./helpers.js";

const start = async (
  t: { teardown(fn: () => Promise<void>): void },
  options?: Parameters<typeof startNatsServer>[0],
): Promise<NatsServerFixture> => {
  const server = await startNatsServer(options);
  t.teardown(() => server.stop());
  return server;
};

const withConnection = async <T>(
  url: string,
  fn: (nc: NatsConnection) => Promise<T>,
): Promise<T> => {
  const nc = await connect({ servers: url, reconnect: false, timeout: 5000 });
  try {
    return await fn(nc);
  } finally {
    await nc.close();
  }
};

/** Raw JetStream API call over core NATS (no @nats-io/jetstream dependency needed). */
const jsApi = async (nc: NatsConnection, subject: string, body?: unknown): Promise<unknown> => {
  const msg = await nc.request(subject, body === undefined ? "" : JSON.stringify(body), {
    timeout: 5000,
  });
  const reply = msg.json<{ error?: { description?: string } }>();
  if (reply.error) throw new Error(`${subject}: ${reply.error.description ?? "error"}`);
  return reply;
};

const createStream = (nc: NatsConnection, name: string): Promise<unknown> =>
  jsApi(nc, `$JS.API.STREAM.CREATE.${name}`, {
    name,
    subjects: [`${name.toLowerCase()}.>`],
    storage: "file",
  });

const streamMessages = async (nc: NatsConnection, name: string): Promise<number> => {
  const info = (await jsApi(nc, `$JS.API.STREAM.INFO.${name}`)) as { state: { messages: number } };
  return info.state.messages;
};

const listFiles = async (dir: string): Promise<string[]> => {
  const entries = await readdir(dir, { recursive: true, withFileTypes: true });
  return entries
    .filter((e) => e.isFile())
    .map((e) => relative(dir, join(e.parentPath, e.name)))
    .sort();
};

test("starts a JetStream server on a random loopback port; stop closes the port and cleans up", async (t) => {
  const server = await start(t);
  t.regex(server.url, /^nats:\/\/127\.0\.0\.1:\d+$/);
  t.is(server.host, "127.0.0.1");
  t.is(server.url, `nats://127.0.0.1:${server.port}`);
  t.true(server.pid > 0);
  t.true(existsSync(server.storeDir));
  t.regex(server.logs(), /Server is ready/);

  await withConnection(server.url, async (nc) => {
    t.true(nc.info?.jetstream, "server INFO advertises JetStream");
    t.is(nc.info?.port, server.port);
    const sub = nc.subscribe("hello.>", { max: 1 });
    nc.publish("hello.world", "hi");
    for await (const msg of sub) t.is(msg.string(), "hi");
    const account = (await jsApi(nc, "$JS.API.INFO")) as { streams: number };
    t.is(account.streams, 0);
  });

  await server.stop();
  t.false(await tcpOpen("127.0.0.1", server.port), "port closed after stop");
  t.false(existsSync(server.storeDir), "temp store dir removed");
  await server.stop(); // idempotent
  t.regex(server.logs(), /exited/);
});

test("two servers at once get different ports and are independent", async (t) => {
  const [a, b] = await Promise.all([start(t), start(t)]);
  t.not(a.port, b.port);
  t.not(a.storeDir, b.storeDir);
  await withConnection(a.url, (nc) => createStream(nc, "ONLY_A"));
  const names = await Promise.all(
    [a, b].map((s) =>
      withConnection(s.url, async (nc) => {
        const r = (await jsApi(nc, "$JS.API.STREAM.NAMES")) as { streams: string[] | null };
        return r.streams ?? [];
      }),
    ),
  );
  t.deepEqual(names, [["ONLY_A"], []]);
  await a.stop();
  t.false(await tcpOpen("127.0.0.1", a.port));
  t.true(await tcpOpen("127.0.0.1", b.port), "stopping one leaves the other running");
});

test("restart keeps the port and the JetStream store", async (t) => {
  const server = await start(t);
  const { port } = server;
  const firstPid = server.pid;
  await withConnection(server.url, async (nc) => {
    await createStream(nc, "ORDERS");
    for (let i = 0; i < 3; i++) {
      const ack = (await nc.request(`orders.${i}`, `order ${i}`, { timeout: 5000 })).json<{
        stream: string;
        seq: number;
      }>();
      t.is(ack.stream, "ORDERS");
      t.is(ack.seq, i + 1);
    }
  });
  const before = await listFiles(server.storeDir);
  t.true(
    before.some((f) => f.endsWith(join("streams", "ORDERS", "meta.inf"))),
    before.join(","),
  );
  t.true(
    before.some((f) => f.endsWith(".blk")),
    before.join(","),
  );
  const metaPath = join(
    server.storeDir,
    before.find((f) => f.endsWith("meta.inf"))!,
  );
  const meta = await readFile(metaPath);

  await server.restart();
  t.is(server.port, port);
  t.not(server.pid, firstPid);
  t.is(server.url, `nats://127.0.0.1:${port}`);
  const after = await listFiles(server.storeDir);
  for (const file of before) t.true(after.includes(file), `${file} survived the restart`);
  t.deepEqual(await readFile(metaPath), meta);
  await withConnection(server.url, async (nc) => {
    t.is(await streamMessages(nc, "ORDERS"), 3, "messages survived the restart");
  });
});

test("kill() takes the server down; restart() brings it back on the same port", async (t) => {
  const server = await start(t);
  await withConnection(server.url, (nc) => createStream(nc, "EVENTS"));
  const pid = server.pid;
  server.kill();
  t.true(await eventually(async () => !(await tcpOpen("127.0.0.1", server.port))));
  const reaped = (): Promise<boolean> => {
    try {
      process.kill(pid, 0);
      return Promise.resolve(false);
    } catch (err) {
      return Promise.resolve((err as NodeJS.ErrnoException).code === "ESRCH");
    }
  };
  t.true(await eventually(reaped), "process is gone (and reaped)");
  await server.restart();
  t.true(await tcpOpen("127.0.0.1", server.port));
  await withConnection(server.url, async (nc) => {
    t.is(await streamMessages(nc, "EVENTS"), 0, "stream definition survived SIGKILL");
  });
});

test("configText and jetstream:false are honoured", async (t) => {
  const server = await start(t, { configText: "max_payload: 2048\n", jetstream: false });
  await withConnection(server.url, async (nc) => {
    t.is(nc.info?.max_payload, 2048);
    t.falsy(nc.info?.jetstream);
    await t.throwsAsync(nc.request("$JS.API.INFO", "", { timeout: 1000 }));
  });
});

test("caller-supplied store dir is kept after stop", async (t) => {
  const dir = await tempDir("nats-store-");
  t.teardown(() => dir.cleanup());
  const server = await start(t, { storeDir: dir.path });
  await withConnection(server.url, (nc) => createStream(nc, "KEPT"));
  await server.stop();
  t.true((await listFiles(dir.path)).some((f) => f.includes("KEPT")));
});

test("start failures reject with a useful message", async (t) => {
  await t.throwsAsync(startNatsServer({ binary: "/nonexistent/nats-server" }), {
    message: /cannot run \/nonexistent\/nats-server/,
  });
  await t.throwsAsync(startNatsServer({ configText: "this is { not valid" }), {
    message: /exited during startup[\s\S]*nats-server output/,
  });
  await t.throwsAsync(startNatsServer({ extraArgs: ["--no-such-flag"] }), {
    message: /exited during startup/,
  });
});
