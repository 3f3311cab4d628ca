// `hsmfleet autoimport` stops cleanly on SIGTERM while its rounds are out on the fleet and no
// worker answers them: it exits 0 within a bounded time (its stop grace), and completes no message
// whose changes were not applied (they stay in the queue and come again after their lock).
import { mkdir } from "node:fs/promises";
import { join } from "node:path";
import test from "ava";
import type { ServiceBusMessage } from "@azure/service-bus";
import { WORK_STREAM } from "@hsmfleet/protocol";
import { jetstreamManager } from "@nats-io/jetstream";
import { blobEvent, tempDir } from "@hsmfleet/testkit";
import {
  exitOf,
  runCli,
  spawnCli,
  startBus,
  startServiceBus,
  startStorage,
  waitFor,
} from "./helpers.js";

test("SIGTERM with rounds in flight and no worker: the service exits 0 within its stop grace and completes nothing unapplied", async (t) => {
  t.timeout(5 * 60_000);
  const tmp = await tempDir();
  t.teardown(() => tmp.cleanup());
  const azurite = await startStorage(t);
  const { server, nc } = await startBus(t);
  const { sb, client } = await startServiceBus(t);
  sb.createQueue("events", { lockDurationMs: 120_000 });
  let output = "";
  let stdout = "";
  const target = join(tmp.path, "target");
  await mkdir(target);
  const service = spawnCli(
    [
      "--nats",
      server.url,
      "--storage",
      azurite.connectionString,
      "--workers",
      "0",
      "autoimport",
      target,
      "--container",
      "stop",
      "--events",
      "events",
      "--no-initial-scan",
      "--json",
    ],
    {
      env: {
        HSMFLEET_SERVICEBUS_CONNECTION_STRING: sb.connectionString,
        HSMFLEET_LOG_LEVEL: "info",
      },
    },
  );
  service.stdout!.on("data", (d: Buffer) => (stdout += d.toString()));
  service.stderr!.on("data", (d: Buffer) => (output += d.toString()));
  t.teardown(() => void service.kill("SIGKILL"));

  const n = 20;
  const messages: ServiceBusMessage[] = Array.from({ length: n }, (_, i) => {
    const e = blobEvent({
      type: "BlobCreated",
      container: "stop",
      blob: `d/f${i}.txt`,
      etag: `"0x${i}"`,
      size: 1,
      sequencer: i + 1,
    });
    return { body: e, messageId: String(e.id) };
  });
  const sender = client.createSender("events");
  await sender.sendMessages(messages);
  await sender.close();
  const queue = sb.entity("events")!;
  // Every message received (locked): its round is out on the fleet, waiting for results that no
  // worker will send.
  await waitFor(
    "the service to receive every message",
    () => queue.lockedCount === n,
    120_000,
  ).catch((err: unknown) => {
    throw new Error(`${(err as Error).message}\n--- service:\n${output.slice(-3000)}`);
  });

  // ... and its work items are queued on the fleet, unanswered.
  const jsm = await jetstreamManager(nc);
  await waitFor(
    "the round's work items in the WORK stream",
    async () => (await jsm.streams.info(WORK_STREAM)).state.messages > 0,
    60_000,
  );
  // `hsmfleet status` shows the backlog the service holds (a receiver cannot see the queue's
  // depth): every message in hand, its round and work items out on the fleet, and for how long the
  // oldest message has been in Service Bus — also while no round ends (no worker).
  let backlog: Record<string, number> = {};
  let shownText = "";
  await waitFor(
    "hsmfleet status to show the 20 messages in hand",
    async () => {
      const shown = await runCli(["--nats", server.url, "status", "autoimport-stop", "--json"]);
      if (shown.code !== 0) return false;
      backlog = (JSON.parse(shown.stdout) as { backlog?: Record<string, number> }).backlog ?? {};
      return backlog["messagesInFlight"] === n && (backlog["secondsBehind"] ?? 0) > 0;
    },
    60_000,
  ).catch((err: unknown) => {
    throw new Error(
      `${(err as Error).message}: ${JSON.stringify(backlog)}\n${output.slice(-3000)}`,
    );
  });
  t.true((backlog["roundsInFlight"] ?? 0) >= 1, JSON.stringify(backlog));
  t.true((backlog["itemsInFlight"] ?? 0) >= 1, JSON.stringify(backlog));
  shownText = (await runCli(["--nats", server.url, "status", "autoimport-stop"])).stdout;
  t.regex(
    shownText,
    new RegExp(
      `backlog in hand: messages ${n}, rounds \\d+, work items \\d+; oldest in Service Bus for \\d+\\.\\d s`,
    ),
  );
  const stoppedAt = Date.now();
  service.kill("SIGTERM");
  const exited = await Promise.race([
    exitOf(service),
    new Promise<undefined>((resolve) => setTimeout(() => resolve(undefined), 120_000).unref()),
  ]);
  t.truthy(exited, `the service did not exit within 120 s of SIGTERM:\n${output.slice(-3000)}`);
  t.deepEqual(exited, { code: 0, signal: null }, output.slice(-3000));
  t.log(`exited ${((Date.now() - stoppedAt) / 1000).toFixed(1)} s after SIGTERM`);
  // Nothing was applied, so nothing was completed (or abandoned into a delivery count).
  t.is(queue.count, n, output.slice(-3000));
  const status = JSON.parse(stdout.trim().split("\n").pop() ?? "{}") as {
    messagesConsumed: number;
    state: string;
  };
  t.is(status.messagesConsumed, 0);
  t.is(status.state, "Disabled");
});
