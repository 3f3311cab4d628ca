import { hostname } from "node:os";
import { ResilientConsumer, hasValidSeal, sealHeaders, withJetStreamRetry } from "@hsmfleet/bus";
import type { JetStreamClient, JobStore, NatsConnection } from "@hsmfleet/bus";
import { JobError, errorMessage } from "@hsmfleet/core";
import {
  JobState,
  RESULTS_STREAM,
  TRANSFER_CONSUMER,
  WALK_CONSUMER,
  WORK_STREAM,
  CHUNK_CONSUMER,
  decodeChunk,
  decodeErrorBatch,
  decodeItemResult,
  decodeTransferBatch,
  decodeWalkShard,
  addCounters,
  emptyScanCounters,
  encodeItemResult,
  newItemResult,
  encodeJobStatus,
  decodeJobStatus,
  mergeScanCounters,
  emptyInFlightCounters,
  withInFlight,
  restoreConsumer,
  subjects,
  walkFailureId,
  jobCompleted,
  policyCandidatesSubject,
} from "@hsmfleet/protocol";
import type { ItemError, JobStatus } from "@hsmfleet/protocol";
import { markStartup } from "@hsmfleet/telemetry";
import type { Logger } from "@hsmfleet/telemetry";
import { FleetWatch } from "./fleet-watch.js";
import { InFlightItems } from "./in-flight.js";
import { observeJobProgress } from "./job-gauges.js";
import { jobErrors } from "./job-errors.js";
import { openResultsConsumer } from "./results-consumer.js";
import { conflictToNdjson, entryToNdjson, errorToNdjson } from "./format.js";
import type { LocalLog } from "./local-log.js";
import { LedgerStore } from "./ledger-store.js";

export interface FollowOptions {
  nc: NatsConnection;
  js: JetStreamClient;
  store: JobStore;
  /** The job record; updated in place and returned at the end. */
  status: JobStatus;
  list?: LocalLog | undefined;
  errorLog?: LocalLog | undefined;
  /** Import: receives every conflict (path, what was there, the resolution). */
  conflictLog?: LocalLog | undefined;
  /**
   * Errors that make a job that carried out all its work "completed with errors" rather than
   * "succeeded". Default: jobErrors (verify counts its differences in the error counters and
   * passes its own).
   */
  completionErrors?: ((status: JobStatus) => number) | undefined;
  /** Errors kept in the job record. Default 100. */
  errorSampleLimit?: number | undefined;
  /** Job record checkpoint period. Default 1000 ms. */
  checkpointIntervalMs?: number | undefined;
  /**
   * On a cancel, how long to wait at most for the items in flight to report what they finished
   * (workers stop them at once; a dead worker's never report). Default 15,000 ms.
   */
  cancelDrainMs?: number | undefined;
  signal?: AbortSignal | undefined;
  logger?: Logger | undefined;
  onProgress?: ((status: JobStatus, fleet: FleetWatch) => void) | undefined;
  /** Policy runs: each shard's candidates (`.candidates` messages, sealed like results). */
  onCandidates?: ((data: Uint8Array) => void) | undefined;
}

/** A results pull waits this long; heartbeats come at half of it; 15 s of silence re-opens it. */
const RESULTS_PULL_EXPIRES_MS = 10_000;

/** A coordinator not heard from for this long is presumed dead (its job may be taken over). */
export const COORDINATOR_STALE_MS = 15_000;

/** After a cancel notice, workers answer with the items they hold within this time. */
const CANCEL_NOTICE_MS = 1500;

/**
 * Follows a job's results stream to the end: folds item results into the job record, writes
 * entries and errors to local files, checkpoints the record (results sequence, counters and file
 * lengths describe the same point, so a resumed coordinator continues exactly), enforces
 * max-errors and cancellation, and ends when every published work item has reported.
 */
export const followJob = async (o: FollowOptions): Promise<JobStatus> => {
  const { status, store, js } = o;
  const jobId = status.spec.jobId;
  // Termination by the ids the job published: the roots in the record the planner made, or the
  // frontier saved at the record's results sequence (ledger-store.ts).
  const [ledgerStore, ledger] = await LedgerStore.open(o.nc, status);
  markStartup("follow-ledger");
  const sampleLimit = o.errorSampleLimit ?? 100;
  const fleet = new FleetWatch(o.nc);
  const inFlight = new InFlightItems(o.nc, jobId, status.spec.itemKey);
  const unobserve = observeJobProgress(status);
  status.coordinator = `${hostname()}:${process.pid}`;
  let finalState: JobState | undefined;
  let reason = "";
  // One that goes silent (its node died) is opened again (bus resilient-consumer.ts), after the
  // last result folded into the record.
  const messages = new ResilientConsumer({
    open: () =>
      openResultsConsumer(js, {
        jobId,
        filterSubject: subjects.resultsForJob(jobId),
        afterSeq: status.resultsSeq,
        signal: o.signal,
        logger: o.logger,
      }),
    consume: { expires: RESULTS_PULL_EXPIRES_MS },
    onLost: (why, reopens) =>
      o.logger?.warn(
        { jobId, resultsSeq: status.resultsSeq, reopens },
        `the results consumer stopped answering: ${why}; re-creating it`,
      ),
  });
  const stop = (state: JobState, why: string) => {
    if (finalState !== undefined) return;
    finalState = state;
    reason = why;
    messages.close();
  };

  const key = status.spec.itemKey;
  /** Results, and other messages on the job's results subjects, that are logged and dropped. */
  const drop = (m: { subject: string; seq: number }, why: string, err?: unknown) =>
    o.logger?.warn(
      {
        jobId,
        subject: m.subject,
        seq: m.seq,
        ...(err === undefined ? {} : { err: errorMessage(err) }),
      },
      `dropped a message on the results stream: ${why}`,
    );

  const recordErrors = async (errors: ItemError[]) => {
    for (const e of errors) {
      if (status.errorSamples.length < sampleLimit) status.errorSamples.push(e);
      await o.errorLog?.append(errorToNdjson(e));
    }
  };

  // Every write of the record goes through one queue. Between checkpoints, a timer re-writes the
  // last checkpoint with a fresh updatedAtMs so others can tell this coordinator is alive.
  let writes: Promise<void> = Promise.resolve();
  let snapshot: Uint8Array | undefined;
  const write = (bytes: Uint8Array) => {
    writes = writes
      .then(async () => {
        const s = decodeJobStatus(bytes);
        s.updatedAtMs = Date.now();
        await store.put(s);
        ledgerStore.recordWritten(s.resultsSeq);
      })
      .catch((err: unknown) => o.logger?.warn({ err }, "could not write the job record"));
    return writes;
  };
  // A cancel stops queued work at once, then waits (bounded) for the items in flight to report
  // what they finished, so the job's counters say what is really in place.
  let draining = false;
  const cancel = () => {
    if (finalState !== undefined || draining) return;
    draining = true;
    drain().catch((err: unknown) => {
      o.logger?.warn({ jobId, err }, "could not wait for the items in flight of a cancelled job");
      stop(JobState.Cancelled, "cancelled by request");
    });
  };
  const drain = async () => {
    status.state = JobState.Cancelling;
    if (snapshot) {
      const s = decodeJobStatus(snapshot);
      s.state = JobState.Cancelling;
      snapshot = encodeJobStatus(s);
      await write(snapshot);
    }
    const jsm = await js.jetstreamManager();
    await withJetStreamRetry(`drop the queued work of job ${jobId}`, () =>
      jsm.streams.purge(WORK_STREAM, { filter: subjects.workForJob(jobId) }),
    );
    o.nc.publish(subjects.jobCancel(jobId));
    const started = Date.now();
    const deadline = started + (o.cancelDrainMs ?? 15_000);
    while (
      finalState === undefined &&
      Date.now() < deadline &&
      (Date.now() - started < CANCEL_NOTICE_MS || inFlight.size > 0)
    ) {
      await new Promise((r) => setTimeout(r, 100));
    }
    if (finalState === undefined && inFlight.size > 0) {
      // Workers that died or did not answer: what they reported last is the best count there is.
      const left = inFlight.totals();
      o.logger?.warn(
        { jobId, items: left.items },
        "items in flight did not report after the cancel; counting what they reported last",
      );
      addCounters(status.export, left.export);
      addCounters(status.import, left.import);
      addCounters(status.restore, left.restore);
    }
    stop(JobState.Cancelled, "cancelled by request");
  };
  o.signal?.addEventListener("abort", cancel, { once: true });
  const watcher = await store.watch(jobId, (s) => {
    if (s.state === JobState.Cancelling || s.state === JobState.Cancelled) cancel();
  });
  const maxDeliveries = await watchMaxDeliveries(o.nc, js, jobId, key, o.logger);
  markStartup("follow-watchers");

  const checkpoint = async () => {
    status.inFlight = finalState === undefined ? inFlight.totals() : emptyInFlightCounters();
    await o.list?.flush();
    await o.errorLog?.flush();
    await o.conflictLog?.flush();
    status.conflictLogBytes = o.conflictLog?.bytes ?? 0;
    status.listBytes = o.list?.bytes ?? 0;
    status.errorLogBytes = o.errorLog?.bytes ?? 0;
    // The frontier goes to the ledger bucket first; the record then refers to it by resultsSeq.
    // No re-write of an older record meanwhile: the slot it refers to may be the one rewritten.
    status.outstanding = [];
    snapshot = undefined;
    await writes;
    try {
      await ledgerStore.save(ledger, status.resultsSeq);
    } catch (err) {
      if (err instanceof JobError) throw err;
      o.logger?.warn({ err }, "could not save the outstanding work items");
      // The record waits for the next checkpoint, except the last (the job has ended).
      if (finalState === undefined) return;
    }
    snapshot = encodeJobStatus(status);
    await write(snapshot);
  };
  const checkpointEveryMs = o.checkpointIntervalMs ?? 1000;
  let lastCheckpoint = Date.now();
  const timer = setInterval(() => {
    o.onProgress?.(withInFlight({ ...status, inFlight: inFlight.totals() }), fleet);
    if (snapshot && Date.now() - lastCheckpoint >= checkpointEveryMs) {
      // The last checkpoint, with the work of the items in flight as it is now.
      const s = decodeJobStatus(snapshot);
      s.inFlight = inFlight.totals();
      void write(encodeJobStatus(s));
    }
  }, progressEveryMs(checkpointEveryMs));
  await checkpoint();
  markStartup("follow-first-checkpoint");

  /** Folds one sealed message; throws when it does not decode. */
  const fold = async (m: { subject: string; seq: number; data: Uint8Array }) => {
    if (m.subject.endsWith(".item")) {
      const r = decodeItemResult(m.data);
      if (r.jobId !== jobId) return drop(m, `a result of job ${JSON.stringify(r.jobId)}`);
      const verdict = ledger.accept(r);
      if (!verdict.counted)
        return drop(m, `a result of ${r.kind} item ${JSON.stringify(r.itemId)}: ${verdict.why}`);
      mergeScanCounters(status.scan, r.scan);
      addCounters(status.export, r.export);
      addCounters(status.import, r.import);
      addCounters(status.restore, r.restore);
      status.published = ledger.published;
      status.completed = ledger.completed;
      // A spawn notice only announces children; every other result ends one item in flight.
      if (r.kind !== "spawn") inFlight.itemDone(r.itemId);
      await recordErrors(r.errors);
    } else if (m.subject.endsWith(".entries")) {
      if (o.list)
        for (const e of decodeTransferBatch(m.data).entries) await o.list.append(entryToNdjson(e));
    } else if (m.subject.endsWith(".candidates")) {
      o.onCandidates?.(m.data);
    } else if (m.subject.endsWith(".errors")) {
      await recordErrors(decodeErrorBatch(m.data).errors);
    } else if (m.subject.endsWith(".conflicts")) {
      for (const c of decodeErrorBatch(m.data).errors)
        await o.conflictLog?.append(conflictToNdjson(c));
    }
  };

  const foldResults = async () => {
    let first = true;
    for await (const m of messages) {
      if (first) markStartup("follow-first-result"); // once: a mark is kept until the process exits
      first = false;
      // Untrusted input (issue 14): only messages sealed with the job's key, that decode and name
      // this job, are folded; anything else is logged with its subject and sequence and dropped.
      if (!hasValidSeal(key, m)) {
        drop(m, "no valid seal of this job (forged, altered, or from another job)");
      } else {
        try {
          await fold(m);
        } catch (err) {
          if (err instanceof JobError) throw err;
          drop(m, "undecodable", err);
        }
      }
      status.resultsSeq = m.seq;
      if (Date.now() - lastCheckpoint >= checkpointEveryMs) {
        await checkpoint();
        lastCheckpoint = Date.now();
      }
      const errors = jobErrors(status);
      if (status.spec.maxErrors >= 0 && errors > status.spec.maxErrors) {
        stop(
          JobState.Failed,
          `${errors} error${errors === 1 ? "" : "s"}, more than --max-errors ${status.spec.maxErrors}`,
        );
      } else if (!draining && ledger.done) {
        // (Once cancelling, the items' results only count what they finished: the drain ends it.)
        stop(JobState.Succeeded, "");
        markStartup("follow-done");
      }
    }
  };
  // All work carried out: with errors (tolerated by --max-errors) it is not a success.
  const completedState = () =>
    (o.completionErrors ?? jobErrors)(status) > 0
      ? JobState.CompletedWithErrors
      : JobState.Succeeded;

  try {
    if (status.published > 0 && ledger.done) stop(JobState.Succeeded, "");
    await foldResults();
  } finally {
    clearInterval(timer);
    watcher.stop();
    maxDeliveries.stop();
    fleet.stop();
    inFlight.stop();
    unobserve();
    o.signal?.removeEventListener("abort", cancel);
  }

  if (finalState === undefined) {
    // The consumer ended without a verdict: the connection closed under us.
    await writes;
    throw new JobError(
      jobId,
      `lost the results stream of job ${jobId}; re-run the command (or --resume ${jobId}) to continue`,
    );
  }
  // These calls may meet a stream electing a new leader after a node was lost: retried (idempotent).
  const jsm = await withJetStreamRetry("reach the JetStream API", () => js.jetstreamManager());
  if (finalState === JobState.Succeeded) finalState = completedState();
  if (!jobCompleted(finalState)) {
    // Drop the queued work so the fleet does not go on with a job that has ended.
    await withJetStreamRetry(`drop the queued work of job ${jobId}`, () =>
      jsm.streams.purge(WORK_STREAM, { filter: subjects.workForJob(jobId) }),
    );
  }
  status.state = finalState;
  status.reason = reason;
  status.finishedAtMs = Date.now();
  markStartup("follow-ended");
  await checkpoint();
  await writes;
  markStartup("follow-last-checkpoint");
  await withJetStreamRetry(`delete the saved outstanding work items of job ${jobId}`, () =>
    ledgerStore.remove(jsm),
  );
  await o.list?.close();
  await o.errorLog?.close();
  await o.conflictLog?.close();
  markStartup("follow-ledger-removed");
  o.onProgress?.(status, fleet);
  // Entry batches were only a carrier for --list; the counters stay in the job record.
  await withJetStreamRetry(`drop the entry batches of job ${jobId}`, () =>
    jsm.streams.purge(RESULTS_STREAM, { filter: subjects.entries(jobId) }),
  );
  if (o.onCandidates)
    await withJetStreamRetry(`drop the policy candidates of job ${jobId}`, () =>
      jsm.streams.purge(RESULTS_STREAM, { filter: policyCandidatesSubject(jobId) }),
    );
  markStartup("follow-purged");
  return status;
};

/** The progress callback's period: as often as checkpoints, at most every second. */
const progressEveryMs = (checkpointEveryMs: number): number => Math.min(checkpointEveryMs, 1000);

/**
 * A worker killed during the last allowed delivery of an item leaves no result. JetStream then
 * sends a MAX_DELIVERIES advisory; we publish a failed result in the worker's place, under the same
 * message id, so it is dropped if the worker had in fact reported before dying.
 */
const watchMaxDeliveries = async (
  nc: NatsConnection,
  js: JetStreamClient,
  jobId: string,
  key: Uint8Array,
  logger: Logger | undefined,
) => {
  const jsm = await js.jetstreamManager();
  const onAdvisory =
    (kind: "walk" | "transfer" | "chunk") => (err: Error | null, msg: { json<T>(): T }) => {
      if (err) return;
      void (async () => {
        const advisory = msg.json<{ stream_seq: number; deliveries: number }>();
        const stored = await jsm.streams.getMessage(WORK_STREAM, { seq: advisory.stream_seq });
        if (!stored) return;
        let itemJob: string;
        let itemId: string;
        let path: Buffer;
        if (kind === "walk") {
          const shard = decodeWalkShard(stored.data);
          [itemJob, itemId, path] = [shard.jobId, shard.shardId, shard.paths[0] ?? Buffer.alloc(0)];
        } else if (kind === "chunk") {
          const chunk = decodeChunk(stored.data);
          [itemJob, itemId, path] = [chunk.jobId, chunk.chunkId, chunk.path];
        } else {
          const batch = decodeTransferBatch(stored.data);
          [itemJob, itemId, path] = [
            batch.jobId,
            batch.batchId,
            batch.entries[0]?.path ?? Buffer.alloc(0),
          ];
        }
        if (itemJob !== jobId) return;
        const scan = emptyScanCounters();
        scan.errors = 1;
        const subject = subjects.itemResult(jobId);
        const data = encodeItemResult(
          newItemResult({
            jobId,
            itemId,
            kind,
            scan,
            errors: [
              {
                path,
                operation: kind,
                code: "MAX_DELIVERIES",
                message: `no worker finished this ${kind === "walk" ? "directory" : kind} in ${advisory.deliveries} deliveries (workers crashed or timed out)`,
                retryable: false,
              },
            ],
            workerId: "coordinator",
            attempt: advisory.deliveries,
            failed: true,
          }),
        );
        await js.publish(subject, data, {
          // A walk shard fails under an id of its own (protocol walk-ids.ts).
          msgID: kind === "walk" ? walkFailureId(itemId) : `${itemId}.r`,
          headers: sealHeaders(key, subject, data),
        });
        await jsm.streams.deleteMessage(WORK_STREAM, advisory.stream_seq, false);
      })().catch((e: unknown) =>
        logger?.warn({ err: e }, "could not record an item that ran out of deliveries"),
      );
    };
  const subs = [
    nc.subscribe(`$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.${WORK_STREAM}.${CHUNK_CONSUMER}`, {
      callback: onAdvisory("chunk"),
    }),
    // A restore job's own consumer (harmless for other kinds: nothing is ever sent there).
    nc.subscribe(
      `$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.${WORK_STREAM}.${restoreConsumer(jobId)}`,
      { callback: onAdvisory("transfer") },
    ),
    nc.subscribe(`$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.${WORK_STREAM}.${WALK_CONSUMER}`, {
      callback: onAdvisory("walk"),
    }),
    nc.subscribe(`$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.${WORK_STREAM}.${TRANSFER_CONSUMER}`, {
      callback: onAdvisory("transfer"),
    }),
  ];
  return { stop: () => subs.forEach((s) => s.unsubscribe()) };
};
