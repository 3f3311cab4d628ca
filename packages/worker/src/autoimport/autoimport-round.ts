/**
 * One round of the autoimport intake: the messages of one receive, their changes cut into work
 * items by shard (blob name hash), and, once the fleet's results are in, each message settled:
 * completed when every change of it is applied (or stale) and its id recorded in KV, abandoned when
 * a change failed, dead-lettered after `maxAttempts` deliveries.
 */
import type { ServiceBusReceivedMessage, ServiceBusReceiver } from "@azure/service-bus";
import { autoImportShardOf, compareSequencers } from "@hsmfleet/protocol";
import type { AutoImportChange, AutoImportResult, BlobChange } from "@hsmfleet/protocol";
import type { DispatchItem } from "./autoimport-dispatch.js";
import type { AutoImportStatus } from "./autoimport-status.js";
import { isServiceBusError } from "./service-bus-client.js";

export interface RoundMessage {
  msg: ServiceBusReceivedMessage;
  id: string;
  /** Its changes this service follows (container, prefixes). */
  changes: BlobChange[];
}

export interface Round {
  messages: RoundMessage[];
  items: DispatchItem[];
  /** Per item, per change: which message it came from. */
  owners: RoundMessage[][];
  /** Blob names the round touches (its changes' names and rename destinations). */
  names: Set<string>;
  /** A directory rename or recursive deletion: touches names it does not list. */
  barrier: boolean;
}

const toItemChange = (c: BlobChange): AutoImportChange => ({
  kind: c.kind,
  blob: c.blob,
  sequencer: c.sequencer,
  eventTime: c.eventTime,
  ...(c.destination !== undefined ? { destination: c.destination } : {}),
  ...(c.recursive ? { recursive: true } : {}),
});

/**
 * The work items of a round: each blob's changes in sequencer order, kept in one item on the
 * subject of the blob's shard; a shard's blobs split over items of at most `maxChanges` changes.
 */
export const planRound = (messages: RoundMessage[], shards: number, maxChanges: number): Round => {
  const byBlob = new Map<string, { change: BlobChange; from: RoundMessage }[]>();
  const names = new Set<string>();
  let barrier = false;
  for (const from of messages)
    for (const change of from.changes) {
      const list = byBlob.get(change.blob) ?? [];
      list.push({ change, from });
      byBlob.set(change.blob, list);
      names.add(change.blob);
      if (change.destination !== undefined) names.add(change.destination);
      if (change.kind === "directoryRenamed" || change.kind === "directoryDeleted") barrier = true;
      if (change.recursive) barrier = true;
    }
  const items: DispatchItem[] = [];
  const owners: RoundMessage[][] = [];
  const open = new Map<number, number>();
  for (const [blob, list] of byBlob) {
    list.sort((a, b) => compareSequencers(a.change.sequencer, b.change.sequencer));
    const shard = autoImportShardOf(blob, shards);
    let at = open.get(shard);
    if (at === undefined || items[at]!.changes.length + list.length > maxChanges) {
      at = items.length;
      items.push({ shard, changes: [] });
      owners.push([]);
      open.set(shard, at);
    }
    for (const { change, from } of list) {
      items[at]!.changes.push(toItemChange(change));
      owners[at]!.push(from);
    }
  }
  return { messages, items, owners, names, barrier };
};

export interface SettleContext {
  name: string;
  receiver: ServiceBusReceiver;
  maxAttempts: number;
  status: AutoImportStatus;
  markApplied: (ids: string[]) => Promise<void>;
  log: (level: "info" | "warn", message: string) => void;
}

/** The rhea delivery a received message keeps (not in the SDK's public type). */
interface WithDelivery {
  delivery?: { link?: { is_open?: () => boolean } };
}

/**
 * Whether the receiver link a message came on has been closed since (the rhea link of its
 * delivery). The SDK replaces a closed link (a drain that timed out, a detach by the service) with
 * a new one under the same link name, and settles a message through the open link of its link's
 * name: a message from the old link is then settled with a delivery the new link does not have, no
 * disposition reaches the service, and the settlement waits for its operation timeout (60 s, then
 * retried) — rounds in flight held up every receive for a minute and more in the bench (issue 20).
 */
export const cameOnClosedLink = (msg: ServiceBusReceivedMessage): boolean => {
  const link = (msg as unknown as WithDelivery).delivery?.link;
  return typeof link?.is_open === "function" && !link.is_open();
};

/**
 * Makes the SDK settle `msg` by its lock token through the entity's `$management` link
 * (`com.microsoft:update-disposition`), as it does for a message whose link is gone or that has
 * no link (a deferred message): its delivery is replaced by a copy without the closed link.
 */
const settleByLockToken = (msg: ServiceBusReceivedMessage): void => {
  const m = msg as unknown as WithDelivery;
  if (m.delivery) m.delivery = { ...m.delivery, link: undefined };
};

/**
 * Runs a settlement. A message whose receiver link was closed since it came (cameOnClosedLink) is
 * settled by its lock token (settleByLockToken). A lost lock (the lock expired and the message went
 * back to the queue, or was already redelivered to another consumer) is logged, not fatal: the
 * message comes again and its re-application changes nothing.
 */
export const settle = async (
  o: Pick<SettleContext, "name" | "log">,
  what: string,
  msg: ServiceBusReceivedMessage,
  op: () => Promise<void>,
): Promise<boolean> => {
  if (cameOnClosedLink(msg)) {
    o.log(
      "info",
      `autoimport ${o.name}: ${what} message ${String(msg.messageId)}: the receiver link it came on is closed; settled by lock token through $management`,
    );
    settleByLockToken(msg);
  }
  try {
    await op();
    return true;
  } catch (err) {
    if (
      isServiceBusError(err) &&
      (err.code === "MessageLockLost" || err.code === "SessionLockLost")
    ) {
      o.log(
        "warn",
        `autoimport ${o.name}: ${what} message ${String(msg.messageId)}: lock lost, it will be delivered again`,
      );
      return false;
    }
    throw err;
  }
};

/**
 * Counts the results and settles every message of the round. A message with a change whose item
 * has no result (`undefined`: the service stopped first) is left unsettled: neither completed nor
 * abandoned (no delivery counted against it), it comes again after its lock expires.
 */
export const settleRound = async (
  s: SettleContext,
  round: Round,
  results: (AutoImportResult | undefined)[],
): Promise<void> => {
  const failure = new Map<RoundMessage, string>();
  const unfinished = new Set<RoundMessage>();
  const { status } = s;
  results.forEach((result, i) => {
    const item = round.items[i]!;
    if (result === undefined) {
      for (const from of round.owners[i]!) unfinished.add(from);
      return;
    }
    for (const k of Object.keys(result.counters) as (keyof typeof result.counters)[])
      status[k] += result.counters[k];
    result.outcomes.forEach((outcome, j) => {
      const change = item.changes[j]!;
      if (outcome === "stale") status.staleEvents++;
      if (outcome === "ok" && change.eventTime > status.lastChangeFeedEventConsumedTime)
        status.lastChangeFeedEventConsumedTime = change.eventTime;
    });
    for (const f of result.failures) {
      const from = round.owners[i]![f.index];
      if (from && !failure.has(from)) failure.set(from, f.message);
    }
  });
  for (const m of unfinished) failure.delete(m);
  if (unfinished.size > 0)
    s.log(
      "info",
      `autoimport ${s.name}: stopping: ${unfinished.size} message(s) left unsettled (no result yet); they come again after their lock`,
    );
  const good = round.messages.filter((m) => !failure.has(m) && !unfinished.has(m));
  // Durable before completed: a redelivery after a crash between the two is a duplicate.
  await s.markApplied(good.map((m) => m.id).filter((id) => id !== ""));
  const settled = await Promise.all([
    ...good.map((m) => settle(s, "complete", m.msg, () => s.receiver.completeMessage(m.msg))),
    ...[...failure].map(([m, why]) => settleFailed(s, m, why)),
  ]);
  status.messagesConsumed += settled.slice(0, good.length).filter(Boolean).length;
};

const settleFailed = async (s: SettleContext, m: RoundMessage, why: string): Promise<boolean> => {
  const attempt = (m.msg.deliveryCount ?? 0) + 1;
  if (attempt >= s.maxAttempts) {
    const description = `failed ${attempt} times; last: ${why}`;
    const dead = await settle(s, "dead-letter", m.msg, () =>
      s.receiver.deadLetterMessage(m.msg, {
        deadLetterReason: "MaxAttemptsExceeded",
        deadLetterErrorDescription: description.slice(0, 4096),
      }),
    );
    if (dead) {
      s.status.deadLettered++;
      s.status.totalErrors++;
    }
    s.log(
      "warn",
      `autoimport ${s.name}: message ${m.id} dead-lettered after ${attempt} attempts: ${why}`,
    );
    return false;
  }
  await settle(s, "abandon", m.msg, () => s.receiver.abandonMessage(m.msg));
  s.log(
    "warn",
    `autoimport ${s.name}: message ${m.id} abandoned (attempt ${attempt} of ${s.maxAttempts}): ${why}`,
  );
  return false;
};
