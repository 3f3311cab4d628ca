/**
 * The consuming loop of `hsmfleet autoimport`: Blob Storage events from a Service Bus queue
 * (peek-lock), applied with AMLFS auto-import semantics (apply-blob-change.ts).
 *
 * - Each received batch is parsed (Event Grid or CloudEvents schema); a message that is not a
 *   blob event is dead-lettered with the reason (`InvalidEvent`), never retried.
 * - Events of other containers or outside `prefixes` are completed unapplied (counted ignored).
 * - Events of one blob name are applied in `sequencer` order; an event older than the last one
 *   applied for its name is stale and completed unapplied; a message id already applied
 *   (a redelivery, Event Grid's retry) is completed unapplied: duplicates change nothing.
 * - A message is completed only after its changes are applied and recorded in KV; a change that
 *   throws (storage or file-system failure) abandons the message (Service Bus redelivers it), and
 *   on its `maxAttempts`-th delivery it is dead-lettered (`MaxAttemptsExceeded`, the error as
 *   description). Locks are renewed by the SDK while a batch runs.
 * - A kill -9 loses nothing: unsettled messages come back after their lock expires, and applying
 *   a change twice leaves the same tree.
 */
import { isServiceBusError } from "@azure/service-bus";
import type { ServiceBusReceivedMessage, ServiceBusReceiver } from "@azure/service-bus";
import { errorMessage } from "@hsmfleet/core";
import { BlobEventError, compareSequencers, parseBlobEvents } from "@hsmfleet/protocol";
import type { BlobChange } from "@hsmfleet/protocol";
import type { AppliedChange, AutoImportCounters, BlobChangeApplier } from "./apply-blob-change.js";
import { emptyAutoImportCounters } from "./apply-blob-change.js";
import type { AutoImportLedger } from "./autoimport-ledger.js";
import type { AutoImportStatus } from "./autoimport-status.js";

export interface AutoImportServiceOptions {
  name: string;
  container: string;
  target: string;
  receiver: ServiceBusReceiver;
  applier: BlobChangeApplier;
  ledger: AutoImportLedger;
  /** Blob-name prefixes to follow ('' or none: the whole container). */
  prefixes?: string[];
  /** Deliveries after which a failing message is dead-lettered; default 5. */
  maxAttempts?: number;
  /** Errors after which the service stops as Failed; -1 (default) never. */
  maxErrors?: number;
  /** Messages received at once; default 256. */
  batchSize?: number;
  /** Blobs applied at once within a batch; default 16. */
  concurrency?: number;
  /** Stops the loop after the batch in hand (SIGTERM). */
  signal?: AbortSignal;
  /** When the initial scan ended (AMLFS lastTimeFullySynchronized); empty if none ran. */
  lastTimeFullySynchronized?: string;
  onStatus?: (status: AutoImportStatus) => void;
  log?: (level: "info" | "warn", message: string) => void;
}

export const AUTOIMPORT_DEFAULTS = {
  maxAttempts: 5,
  maxErrors: -1,
  batchSize: 256,
  concurrency: 16,
} as const;

interface Received {
  msg: ServiceBusReceivedMessage;
  changes: BlobChange[];
  failure?: unknown;
}

/**
 * Runs a settlement; a lost lock (the lock expired and the message went back to the queue, or was
 * already redelivered to another consumer) is logged, not fatal: the message comes again and its
 * re-application changes nothing.
 */
const settle = async (
  o: AutoImportServiceOptions,
  what: string,
  msg: ServiceBusReceivedMessage,
  op: () => Promise<void>,
): Promise<boolean> => {
  try {
    await op();
    return true;
  } catch (err) {
    if (
      isServiceBusError(err) &&
      (err.code === "MessageLockLost" || err.code === "SessionLockLost")
    ) {
      o.log?.(
        "warn",
        `autoimport ${o.name}: ${what} message ${String(msg.messageId)}: lock lost, it will be delivered again`,
      );
      return false;
    }
    throw err;
  }
};

const addCounters = (into: AutoImportCounters, from: AutoImportCounters): void => {
  for (const k of Object.keys(from) as (keyof AutoImportCounters)[]) into[k] += from[k];
};

export const runAutoImportService = async (
  o: AutoImportServiceOptions,
): Promise<AutoImportStatus> => {
  const maxAttempts = o.maxAttempts ?? AUTOIMPORT_DEFAULTS.maxAttempts;
  const maxErrors = o.maxErrors ?? AUTOIMPORT_DEFAULTS.maxErrors;
  const batchSize = o.batchSize ?? AUTOIMPORT_DEFAULTS.batchSize;
  const concurrency = o.concurrency ?? AUTOIMPORT_DEFAULTS.concurrency;
  const prefixes = (o.prefixes ?? []).map((p) => p.replace(/^\/+/, "")).filter((p) => p !== "");
  const log = o.log ?? (() => undefined);
  const previous = await o.ledger.status();
  const status: AutoImportStatus = {
    ...emptyAutoImportCounters(),
    messagesConsumed: 0,
    duplicates: 0,
    staleEvents: 0,
    deadLettered: 0,
    lastChangeFeedEventConsumedTime: "",
    ...previous,
    name: o.name,
    state: "InProgress",
    container: o.container,
    target: o.target,
    lastTimeFullySynchronized:
      o.lastTimeFullySynchronized ?? previous?.lastTimeFullySynchronized ?? "",
    updatedAt: new Date().toISOString(),
  };
  const save = async () => {
    status.updatedAt = new Date().toISOString();
    await o.ledger.saveStatus(status);
    o.onStatus?.(status);
  };
  await save();
  const ours = (c: BlobChange): boolean =>
    c.container === o.container &&
    (prefixes.length === 0 ||
      prefixes.some((p) => c.blob.startsWith(p) || (c.destination ?? "").startsWith(p)));

  while (!o.signal?.aborted && status.state === "InProgress") {
    let batch: ServiceBusReceivedMessage[];
    try {
      batch = await o.receiver.receiveMessages(batchSize, {
        maxWaitTimeInMs: 1000,
        ...(o.signal ? { abortSignal: o.signal } : {}),
      });
    } catch (err) {
      if (o.signal?.aborted) break;
      throw err;
    }
    if (batch.length === 0) continue;
    const received: Received[] = [];
    const inBatch = new Set<string>();
    for (const msg of batch) {
      const id = String(msg.messageId ?? "");
      if (id !== "" && (inBatch.has(id) || (await o.ledger.applied(id)))) {
        status.duplicates++;
        status.messagesConsumed++;
        await settle(o, "complete", msg, () => o.receiver.completeMessage(msg));
        continue;
      }
      inBatch.add(id);
      try {
        received.push({ msg, changes: parseBlobEvents(msg.body) });
      } catch (err) {
        const reason = err instanceof BlobEventError ? "InvalidEvent" : "UnreadableMessage";
        const description = errorMessage(err);
        const dead = await settle(o, "dead-letter", msg, () =>
          o.receiver.deadLetterMessage(msg, {
            deadLetterReason: reason,
            deadLetterErrorDescription: description,
          }),
        );
        if (dead) status.deadLettered++;
        log(
          "warn",
          `autoimport ${o.name}: message ${id} dead-lettered (${reason}): ${errorMessage(err)}`,
        );
      }
    }
    await applyInOrder(o, received, ours, concurrency, status);
    for (const r of received) {
      const id = String(r.msg.messageId ?? "");
      if (r.failure === undefined) {
        if (id !== "") await o.ledger.markApplied(id);
        if (await settle(o, "complete", r.msg, () => o.receiver.completeMessage(r.msg)))
          status.messagesConsumed++;
        continue;
      }
      const attempt = (r.msg.deliveryCount ?? 0) + 1;
      if (attempt >= maxAttempts) {
        const description = `failed ${attempt} times; last: ${errorMessage(r.failure)}`;
        await settle(o, "dead-letter", r.msg, () =>
          o.receiver.deadLetterMessage(r.msg, {
            deadLetterReason: "MaxAttemptsExceeded",
            deadLetterErrorDescription: description,
          }),
        );
        status.deadLettered++;
        status.totalErrors++;
        log(
          "warn",
          `autoimport ${o.name}: message ${id} dead-lettered after ${attempt} attempts: ${errorMessage(r.failure)}`,
        );
      } else {
        await settle(o, "abandon", r.msg, () => o.receiver.abandonMessage(r.msg));
        log(
          "warn",
          `autoimport ${o.name}: message ${id} abandoned (attempt ${attempt} of ${maxAttempts}): ${errorMessage(r.failure)}`,
        );
      }
    }
    if (maxErrors >= 0 && status.totalErrors > maxErrors) {
      status.state = "Failed";
      log(
        "warn",
        `autoimport ${o.name}: ${status.totalErrors} errors, more than --max-errors ${maxErrors}: stopping`,
      );
    }
    await save();
  }
  if (status.state === "InProgress") status.state = "Disabled";
  await save();
  return status;
};

/** Applies the batch's changes: blob names in parallel, each name's changes in sequencer order. */
const applyInOrder = async (
  o: AutoImportServiceOptions,
  received: Received[],
  ours: (c: BlobChange) => boolean,
  concurrency: number,
  status: AutoImportStatus,
): Promise<void> => {
  const byBlob = new Map<string, { change: BlobChange; from: Received }[]>();
  for (const r of received) {
    for (const change of r.changes) {
      if (!ours(change)) continue;
      const list = byBlob.get(change.blob) ?? [];
      list.push({ change, from: r });
      byBlob.set(change.blob, list);
    }
  }
  const queues = [...byBlob.values()].map((l) =>
    l.sort((a, b) => compareSequencers(a.change.sequencer, b.change.sequencer)),
  );
  const runQueue = async (queue: { change: BlobChange; from: Received }[]) => {
    for (const { change, from } of queue) {
      if (from.failure !== undefined) continue;
      try {
        if (await o.ledger.stale(change.blob, change.sequencer)) {
          status.staleEvents++;
          continue;
        }
        const applied: AppliedChange = await o.applier.apply(change);
        addCounters(status, applied.counters);
        for (const e of applied.errors)
          o.log?.(
            "warn",
            `autoimport ${o.name}: ${e.operation} ${e.path.toString("utf8")}: ${e.message}`,
          );
        await o.ledger.markSequencer(change.blob, change.sequencer);
        if (change.eventTime > status.lastChangeFeedEventConsumedTime)
          status.lastChangeFeedEventConsumedTime = change.eventTime;
      } catch (err) {
        from.failure = err;
      }
    }
  };
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(concurrency, queues.length) }, async () => {
      while (next < queues.length) await runQueue(queues[next++]!);
    }),
  );
};
