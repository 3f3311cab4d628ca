/**
 * HSM action lists, the worker side: one pull loop per partition (hsm-<n>, max_ack_pending 1, so
 * a partition's lists run one after another and actions on one FID stay in order), items of a list
 * run in parallel except those on the same FID, and one HsmActionResult per list goes back.
 *
 * On the hsm-emulation backend the worker is the copytool: ARCHIVE uploads in the export blob
 * format, RESTORE downloads into the released file, REMOVE deletes the blob, RELEASE drops the
 * data. On the lustre backend it hands the items to `lfs hsm_*` in one batch per action (the
 * HSM coordinator and AMLFS's copytool move the data).
 *
 * CANCEL: a broadcast on hsmfleet.hsmcancel reaches every worker at once; an action in flight on
 * one of its FIDs, or queued with a lower cookie, is aborted and reported CANCELLED. An aborted
 * archive commits nothing (the staged blocks stay uncommitted) and the file stays not archived.
 */
import { setMaxListeners } from "node:events";
import { constants } from "node:fs";
import { lstat, open } from "node:fs/promises";

import type { BlobContainer } from "@hsmfleet/blob";
import type { MemoryBudget } from "@hsmfleet/blob/targets";
import {
  headerReader,
  jetstreamManager,
  listHsmPartitions,
  runWorkConsumer,
  withJetStreamRetry,
} from "@hsmfleet/bus";
import type { JetStreamClient, JsMsg, NatsConnection } from "@hsmfleet/bus";
import {
  EntryType,
  HsmFlag,
  HsmRefusedError,
  blobNameForPath,
  displayPath,
  errorMessage,
  metadataForEntry,
  normalizePrefix,
  resolveUnderRoot,
} from "@hsmfleet/core";
import type { FileEntry, HsmRequestName } from "@hsmfleet/core";
import { openHsmBackend } from "@hsmfleet/fs";
import type { HsmBackend, HsmBackendKind, HsmEmulationBackend } from "@hsmfleet/fs";
import {
  HSM_STREAM,
  HsmAction,
  HsmItemStatus,
  JobState,
  decodeHsmActionList,
  decodeHsmCancel,
  encodeHsmActionResult,
  encodeHsmProgress,
  hsmConsumerName,
  subjects,
} from "@hsmfleet/protocol";
import type { HsmActionItem, HsmActionList, HsmItemResult, JobStatus } from "@hsmfleet/protocol";
import { annotateSpan, startStep, startWorkItem } from "@hsmfleet/telemetry";
import type { Logger, TracedStep } from "@hsmfleet/telemetry";

export interface HsmActionContext {
  nc: NatsConnection;
  js: JetStreamClient;
  workerId: string;
  /** The job record (cached); undefined or not live = the list is dropped. */
  job: (jobId: string) => Promise<JobStatus | undefined>;
  isLive: (job: JobStatus | undefined) => job is JobStatus;
  container: (job: JobStatus) => Promise<BlobContainer>;
  budget: MemoryBudget;
  blockConcurrency: number;
  /** Items of one list carried out at once. Default 32. */
  itemConcurrency?: number | undefined;
  /** Stops pulling (shutdown step 1). */
  pullSignal: AbortSignal;
  /** Aborts in-flight work (shutdown after the grace period): lists are handed back, not failed. */
  abortSignal: AbortSignal;
  /** lfs binary for lustre jobs. Default "lfs". */
  lfsPath?: string | undefined;
  onBytes?: ((n: number) => void) | undefined;
  onItems?: ((done: number, failed: number) => void) | undefined;
  logger?: Logger | undefined;
}

const REQUEST_FOR_ACTION: Partial<Record<number, HsmRequestName>> = {
  [HsmAction.Archive]: "archive",
  [HsmAction.Release]: "release",
  [HsmAction.Restore]: "restore",
  [HsmAction.Remove]: "remove",
  [HsmAction.Cancel]: "cancel",
};

/** Cancellations remembered per FID (cookie below which actions are cancelled), bounded. */
const MAX_CANCELLED = 100_000;

class Cancelled extends Error {
  constructor() {
    super("cancelled");
    this.name = "Cancelled";
  }
}

export class HsmActionRunner {
  readonly #ctx: HsmActionContext;
  readonly #inFlight = new Map<string, { cookie: bigint; abort: AbortController; jobId: string }>();
  /** Jobs being cancelled (their remaining items are reported cancelled), the newest kept. */
  readonly #cancelledJobs = new Set<string>();
  /** Lists being handled, per job. */
  readonly #activeJobs = new Map<string, number>();
  readonly #cancelled = new Map<string, bigint>();
  readonly #backends = new Map<string, HsmBackend>();
  /** Containers this worker made sure exist (archive creates its container on first use). */
  readonly #ensured = new Map<string, Promise<void>>();

  constructor(ctx: HsmActionContext) {
    this.#ctx = ctx;
    // One listener per partition loop.
    setMaxListeners(0, ctx.pullSignal);
  }

  /** Pulls every partition that exists (re-checked every 10 s) until the pull signal aborts. */
  async run(): Promise<void> {
    const { nc, pullSignal } = this.#ctx;
    const sub = nc.subscribe(subjects.hsmCancel, {
      callback: (err, m) => {
        if (err) return;
        const c = decodeHsmCancel(m.data);
        this.cancel(c.fids, c.cookie);
      },
    });
    const jsm = await jetstreamManager(nc);
    const loops = new Map<number, Promise<void>>();
    try {
      while (!pullSignal.aborted) {
        // A cluster that lost a node may leave the listing unanswered for a while: retried, and a
        // listing that still fails is tried again at the next round, not fatal to the worker.
        const partitions = await withJetStreamRetry("list the HSM partitions", () =>
          listHsmPartitions(jsm),
        ).catch((err: unknown) => {
          this.#ctx.logger?.warn({ err: errorMessage(err) }, "could not list the HSM partitions");
          return [] as number[];
        });
        for (const p of partitions) {
          if (loops.has(p)) continue;
          loops.set(
            p,
            runWorkConsumer(nc, {
              stream: HSM_STREAM,
              consumer: hsmConsumerName(p),
              concurrency: 1,
              // The partition's max_ack_pending (1) bounds it: the next pull waits at the server.
              prefetch: 1,
              signal: pullSignal,
              handle: (msg) => this.handle(msg),
              onError: (err) =>
                // A worker stopping hands its list back unfinished: not a failure.
                this.#ctx.abortSignal.aborted
                  ? this.#ctx.logger?.info(
                      { partition: p },
                      "HSM action list handed back unfinished: this worker is stopping",
                    )
                  : this.#ctx.logger?.warn(
                      { err: errorMessage(err), partition: p },
                      "HSM action list handed back; it will be retried",
                    ),
              onLost: (why) => this.#ctx.logger?.warn({ partition: p }, why),
            }).catch((err: unknown) => {
              // Pulled again from the next round on.
              loops.delete(p);
              this.#ctx.logger?.warn(
                { err: errorMessage(err), partition: p },
                "stopped pulling an HSM partition; starting again",
              );
            }),
          );
        }
        await new Promise<void>((resolve) => {
          const t = setTimeout(resolve, 10_000);
          pullSignal.addEventListener(
            "abort",
            () => {
              clearTimeout(t);
              resolve();
            },
            { once: true },
          );
        });
      }
    } finally {
      await Promise.allSettled([...loops.values()]);
      sub.unsubscribe();
    }
  }

  /** Cancels actions on `fids` requested before `cookie`: in flight now, or arriving later. */
  cancel(fids: string[], cookie: bigint): void {
    for (const fid of fids) {
      this.#cancelled.set(fid, cookie);
      const running = this.#inFlight.get(fid);
      if (running && running.cookie < cookie) running.abort.abort(new Cancelled());
    }
    while (this.#cancelled.size > MAX_CANCELLED) {
      const first = this.#cancelled.keys().next().value;
      if (first === undefined) break;
      this.#cancelled.delete(first);
    }
  }

  /** Whether this worker runs a list of the job now. */
  hasJob(jobId: string): boolean {
    return this.#activeJobs.has(jobId);
  }

  /** The job is being cancelled: its actions in flight here stop, its other items are not started. */
  cancelJob(jobId: string): void {
    this.#cancelledJobs.add(jobId);
    if (this.#cancelledJobs.size > 1000) {
      const first = this.#cancelledJobs.values().next().value;
      if (first !== undefined) this.#cancelledJobs.delete(first);
    }
    for (const running of this.#inFlight.values())
      if (running.jobId === jobId) running.abort.abort(new Cancelled());
  }

  async handle(msg: JsMsg): Promise<void> {
    const list = decodeHsmActionList(msg.data);
    // One span per list ("hsm archive"), a child of the job's phase across NATS; items get spans
    // of their own only when they fail or move at least HSMFLEET_TRACE_FILE_MIN_BYTES.
    const action = listActionName(list);
    const traced = startWorkItem(headerReader(msg), {
      kind: "hsm",
      name: `hsm ${action}`,
      jobId: list.jobId,
      itemId: list.listId,
      workerId: this.#ctx.workerId,
      path: list.items[0]?.path ?? Buffer.alloc(0),
      attempt: msg.info.deliveryCount,
      key: msg,
    });
    const job = await this.#ctx.job(list.jobId);
    const state = job?.state;
    if (!this.#ctx.isLive(job)) {
      // A cancelled job's lists are reported (every item cancelled), so its coordinator can tell
      // when all of them are accounted for; lists of ended or unknown jobs are dropped.
      if (state === JobState.Cancelling || state === JobState.Cancelled) {
        await this.#publishResults(
          msg,
          list,
          list.items.map((i) => result(i, HsmItemStatus.Cancelled, "job cancelled")),
        );
      } else {
        msg.term();
      }
      traced.end("skipped");
      return;
    }
    this.#activeJobs.set(list.jobId, (this.#activeJobs.get(list.jobId) ?? 0) + 1);
    try {
      await traced.run(() => this.#handleList(msg, list, job, action));
      traced.end("ok");
    } catch (err) {
      traced.end("retry", err);
      throw err;
    } finally {
      const n = (this.#activeJobs.get(list.jobId) ?? 1) - 1;
      if (n > 0) this.#activeJobs.set(list.jobId, n);
      else this.#activeJobs.delete(list.jobId);
    }
  }

  async #handleList(
    msg: JsMsg,
    list: HsmActionList,
    job: JobStatus,
    action: string,
  ): Promise<void> {
    const results = this.#cancelledJobs.has(list.jobId)
      ? list.items.map((i) => result(i, HsmItemStatus.Cancelled, "job cancelled"))
      : job.spec.backend === "lustre"
        ? await this.#runLustre(job, list, msg)
        : await this.#runEmulation(job, list, msg);
    annotateSpan(msg, listSpanAttributes(list, action, results));
    // Shut down mid-list: hand it back (nak), so another worker does it all again, idempotently.
    if (this.#ctx.abortSignal.aborted) throw new Error("worker shutting down");
    await this.#publishResults(msg, list, results);
  }

  /** One result per list (its id is the message id, so a redelivered list's is dropped); then ack. */
  async #publishResults(msg: JsMsg, list: HsmActionList, results: HsmItemResult[]): Promise<void> {
    await this.#ctx.js.publish(
      subjects.hsmResults(list.jobId),
      encodeHsmActionResult({
        jobId: list.jobId,
        listId: list.listId,
        workerId: this.#ctx.workerId,
        attempt: msg.info.deliveryCount,
        items: results,
      }),
      { msgID: `${list.jobId}.${list.listId}` },
    );
    msg.ack();
    const failed = results.filter((r) => r.status === HsmItemStatus.Failed).length;
    this.#ctx.onItems?.(results.length - failed, failed);
  }

  #backend(kind: HsmBackendKind, xattr: string): HsmBackend {
    const key = `${kind}\0${xattr}`;
    let b = this.#backends.get(key);
    if (!b) {
      b = openHsmBackend({ backend: kind, xattr, lfsPath: this.#ctx.lfsPath });
      this.#backends.set(key, b);
    }
    return b;
  }

  /** Lustre: one `lfs hsm_<action>` batch per action kind in the list; a refused batch goes per file. */
  async #runLustre(job: JobStatus, list: HsmActionList, msg: JsMsg): Promise<HsmItemResult[]> {
    const backend = this.#backend("lustre", job.spec.hsmXattr);
    const byAction = new Map<number, HsmActionItem[]>();
    for (const item of list.items) {
      const group = byAction.get(item.action) ?? [];
      group.push(item);
      byAction.set(item.action, group);
    }
    const results: HsmItemResult[] = [];
    for (const [action, items] of byAction) {
      const request = REQUEST_FOR_ACTION[action];
      const paths = items.map((i) => resolveUnderRoot(job.spec.root, i.path));
      if (!request) {
        for (const i of items)
          results.push(result(i, HsmItemStatus.Failed, `unknown action ${action}`));
        continue;
      }
      try {
        await backend.requestMany(request, paths, { archiveId: list.archiveId });
        for (const i of items) results.push(result(i, HsmItemStatus.Done));
      } catch {
        for (const [k, i] of items.entries()) {
          try {
            await backend.requestMany(request, [paths[k]!], { archiveId: list.archiveId });
            results.push(result(i, HsmItemStatus.Done));
          } catch (err) {
            results.push(result(i, HsmItemStatus.Failed, errorMessage(err)));
          }
        }
      }
    }
    // The copytool moves the data: only failures are traced (or every item with a threshold of 0).
    for (const r of results) endItemStep(startItemStep(msg, list.jobId, r), r);
    return results;
  }

  async #runEmulation(job: JobStatus, list: HsmActionList, msg: JsMsg): Promise<HsmItemResult[]> {
    const backend = this.#backend("hsm-emulation", job.spec.hsmXattr) as HsmEmulationBackend;
    const results: HsmItemResult[] = new Array<HsmItemResult>(list.items.length);
    // Items on one FID run in list order; different FIDs in parallel.
    const chains = new Map<string, number[]>();
    list.items.forEach((item, i) => {
      const chain = chains.get(item.fid) ?? [];
      chain.push(i);
      chains.set(item.fid, chain);
    });
    // A lone RELEASE on its FID (the common case: a bulk release) goes with the list's other such
    // items into one native batch (HsmEmulationBackend.releaseMany); the rest run item by item.
    const batch: number[] = [];
    for (const [fid, chain] of chains) {
      if (chain.length !== 1) continue;
      const item = list.items[chain[0]!]!;
      if (item.action !== HsmAction.Release) continue;
      chains.delete(fid);
      const cancelledBelow = this.#cancelled.get(item.fid);
      if (cancelledBelow !== undefined && item.cookie < cancelledBelow) {
        results[chain[0]!] = result(item, HsmItemStatus.Cancelled, "cancelled before it started");
      } else {
        batch.push(chain[0]!);
      }
    }
    const released =
      batch.length === 0
        ? Promise.resolve()
        : backend
            .releaseMany(batch.map((i) => resolveUnderRoot(job.spec.root, list.items[i]!.path)))
            .then((outcomes) =>
              outcomes.forEach((r, k) => {
                const item = list.items[batch[k]!]!;
                results[batch[k]!] =
                  r instanceof Error
                    ? result(item, HsmItemStatus.Failed, errorMessage(r))
                    : result(item, r ? HsmItemStatus.Done : HsmItemStatus.Skipped);
              }),
            )
            .catch((err: unknown) => {
              for (const i of batch) {
                results[i] = result(list.items[i]!, HsmItemStatus.Failed, errorMessage(err));
              }
            });
    const queue = [...chains.values()];
    const worker = async () => {
      for (let chain = queue.shift(); chain !== undefined; chain = queue.shift()) {
        for (const i of chain) {
          const item = list.items[i]!;
          const step = startItemStep(msg, list.jobId, item);
          results[i] = await this.#runItem(job, list, item, backend);
          endItemStep(step, results[i]);
        }
      }
    };
    const n = Math.min(queue.length, this.#ctx.itemConcurrency ?? 32);
    await Promise.all([released, ...Array.from({ length: n }, worker)]);
    // Batched releases are counted in the list's span; a failed one gets a span of its own.
    for (const i of batch) endItemStep(startItemStep(msg, list.jobId, list.items[i]!), results[i]!);
    return results;
  }

  async #runItem(
    job: JobStatus,
    list: HsmActionList,
    item: HsmActionItem,
    backend: HsmEmulationBackend,
  ): Promise<HsmItemResult> {
    if (item.action === HsmAction.Cancel) {
      this.cancel([item.fid], item.cookie);
      return result(item, HsmItemStatus.Done);
    }
    const cancelledBelow = this.#cancelled.get(item.fid);
    if (cancelledBelow !== undefined && item.cookie < cancelledBelow) {
      return result(item, HsmItemStatus.Cancelled, "cancelled before it started");
    }
    if (this.#cancelledJobs.has(list.jobId))
      return result(item, HsmItemStatus.Cancelled, "job cancelled");
    const abort = new AbortController();
    const onWorkerAbort = () => abort.abort(this.#ctx.abortSignal.reason);
    this.#ctx.abortSignal.addEventListener("abort", onWorkerAbort, { once: true });
    this.#inFlight.set(item.fid, { cookie: item.cookie, abort, jobId: list.jobId });
    try {
      const abs = resolveUnderRoot(job.spec.root, item.path);
      switch (item.action) {
        case HsmAction.Release: {
          const released = await backend.release(abs);
          return result(item, released ? HsmItemStatus.Done : HsmItemStatus.Skipped);
        }
        case HsmAction.Archive:
          try {
            return await this.#archive(job, list, item, backend, abs, abort.signal);
          } catch (err) {
            // A list redelivered while its first holder was still at it (ack deadline missed on a
            // starved event loop): the other copy's xattr write or completion looks like a change
            // here. If the file is archived and clean now, the item is done.
            if (abort.signal.aborted) throw err;
            const now = (await backend.state(abs))?.flags ?? 0;
            if ((now & HsmFlag.Archived) !== 0 && (now & HsmFlag.Dirty) === 0) {
              return result(item, HsmItemStatus.Skipped, "archived meanwhile by another worker");
            }
            throw err;
          }
        case HsmAction.Restore:
          return await this.#restore(job, list, item, backend, abs, abort.signal);
        case HsmAction.Remove: {
          const flags = (await backend.state(abs))?.flags ?? 0;
          // A released file's only data is the archive copy: refused, with the reason.
          if ((flags & HsmFlag.Released) !== 0) await backend.remove(abs);
          const container = await this.#ctx.container(job);
          const deleted = await container.deleteBlob(this.#blobName(job, item));
          const archived = (flags & (HsmFlag.Archived | HsmFlag.Lost | HsmFlag.Dirty)) !== 0;
          if (archived) await backend.remove(abs);
          return result(item, deleted || archived ? HsmItemStatus.Done : HsmItemStatus.Skipped);
        }
        default:
          return result(item, HsmItemStatus.Failed, `unknown action ${String(item.action)}`);
      }
    } catch (err) {
      if (abort.signal.reason instanceof Cancelled) {
        return result(item, HsmItemStatus.Cancelled, "cancelled while in flight");
      }
      return result(item, HsmItemStatus.Failed, errorMessage(err));
    } finally {
      this.#ctx.abortSignal.removeEventListener("abort", onWorkerAbort);
      if (this.#inFlight.get(item.fid)?.abort === abort) this.#inFlight.delete(item.fid);
    }
  }

  #blobName(job: JobStatus, item: HsmActionItem): string {
    return blobNameForPath(item.path, normalizePrefix(job.spec.prefix));
  }

  #progress(list: HsmActionList, item: HsmActionItem, total: number): (n: number) => void {
    let done = 0;
    let last = 0;
    return (n) => {
      done += n;
      this.#ctx.onBytes?.(n);
      const now = Date.now();
      if (now - last < 1000 && done < total) return;
      last = now;
      this.#ctx.nc.publish(
        subjects.hsmProgress(list.jobId),
        encodeHsmProgress({
          jobId: list.jobId,
          listId: list.listId,
          fid: item.fid,
          action: item.action,
          bytesDone: done,
          bytesTotal: total,
          workerId: this.#ctx.workerId,
        }),
      );
    };
  }

  async #archive(
    job: JobStatus,
    list: HsmActionList,
    item: HsmActionItem,
    backend: HsmEmulationBackend,
    abs: Buffer,
    signal: AbortSignal,
  ): Promise<HsmItemResult> {
    const before = await backend.state(abs);
    const flags = before?.flags ?? 0;
    // Already archived and clean (a redelivered list, or asked twice): nothing to copy.
    if ((flags & HsmFlag.Archived) !== 0 && (flags & HsmFlag.Dirty) === 0) {
      return result(item, HsmItemStatus.Skipped, "already archived");
    }
    const snapshot = await backend.beginArchive(abs);
    const st = await lstat(abs, { bigint: true });
    const entry: FileEntry = {
      path: item.path,
      type: EntryType.File,
      size: snapshot.size,
      mtimeSec: Number(st.mtimeNs / 1_000_000_000n),
      mtimeNsec: Number(st.mtimeNs % 1_000_000_000n),
      mode: Number(st.mode),
      uid: Number(st.uid),
      gid: Number(st.gid),
      ino: st.ino,
      nlink: Number(st.nlink),
    };
    const container = await this.#ctx.container(job);
    let ensured = this.#ensured.get(container.name);
    if (!ensured) {
      ensured = container.ensureExists();
      ensured.catch(() => this.#ensured.delete(container.name));
      this.#ensured.set(container.name, ensured);
    }
    await ensured;
    const { uploadFile } = await import("@hsmfleet/blob");
    const done = await uploadFile(container, abs, this.#blobName(job, item), {
      metadata: metadataForEntry(entry),
      blockSizeBytes: job.spec.blockSize || undefined,
      concurrency: this.#ctx.blockConcurrency,
      budget: this.#ctx.budget,
      abortSignal: signal,
      onProgress: this.#progress(list, item, snapshot.size),
      expected: { size: entry.size, mtimeSec: entry.mtimeSec, mtimeNsec: entry.mtimeNsec },
    });
    signal.throwIfAborted();
    await backend.completeArchive(abs, list.archiveId, snapshot);
    return { ...result(item, HsmItemStatus.Done), bytes: done.bytes };
  }

  async #restore(
    job: JobStatus,
    list: HsmActionList,
    item: HsmActionItem,
    backend: HsmEmulationBackend,
    abs: Buffer,
    signal: AbortSignal,
  ): Promise<HsmItemResult> {
    if (!(await backend.beginRestore(abs)))
      return result(item, HsmItemStatus.Skipped, "not released");
    const container = await this.#ctx.container(job);
    const { downloadBlobToFile } = await import("@hsmfleet/blob");
    const before = await lstat(abs, { bigint: true });
    const fh = await open(abs, constants.O_RDWR | constants.O_NOFOLLOW);
    let bytes: number;
    try {
      const done = await downloadBlobToFile(container, this.#blobName(job, item), fh, abs, {
        budget: this.#ctx.budget,
        concurrency: this.#ctx.blockConcurrency,
        abortSignal: signal,
        onProgress: this.#progress(list, item, Number(before.size)),
      });
      bytes = done.bytes;
      if (BigInt(bytes) !== before.size) {
        throw new HsmRefusedError(
          "restore",
          displayPath(abs),
          "size mismatch",
          `restore of ${displayPath(abs)} failed: the archive copy has ${bytes} bytes, the file ${before.size}`,
        );
      }
      // The released file kept its mtime; writing the data back must not look like a user write.
      await fh.utimes(
        new Date(Number(before.atimeNs / 1_000_000n)),
        Number(before.mtimeNs / 1000n) / 1e6,
      );
    } finally {
      await fh.close();
    }
    signal.throwIfAborted();
    await backend.completeRestore(abs);
    return { ...result(item, HsmItemStatus.Done), bytes };
  }
}

const result = (item: HsmActionItem, status: HsmItemStatus, error = ""): HsmItemResult => ({
  fid: item.fid,
  cookie: item.cookie,
  action: item.action,
  path: item.path,
  status,
  error,
  bytes: 0,
});

const OUTCOME_OF_STATUS: Partial<Record<number, string>> = {
  [HsmItemStatus.Done]: "ok",
  [HsmItemStatus.Skipped]: "skipped",
  [HsmItemStatus.Cancelled]: "cancelled",
  [HsmItemStatus.Failed]: "error",
};

/** The action a list carries ("archive", …; "mixed" for a list of several, as a copytool's can be). */
const listActionName = (list: HsmActionList): string => {
  const first = list.items[0]?.action;
  if (first === undefined) return "empty";
  if (list.items.some((i) => i.action !== first)) return "mixed";
  return REQUEST_FOR_ACTION[first] ?? `action-${first}`;
};

/** The list's span attributes: items by outcome and bytes moved. */
const listSpanAttributes = (
  list: HsmActionList,
  action: string,
  results: HsmItemResult[],
): Record<string, string | number> => {
  const counts = { done: 0, skipped: 0, cancelled: 0, failed: 0 };
  let bytes = 0;
  for (const r of results) {
    bytes += r.bytes;
    if (r.status === HsmItemStatus.Done) counts.done++;
    else if (r.status === HsmItemStatus.Skipped) counts.skipped++;
    else if (r.status === HsmItemStatus.Cancelled) counts.cancelled++;
    else counts.failed++;
  }
  return {
    "hsmfleet.hsm.action": action,
    "hsmfleet.hsm.list_id": list.listId,
    "hsmfleet.hsm.partition": list.partition,
    "hsmfleet.files": results.length,
    "hsmfleet.hsm.done": counts.done,
    "hsmfleet.hsm.skipped": counts.skipped,
    "hsmfleet.hsm.cancelled": counts.cancelled,
    "hsmfleet.hsm.failed": counts.failed,
    "hsmfleet.errors": counts.failed,
    "hsmfleet.bytes": bytes,
  };
};

/** One action on one file ("archive file"), a child of its list's span (see startStep's rule). */
const startItemStep = (
  msg: JsMsg,
  jobId: string,
  item: Pick<HsmActionItem, "action" | "fid" | "path">,
): TracedStep =>
  startStep(msg, `${REQUEST_FOR_ACTION[item.action] ?? "hsm"} file`, {
    jobId,
    path: item.path,
    attributes: { "hsmfleet.hsm.fid": item.fid },
  });

const endItemStep = (step: TracedStep, r: HsmItemResult): void =>
  step.end(OUTCOME_OF_STATUS[r.status] ?? "error", {
    bytes: r.bytes,
    ...(r.status === HsmItemStatus.Failed ? { err: new Error(r.error) } : {}),
  });
