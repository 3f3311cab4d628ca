/**
 * HSM requests through the fleet: each path becomes an action item (FID, root-relative path,
 * cookie), items are sharded by a hash of the FID onto partitions (hsmfleet.hsm.<n>) and grouped
 * into action lists of up to `listMaxItems`; workers carry the lists out and publish one result per
 * list; the requester sees every item's outcome (onItem) and a summary at the end.
 *
 * A CANCEL request is also broadcast on core NATS (hsmfleet.hsmcancel) before its items are
 * queued: a partition runs its lists one after another, so the broadcast is what reaches an
 * ARCHIVE already in flight; the queued CANCEL items then keep the order for later ones.
 */
import { hostname } from "node:os";

import {
  JobStore,
  ResilientConsumer,
  ensureHsmPartitions,
  ensureTopology,
  hasValidSeal,
  jetstream,
  sealHeaders,
  traceHeaders,
} from "@hsmfleet/bus";
import {
  UsageError,
  copytoolActionForUser,
  displayPath,
  errorMessage,
  partitionForFid,
  userActionForRequest,
} from "@hsmfleet/core";
import { jobRootFor, openHsmBackend } from "@hsmfleet/fs";
import type { HsmBackend } from "@hsmfleet/fs";
import {
  HsmItemStatus,
  JobKind,
  JobState,
  decodeHsmActionResult,
  decodeHsmProgress,
  encodeHsmActionList,
  encodeHsmCancel,
  newJobSpec,
  emptyHsmCounters,
  newJobStatus,
  subjects,
} from "@hsmfleet/protocol";
import type { HsmAction, HsmActionItem, HsmActionResult, HsmProgress } from "@hsmfleet/protocol";

import { newJobId } from "../job-id.js";
import { safeUser } from "../scan/scan-job.js";
import { openResultsConsumer } from "../results-consumer.js";
import { observeJobProgress } from "../job-gauges.js";
import { hsmJobSpan } from "../job-spans.js";
import type { HsmJobSummary } from "./hsm-summary.js";
import { relativeTo, resolveAbs, rootPrefix } from "./hsm-paths.js";
import { HSM_JOB_DEFAULTS } from "./hsm-job-options.js";
import type { HsmJobOptions } from "./hsm-job-options.js";

export { HSM_JOB_DEFAULTS } from "./hsm-job-options.js";
export type { HsmJobOptions } from "./hsm-job-options.js";

export { resolveAbs } from "./hsm-paths.js";

/** Paths whose FIDs are looked up together (one native batch of threadpool jobs on emulation). */
const FID_CHUNK = 1024;
/** Long actions whose progress is shown (and kept) at most. */
const IN_FLIGHT_SHOWN = 10_000;

/** Action lists published and not yet acknowledged by JetStream, at most. */
const PUBLISH_WINDOW = 32;
/** The job record is rewritten at most this often while results arrive. */
const RECORD_INTERVAL_MS = 1000;

/** Monotonic cookies: milliseconds since the epoch × 2^20 + a counter (unique per coordinator run). */
let cookieCounter = 0n;
const nextCookie = (): bigint => (BigInt(Date.now()) << 20n) + (cookieCounter++ & 0xfffffn);

/**
 * Runs an HSM job as one trace ("hsm job" → "hsm actions" → one "hsm <action>" span per action
 * list, on the worker that carried it out): its context is bound to the options object, which the
 * list publishes pass to traceHeaders.
 */
export const runHsmJob = (options: HsmJobOptions): Promise<HsmJobSummary> => {
  const o = { ...options, jobId: options.jobId ?? newJobId("hsm") };
  return hsmJobSpan(o, () => hsmJob(o));
};

const hsmJob = async (o: HsmJobOptions): Promise<HsmJobSummary> => {
  const started = Date.now();
  const partitions = o.partitions ?? HSM_JOB_DEFAULTS.partitions;
  const listMaxItems = o.listMaxItems ?? HSM_JOB_DEFAULTS.listMaxItems;
  const archiveId = o.archiveId ?? HSM_JOB_DEFAULTS.archiveId;
  if (!Number.isInteger(partitions) || partitions < 1 || partitions > 1024) {
    throw new UsageError(`--partitions must be an integer from 1 to 1024, not ${partitions}`);
  }
  if (
    o.backend === "hsm-emulation" &&
    o.request !== "release" &&
    o.request !== "cancel" &&
    !o.container
  ) {
    throw new UsageError(
      `hsm ${o.request} on the hsm-emulation backend needs a container (--container)`,
    );
  }
  if (o.container && !/^[a-z0-9](?!.*--)[a-z0-9-]{1,61}[a-z0-9]$/.test(o.container)) {
    throw new UsageError(
      `invalid container name ${JSON.stringify(o.container)}: 3-63 lowercase letters, digits and single hyphens`,
    );
  }
  const root = Buffer.from(o.root);
  const rootSlash = rootPrefix(root);
  const jobId = o.jobId ?? newJobId("hsm");
  const { jsm, jobs, topology } = await ensureTopology(o.nc, o.topology);
  await ensureHsmPartitions(jsm, partitions, topology);
  const store = new JobStore(jobs);
  const js = jetstream(o.nc);
  const status = newJobStatus(
    newJobSpec({
      jobId,
      kind: JobKind.Hsm,
      root,
      backend: o.backend,
      hsmXattr: o.hsmXattr ?? "trusted.hsm",
      container: o.container ?? "",
      prefix: o.prefix ?? "",
      createdBy: `${safeUser()}@${hostname()} hsm ${o.request}`,
    }),
    { coordinator: `${hostname()}:${process.pid}`, hsm: emptyHsmCounters(o.request) },
  );
  await store.create(status);
  // Every write of the record goes through one queue; a timer keeps updatedAtMs fresh so
  // `hsmfleet cancel` can tell this coordinator is alive.
  let writes: Promise<void> = Promise.resolve();
  const writeRecord = () => {
    status.updatedAtMs = Date.now();
    const copy = { ...status };
    writes = writes
      .then(() => store.put(copy))
      .catch((err: unknown) =>
        o.logger?.warn({ err: errorMessage(err) }, "could not write the HSM job record"),
      );
    return writes;
  };
  const keepAlive = setInterval(() => void writeRecord(), 1000);
  const backend: HsmBackend = openHsmBackend({
    backend: o.backend,
    xattr: o.hsmXattr,
    lfsPath: o.lfsPath,
  });
  const action = copytoolActionForUser(userActionForRequest(o.request)) as HsmAction;

  const summary: HsmJobSummary = {
    jobId,
    request: o.request,
    state: "succeeded",
    items: 0,
    done: 0,
    skipped: 0,
    failed: 0,
    cancelled: 0,
    bytes: 0,
    lists: 0,
    root: displayPath(root),
    elapsedSeconds: 0,
    errors: 0,
    errorSamples: [],
  };
  let dispatchDone = false;
  let listsDone = 0;
  let completed = 0;
  const seenLists = new Set<string>();
  const inFlight = new Map<string, HsmProgress>();
  // The record carries the job's counters while it runs (status, jobs, dashboard, metrics).
  const unobserve = observeJobProgress(status);
  let recordedAtMs = Date.now();
  const record = (force = false) => {
    status.hsm = {
      request: o.request,
      items: summary.items,
      lists: summary.lists,
      done: summary.done,
      skipped: summary.skipped,
      failed: summary.failed,
      cancelled: summary.cancelled,
      bytes: summary.bytes,
    };
    status.published = summary.lists;
    status.completed = listsDone;
    status.errorSamples = summary.errorSamples.slice(0, 20).map((e) => ({
      path: Buffer.from(e.path),
      operation: o.request,
      code: "HsmActionFailed",
      message: e.error,
      retryable: false,
    }));
    if (!force && Date.now() - recordedAtMs < RECORD_INTERVAL_MS) return;
    recordedAtMs = Date.now();
    void writeRecord();
  };
  const progress = () => {
    record();
    report();
  };
  const report = () =>
    o.onProgress?.({
      jobId,
      request: o.request,
      dispatched: summary.items,
      completed,
      failed: summary.failed,
      bytes: summary.bytes + [...inFlight.values()].reduce((sum, p) => sum + p.bytesDone, 0),
      inFlight: [...inFlight.values()],
      elapsedMs: Date.now() - started,
    });

  // Results from the start of the job's subject, so nothing published before the consumer exists
  // is missed. A consumer that goes silent (its node died) is re-created after the last result
  // read (bus resilient-consumer.ts); lists seen twice are skipped below anyway.
  let lastSeq = 0;
  const messages = new ResilientConsumer({
    open: () =>
      openResultsConsumer(js, {
        jobId,
        filterSubject: subjects.hsmResults(jobId),
        afterSeq: lastSeq,
        signal: o.signal,
        logger: o.logger,
      }),
    onLost: (why) =>
      o.logger?.warn({ jobId, lastSeq }, `the results consumer stopped answering: ${why}`),
  });
  const progressSub = o.nc.subscribe(subjects.hsmProgress(jobId), {
    callback: (err, m) => {
      if (err) return;
      // Core NATS, untrusted: a message that does not decode or names another job is ignored,
      // and the in-flight table never grows past IN_FLIGHT_SHOWN actions.
      let p: HsmProgress;
      try {
        p = decodeHsmProgress(m.data);
      } catch {
        return;
      }
      if (p.jobId !== jobId) return;
      if (p.bytesDone >= p.bytesTotal) inFlight.delete(p.fid);
      else if (inFlight.has(p.fid) || inFlight.size < IN_FLIGHT_SHOWN) inFlight.set(p.fid, p);
      progress();
    },
  });
  // A cancel stops the dispatch, tells the workers (they stop this job's actions and report every
  // list they get as cancelled) and waits, bounded, for the lists sent to report.
  let cancelled = false;
  const onAbort = () => {
    if (cancelled) return;
    cancelled = true;
    status.state = JobState.Cancelling;
    void writeRecord().then(() => o.nc.publish(subjects.jobCancel(jobId)));
    setTimeout(() => messages.close(), o.cancelDrainMs ?? 15_000).unref();
  };
  o.signal?.addEventListener("abort", onAbort, { once: true });
  const watcher = await store.watch(jobId, (s) => {
    if (s.state === JobState.Cancelling || s.state === JobState.Cancelled) onAbort();
  });
  let ended: () => void = () => undefined;
  /** Lists published so far (list ids end in their number: results of others are dropped). */
  let listSeq = 0;
  const allDone = new Promise<void>((resolve) => (ended = resolve));
  const checkDone = () => {
    if (dispatchDone && listsDone === summary.lists) {
      ended();
      messages.close();
    }
  };

  const follow = (async () => {
    for await (const m of messages) {
      lastSeq = m.seq;
      // Untrusted input: a result without the job's seal, undecodable, or for a list this job did
      // not publish is logged and dropped, never folded (issue 14).
      if (!hasValidSeal(status.spec.itemKey, m)) {
        o.logger?.warn(
          { jobId, subject: m.subject, seq: m.seq },
          "dropped an HSM result without a valid seal of this job",
        );
        continue;
      }
      let r: HsmActionResult;
      try {
        r = decodeHsmActionResult(m.data);
      } catch (err) {
        o.logger?.warn(
          { jobId, subject: m.subject, seq: m.seq, err: errorMessage(err) },
          "dropped an undecodable HSM result",
        );
        continue;
      }
      const listNumber = Number(/^\d+-(\d+)$/.exec(r.listId)?.[1] ?? NaN);
      if (r.jobId !== jobId || !(listNumber < listSeq)) {
        o.logger?.warn(
          { jobId, subject: m.subject, seq: m.seq, listId: r.listId },
          "dropped an HSM result for a list this job did not publish",
        );
        continue;
      }
      if (seenLists.has(r.listId)) continue;
      seenLists.add(r.listId);
      listsDone++;
      for (const item of r.items) {
        completed++;
        summary.bytes += item.bytes;
        inFlight.delete(item.fid);
        switch (item.status) {
          case HsmItemStatus.Done:
            summary.done++;
            break;
          case HsmItemStatus.Skipped:
            summary.skipped++;
            break;
          case HsmItemStatus.Cancelled:
            summary.cancelled++;
            break;
          default:
            summary.failed++;
            if (summary.errorSamples.length < 100) {
              summary.errorSamples.push({
                path: displayPath(resolveAbs(root, item.path)),
                error: item.error,
              });
            }
        }
        o.onItem?.(item);
      }
      progress();
      checkDone();
    }
  })();

  // Dispatch: FIDs are looked up in chunks (the next chunk's lookup runs while this one is
  // distributed); lists go out as soon as they are full, with up to PUBLISH_WINDOW publishes
  // awaiting their acknowledgement at once (sent in order on one connection, so a partition's
  // lists still arrive in order).
  const pending = new Map<number, HsmActionItem[]>();
  const publishing = new Set<Promise<void>>();
  let publishError: { err: unknown } | undefined;
  const publishList = async (partition: number, items: HsmActionItem[]) => {
    const listId = `${partition}-${listSeq++}`;
    summary.lists++;
    const subject = subjects.hsmPartition(partition);
    const data = encodeHsmActionList({
      jobId,
      listId,
      archiveId,
      fsname: "",
      flags: 0n,
      items,
      partition,
    });
    const sent: Promise<void> = js
      .publish(subject, data, {
        msgID: `${jobId}.${listId}`,
        // Sealed with the job's key: workers run only lists the job published.
        headers: sealHeaders(status.spec.itemKey, subject, data, traceHeaders(o)),
      })
      .then(
        () => undefined,
        (err: unknown) => {
          publishError ??= { err };
        },
      )
      .finally(() => publishing.delete(sent));
    publishing.add(sent);
    if (publishing.size >= PUBLISH_WINDOW) await Promise.race(publishing);
    if (publishError) throw publishError.err;
  };
  const published = async () => {
    await Promise.all(publishing);
    if (publishError) throw publishError.err;
  };
  const addItems = async (paths: Buffer[], lookup: Promise<(string | Error)[]>) => {
    const fids = await lookup;
    const cancelFids: string[] = [];
    const cookie = nextCookie();
    for (const [i, r] of fids.entries()) {
      const abs = paths[i]!;
      if (r instanceof Error) {
        summary.items++;
        summary.failed++;
        completed++;
        if (summary.errorSamples.length < 100)
          summary.errorSamples.push({ path: displayPath(abs), error: errorMessage(r) });
        continue;
      }
      const fid = r;
      const partition = partitionForFid(fid, partitions);
      const item: HsmActionItem = {
        action,
        fid,
        dfid: fid,
        extent: { offset: 0, length: 0 },
        cookie: o.request === "cancel" ? cookie : nextCookie(),
        gid: 0n,
        data: Buffer.alloc(0),
        path: relativeTo(root, abs, rootSlash),
      };
      if (o.request === "cancel") cancelFids.push(fid);
      summary.items++;
      const list = pending.get(partition) ?? [];
      list.push(item);
      pending.set(partition, list);
      if (list.length >= listMaxItems) {
        pending.delete(partition);
        await publishList(partition, list);
      }
    }
    if (cancelFids.length > 0) {
      // Sealed with the job's key: workers ignore a cancel no job of theirs sealed.
      const data = encodeHsmCancel({ fids: cancelFids, cookie, jobId });
      o.nc.publish(subjects.hsmCancel, data, {
        headers: sealHeaders(status.spec.itemKey, subjects.hsmCancel, data),
      });
    }
  };

  try {
    let chunk: Buffer[] = [];
    // The chunk whose FIDs are being looked up while the next one fills.
    let looking: { paths: Buffer[]; fids: Promise<(string | Error)[]> } | undefined;
    // FIDs of files opened beneath the job root's fd (no symlink followed): a path outside the
    // root, or through a symlinked directory, is an error item naming it, never looked up.
    const lookUpFids = async (paths: Buffer[]): Promise<(string | Error)[]> => {
      const out = new Array<string | Error>(paths.length);
      const rels: Buffer[] = [];
      const at: number[] = [];
      for (const [i, p] of paths.entries()) {
        try {
          const rel = relativeTo(root, p, rootSlash);
          if (rel.length === 0)
            throw new UsageError(`${displayPath(p)} is the job root, not a file`);
          rels.push(rel);
          at.push(i);
        } catch (err) {
          out[i] = err instanceof Error ? err : new Error(errorMessage(err));
        }
      }
      const fids = await backend.fids(await jobRootFor(root), rels);
      at.forEach((i, k) => (out[i] = fids[k]!));
      return out;
    };
    const lookUp = async (paths: Buffer[]) => {
      const fids = lookUpFids(paths);
      fids.catch(() => undefined); // awaited below; not unhandled meanwhile
      if (looking) await addItems(looking.paths, looking.fids);
      looking = { paths, fids };
    };
    for await (const p of o.paths) {
      if (cancelled) break;
      chunk.push(p);
      if (chunk.length >= FID_CHUNK) {
        await lookUp(chunk);
        chunk = [];
      }
    }
    if (chunk.length > 0 && !cancelled) await lookUp(chunk);
    if (looking && !cancelled) await addItems(looking.paths, looking.fids);
    for (const [partition, items] of pending) {
      // Not sent: cancelled here.
      if (cancelled) summary.cancelled += items.length;
      else await publishList(partition, items);
    }
    if (cancelled) completed += [...pending.values()].reduce((n, items) => n + items.length, 0);
    pending.clear();
    await published();
    dispatchDone = true;
    progress();
    checkDone();
    await Promise.race([allDone, follow]);
  } finally {
    o.signal?.removeEventListener("abort", onAbort);
    watcher.stop();
    clearInterval(keepAlive);
    progressSub.unsubscribe();
    unobserve();
    messages.close();
    await follow.catch(() => undefined);
  }
  summary.elapsedSeconds = (Date.now() - started) / 1000;
  summary.errors = summary.failed;
  summary.state = cancelled ? "cancelled" : summary.failed > 0 ? "failed" : "succeeded";
  status.state =
    summary.state === "cancelled"
      ? JobState.Cancelled
      : summary.state === "failed"
        ? JobState.Failed
        : JobState.Succeeded;
  status.finishedAtMs = Date.now();
  status.reason = `${summary.done} done, ${summary.skipped} skipped, ${summary.failed} failed, ${summary.cancelled} cancelled`;
  record(true);
  await writeRecord();
  return summary;
};
