/**
 * The intake of `hsmfleet autoimport`: Blob Storage events from a Service Bus queue (peek-lock),
 * applied by the fleet as work items over NATS (a burst never runs on one process).
 *
 * - Each receive is a round. A message that is not a blob event is dead-lettered with the reason
 *   (`InvalidEvent`), never retried. A message id already applied (KV) or in flight is completed
 *   unapplied (`duplicates`). Events of other containers or outside `prefixes` are completed
 *   unapplied.
 * - The round's changes go out as sealed work items, one subject per shard (a hash of the blob
 *   name), each blob's changes in `sequencer` order in one item (autoimport-round.ts). Rounds
 *   overlap (`maxRoundsInFlight`) except where they touch the same blob name: a round waits for
 *   the earlier rounds that touch one of its names (all of them, when it or they rename or delete
 *   a directory), so a blob's changes are never applied out of order or at once by two workers.
 * - A message is completed only after the worker's result for every change of it has come and its
 *   id is recorded in KV; a change that failed abandons its message (Service Bus redelivers it),
 *   and on its `maxAttempts`-th delivery it is dead-lettered (`MaxAttemptsExceeded`).
 * - A kill -9 of the service loses nothing: unsettled messages come back after their lock expires
 *   and go out again (under this run's new item key); a worker skips changes not newer than the
 *   last sequencer applied to their blob, and applying a change twice leaves the same tree. A
 *   worker that dies leaves its item unacked: JetStream redelivers it to another.
 */
import { setMaxListeners } from "node:events";
import type { ServiceBusReceivedMessage, ServiceBusReceiver } from "@azure/service-bus";
import { ensureJobConsumer, ensureTopology, jetstream } from "@hsmfleet/bus";
import type { NatsConnection } from "@hsmfleet/bus";
import { errorMessage } from "@hsmfleet/core";
import {
  BlobEventError,
  WORK_STREAM,
  autoImportSubjects,
  parseBlobEvents,
} from "@hsmfleet/protocol";
import type { BlobChange, JobSpec } from "@hsmfleet/protocol";
import { emptyAutoImportCounters } from "./apply-blob-change.js";
import { AutoImportDispatcher } from "./autoimport-dispatch.js";
import type { AutoImportLedger } from "./autoimport-ledger.js";
import { receiveRound } from "./autoimport-receive.js";
import { planRound, settle, settleRound } from "./autoimport-round.js";
import type { Round, RoundMessage, SettleContext } from "./autoimport-round.js";
import type { AutoImportStatus } from "./autoimport-status.js";

export interface AutoImportServiceOptions {
  nc: NatsConnection;
  /** This run's job spec (autoImportJobSpec): its id is the service name, its key seals the items. */
  spec: JobSpec;
  receiver: ServiceBusReceiver;
  ledger: AutoImportLedger;
  /** Apply BlobDeleted / DirectoryDeleted (`--enable-deletions`); default false. */
  enableDeletions?: boolean;
  /** Blob-name prefixes to follow ('' or none: the whole container). */
  prefixes?: string[];
  /** Deliveries after which a failing message is dead-lettered; default 5. */
  maxAttempts?: number;
  /** Errors after which the service stops as Failed; -1 (default) never. */
  maxErrors?: number;
  /** Messages received at once (one round); default 500. */
  batchSize?: number;
  /** Rounds out on the fleet at once; default 8. */
  maxRoundsInFlight?: number;
  /** Subjects the changes are spread over by blob name; default 32. */
  shards?: number;
  /** Changes in one work item, at most; default 200. */
  maxChangesPerItem?: number;
  /**
   * How often an item with no result is looked up in the WORK stream; one that left it with no
   * result is published again (autoimport-dispatch.ts); default 30 s.
   */
  itemTimeoutMs?: number;
  /** Publications of one work item before its changes count as failed; default 3. */
  maxItemAttempts?: number;
  /**
   * Stops receiving (SIGTERM); the rounds in flight get `stopGraceMs` to finish and be settled.
   * Then the service stops waiting: a message whose changes have no result yet is left unsettled
   * (never completed, never abandoned) and comes again after its lock expires.
   */
  signal?: AbortSignal;
  /** After `signal`, how long the rounds in flight may take to finish; default 15,000 ms. */
  stopGraceMs?: number;
  /** When the initial scan ended (AMLFS lastTimeFullySynchronized); empty if none ran. */
  lastTimeFullySynchronized?: string;
  /** The status (and job record) is saved at most this often while busy; default 1000 ms. */
  statusIntervalMs?: number;
  onStatus?: (status: AutoImportStatus) => void;
  log?: (level: "info" | "warn", message: string) => void;
}

export const AUTOIMPORT_DEFAULTS = {
  maxAttempts: 5,
  maxErrors: -1,
  batchSize: 500,
  maxRoundsInFlight: 8,
  shards: 32,
  maxChangesPerItem: 200,
  itemTimeoutMs: 30_000,
  maxItemAttempts: 3,
  statusIntervalMs: 1000,
  stopGraceMs: 15_000,
} as const;

/** The reason `hardStop` is aborted with when the stop grace ran out (not a failure). */
const STOPPED = Symbol("stopped");

const newStatus = (
  o: AutoImportServiceOptions,
  previous: AutoImportStatus | undefined,
): AutoImportStatus => ({
  ...emptyAutoImportCounters(),
  messagesConsumed: 0,
  duplicates: 0,
  staleEvents: 0,
  deadLettered: 0,
  lastChangeFeedEventConsumedTime: "",
  ...previous,
  messagesInFlight: 0,
  roundsInFlight: 0,
  itemsInFlight: 0,
  msBehind: 0,
  name: o.spec.jobId,
  state: "InProgress",
  container: o.spec.container,
  target: o.spec.root.toString(),
  lastTimeFullySynchronized:
    o.lastTimeFullySynchronized ?? previous?.lastTimeFullySynchronized ?? "",
  updatedAt: new Date().toISOString(),
});

/**
 * Starts a run of the service on the bus, before anything else it does (the initial scan too):
 * the items a previous run left queued are purged, the consumer the workers pull from is made, and
 * the job record gets this run's spec, so an item of the previous run still held by a worker is
 * refused as unsolicited (its seal is the old key's) instead of racing the initial scan.
 */
export const prepareAutoImportRun = async (
  o: Pick<AutoImportServiceOptions, "nc" | "spec" | "ledger">,
): Promise<void> => {
  const name = o.spec.jobId;
  const { jsm, topology } = await ensureTopology(o.nc);
  await jsm.streams
    .purge(WORK_STREAM, { filter: autoImportSubjects.batches(name) })
    .catch(() => undefined);
  await ensureJobConsumer(jsm, {
    name: autoImportSubjects.consumer(name),
    filterSubject: autoImportSubjects.batches(name),
    maxAckPending: 1_000,
    ackWaitMs: topology.ackWaitMs,
    maxDeliver: topology.maxDeliver,
  });
  const previous = await o.ledger.status();
  if (previous !== undefined)
    await o.ledger.saveStatus(
      { ...previous, state: "InProgress", updatedAt: new Date().toISOString() },
      o.spec,
    );
};

export const runAutoImportService = async (
  o: AutoImportServiceOptions,
): Promise<AutoImportStatus> => {
  const d = AUTOIMPORT_DEFAULTS;
  const name = o.spec.jobId;
  const maxErrors = o.maxErrors ?? d.maxErrors;
  const batchSize = o.batchSize ?? d.batchSize;
  const maxRounds = Math.max(1, o.maxRoundsInFlight ?? d.maxRoundsInFlight);
  const shards = Math.max(1, o.shards ?? d.shards);
  const maxChanges = Math.max(1, o.maxChangesPerItem ?? d.maxChangesPerItem);
  const statusIntervalMs = o.statusIntervalMs ?? d.statusIntervalMs;
  const prefixes = (o.prefixes ?? []).map((p) => p.replace(/^\/+/, "")).filter((p) => p !== "");
  const log = o.log ?? (() => undefined);
  const status = newStatus(o, await o.ledger.status());
  // The message ids applied before (this run's duplicates are looked up in memory).
  await o.ledger.loadApplied();
  let savedAt = 0;
  let saving: Promise<void> = Promise.resolve();
  // Messages in hand (received, not settled) by id, with their enqueued time (ms).
  const inFlightIds = new Map<string, number>();
  const inFlight = new Set<Promise<void>>();
  let itemsInFlight = (): number => 0;
  const backlog = () => {
    const now = Date.now();
    let oldest = now;
    for (const at of inFlightIds.values()) if (at < oldest) oldest = at;
    status.messagesInFlight = inFlightIds.size;
    status.roundsInFlight = inFlight.size;
    status.itemsInFlight = itemsInFlight();
    status.msBehind = now - oldest;
  };
  const save = async (force: boolean) => {
    if (!force && Date.now() - savedAt < statusIntervalMs) return;
    savedAt = Date.now();
    backlog();
    status.updatedAt = new Date().toISOString();
    const snapshot = { ...status };
    saving = saving.then(() => o.ledger.saveStatus(snapshot, o.spec));
    await saving;
    o.onStatus?.(snapshot);
  };

  await prepareAutoImportRun(o);
  await save(true);

  const js = jetstream(o.nc);
  const dispatcher = new AutoImportDispatcher(
    o.nc,
    js,
    await js.jetstreamManager(),
    name,
    o.spec.itemKey,
    (message) => log("warn", `autoimport ${name}: ${message}`),
  );
  itemsInFlight = () => dispatcher.itemsInFlight;
  const settleCtx: SettleContext = {
    name,
    receiver: o.receiver,
    maxAttempts: o.maxAttempts ?? d.maxAttempts,
    status,
    markApplied: (ids) => o.ledger.markAppliedAll(ids),
    log,
  };
  // Rounds are finished after SIGTERM for `stopGraceMs`; this aborts them when the grace ran out
  // (reason STOPPED: their unanswered messages are left unsettled) or when the service fails.
  const hardStop = new AbortController();
  setMaxListeners(0, hardStop.signal); // one listener per work item in flight
  const stopGraceMs = o.stopGraceMs ?? d.stopGraceMs;
  let graceTimer: NodeJS.Timeout | undefined;
  const onStop = () => {
    graceTimer = setTimeout(() => {
      if (!hardStop.signal.aborted) {
        log(
          "warn",
          `autoimport ${name}: stopping: rounds still in flight after ${stopGraceMs} ms; their unanswered messages are left to their lock`,
        );
        hardStop.abort(STOPPED);
      }
    }, stopGraceMs);
    graceTimer.unref();
  };
  if (o.signal?.aborted) onStop();
  else o.signal?.addEventListener("abort", onStop, { once: true });
  // Waits for `p`, or until the grace after a stop ran out (one listener per run, not per wait).
  const hardStopped = abortedOf(hardStop.signal).then(() => undefined);
  const stopped = abortedOf(o.signal);
  const untilHardStop = <T>(p: Promise<T>): Promise<T | undefined> =>
    Promise.race([p, hardStopped]);
  const ours = (c: BlobChange): boolean =>
    c.container === o.spec.container &&
    (prefixes.length === 0 ||
      prefixes.some((p) => c.blob.startsWith(p) || (c.destination ?? "").startsWith(p)));

  const byName = new Map<string, Promise<void>>();
  let barrierRound: Promise<void> | undefined;
  let fatal: unknown;

  const runRound = async (round: Round): Promise<void> => {
    try {
      const results = await dispatcher.run(round.items, {
        enableDeletions: o.enableDeletions ?? false,
        itemTimeoutMs: o.itemTimeoutMs ?? d.itemTimeoutMs,
        maxItemAttempts: o.maxItemAttempts ?? d.maxItemAttempts,
        signal: hardStop.signal,
      });
      await settleRound(settleCtx, round, results);
      if (maxErrors >= 0 && status.totalErrors > maxErrors && status.state === "InProgress") {
        status.state = "Failed";
        log(
          "warn",
          `autoimport ${name}: ${status.totalErrors} errors, more than --max-errors ${maxErrors}: stopping`,
        );
      }
      await save(false);
    } catch (err) {
      // NATS or Service Bus failed under the round: its messages come again after their lock.
      if (hardStop.signal.reason === STOPPED) {
        log(
          "warn",
          `autoimport ${name}: stopping: a round's settlement failed: ${errorMessage(err)}`,
        );
      } else {
        fatal ??= err;
        hardStop.abort(err);
      }
    } finally {
      for (const m of round.messages) inFlightIds.delete(m.id);
    }
  };

  // The backlog in the status moves while no round ends (a long round, no worker): saved on a timer
  // too, as often as after rounds.
  const ticker = setInterval(() => {
    void save(false).catch((err: unknown) =>
      log("warn", `autoimport ${name}: saving the status: ${errorMessage(err)}`),
    );
  }, statusIntervalMs);
  ticker.unref();
  try {
    while (!o.signal?.aborted && status.state === "InProgress" && fatal === undefined) {
      let batch: ServiceBusReceivedMessage[];
      try {
        batch = await receiveRound(o.receiver, batchSize, 1000, o.signal);
      } catch (err) {
        if (o.signal?.aborted) break;
        throw err;
      }
      if (batch.length === 0) continue;
      const messages = await admitMessages(batch, o, settleCtx, inFlightIds, ours);
      if (messages.length === 0) {
        await save(false);
        continue;
      }
      const round = planRound(messages, shards, maxChanges);
      // Per-name order: wait for the earlier rounds this one shares a name with.
      const before = new Set<Promise<void>>();
      if (round.barrier) for (const p of inFlight) before.add(p);
      else {
        if (barrierRound) before.add(barrierRound);
        for (const n of round.names) {
          const p = byName.get(n);
          if (p) before.add(p);
        }
      }
      if (before.size > 0) await untilHardStop(Promise.all(before));
      if (hardStop.signal.aborted) {
        for (const m of messages) inFlightIds.delete(m.id); // left unsettled: back after the lock
        break;
      }
      const running = runRound(round);
      inFlight.add(running);
      void running.finally(() => inFlight.delete(running));
      for (const n of round.names) byName.set(n, running);
      void running.finally(() => {
        for (const n of round.names) if (byName.get(n) === running) byName.delete(n);
      });
      if (round.barrier) barrierRound = running;
      while (inFlight.size >= maxRounds && !o.signal?.aborted && !hardStop.signal.aborted)
        await untilHardStop(Promise.race([...inFlight, stopped]));
    }
    await untilHardStop(Promise.all(inFlight));
    if (inFlight.size > 0) {
      // The grace ran out: the rounds saw the abort; their settlements get at most 5 s more.
      let late: NodeJS.Timeout | undefined;
      await Promise.race([
        Promise.all(inFlight),
        new Promise((resolve) => (late = setTimeout(resolve, Math.min(stopGraceMs, 5000)))),
      ]);
      clearTimeout(late);
      if (inFlight.size > 0)
        log(
          "warn",
          `autoimport ${name}: stopping: ${inFlight.size} round(s) not settled; left to their lock`,
        );
    }
  } finally {
    clearInterval(ticker);
    clearTimeout(graceTimer);
    o.signal?.removeEventListener("abort", onStop);
    dispatcher.close();
  }
  inFlightIds.clear();
  if (fatal !== undefined)
    throw fatal instanceof Error
      ? fatal
      : new Error(`autoimport ${name}: a round failed: ${errorMessage(fatal)}`);
  if (status.state === "InProgress") status.state = "Disabled";
  await save(true);
  return status;
};

/** Resolves when `signal` aborts (never without one). */
const abortedOf = (signal: AbortSignal | undefined): Promise<void> =>
  new Promise((resolve) => {
    if (signal?.aborted) resolve();
    else signal?.addEventListener("abort", () => resolve(), { once: true });
  });

/**
 * The messages of a receive that go to the fleet: duplicates (applied before, or in flight) are
 * completed, messages that are not blob events dead-lettered; a message none of whose changes this
 * service follows goes with no changes (completed once its round settles).
 */
const admitMessages = async (
  batch: ServiceBusReceivedMessage[],
  o: AutoImportServiceOptions,
  s: SettleContext,
  inFlightIds: Map<string, number>,
  ours: (c: BlobChange) => boolean,
): Promise<RoundMessage[]> => {
  const ids = batch.map((m) => String(m.messageId ?? ""));
  const applied = await o.ledger.appliedAll(ids.map((id) => id || "-"));
  const out: RoundMessage[] = [];
  const settling: Promise<unknown>[] = [];
  batch.forEach((msg, i) => {
    const id = ids[i]!;
    if (id !== "" && (applied[i] || inFlightIds.has(id))) {
      s.status.duplicates++;
      settling.push(
        settle(s, "complete", msg, () => s.receiver.completeMessage(msg)).then((done) => {
          if (done) s.status.messagesConsumed++;
        }),
      );
      return;
    }
    try {
      const changes = parseBlobEvents(msg.body).filter(ours);
      if (id !== "") inFlightIds.set(id, msg.enqueuedTimeUtc?.getTime() ?? Date.now());
      out.push({ msg, id, changes });
    } catch (err) {
      const reason = err instanceof BlobEventError ? "InvalidEvent" : "UnreadableMessage";
      const description = errorMessage(err);
      settling.push(
        settle(s, "dead-letter", msg, () =>
          s.receiver.deadLetterMessage(msg, {
            deadLetterReason: reason,
            deadLetterErrorDescription: description,
          }),
        ).then((dead) => {
          if (dead) s.status.deadLettered++;
        }),
      );
      s.log(
        "warn",
        `autoimport ${s.name}: message ${id} dead-lettered (${reason}): ${description}`,
      );
    }
  });
  await Promise.all(settling);
  return out;
};
