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

import {
  headerReader,
  jetstreamManager,
  listHsmPartitions,
  hasValidSeal,
  isTerminalMessageError,
  runWorkConsumer,
  withJetStreamRetry,
} from "@hsmfleet/bus";
import type { JsMsg } from "@hsmfleet/bus";
import { HsmFlag, errorMessage } from "@hsmfleet/core";
import { jobRootFor, namedForOperation, openHsmBackend } from "@hsmfleet/fs";
import type { HsmBackend, HsmBackendKind, HsmEmulationBackend, JobRoot } from "@hsmfleet/fs";
import {
  HSM_STREAM,
  HsmAction,
  HsmItemStatus,
  JobState,
  decodeHsmActionList,
  decodeHsmCancel,
  encodeHsmActionResult,
  hsmConsumerName,
  subjects,
} from "@hsmfleet/protocol";
import type {
  HsmActionItem,
  HsmActionList,
  HsmCancel,
  HsmItemResult,
  JobStatus,
} from "@hsmfleet/protocol";
import { annotateSpan, startWorkItem } from "@hsmfleet/telemetry";
import type { HsmActionContext } from "./hsm-context.js";
import { HsmCopy } from "./hsm-copy.js";
import { runLustreList } from "./hsm-lustre-list.js";
import {
  REQUEST_FOR_ACTION,
  endItemStep,
  listActionName,
  listSpanAttributes,
  result,
  startItemStep,
} from "./hsm-results.js";
import {
  HSM_ACTION_LIST_RULES,
  UnsolicitedWorkItemError,
  checkHsmActionList,
  decodeWorkItem,
} from "../item-checks.js";

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
  /** The data moves of the emulation's copytool (archive, restore). */
  readonly #copy: HsmCopy;

  constructor(ctx: HsmActionContext) {
    this.#ctx = ctx;
    this.#copy = new HsmCopy(ctx);
    // One listener per partition loop.
    setMaxListeners(0, ctx.pullSignal);
  }

  /** Pulls every partition that exists (re-checked every 10 s) until the pull signal aborts. */
  async run(): Promise<void> {
    const { nc, pullSignal } = this.#ctx;
    const sub = nc.subscribe(subjects.hsmCancel, {
      callback: (err, m) => {
        if (err) return;
        // Core NATS, untrusted: a message that does not decode is ignored (a throw here would
        // end the subscription), and so is one without the seal of the job it names.
        let c: HsmCancel;
        try {
          c = decodeHsmCancel(m.data);
        } catch {
          return;
        }
        this.#sealedCancel(c, m).catch((err: unknown) =>
          this.#ctx.logger?.warn({ err: errorMessage(err) }, "HSM cancel not checked; ignored"),
        );
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
              onError: (err, msg) =>
                isTerminalMessageError(err)
                  ? this.#ctx.logger?.warn(
                      { err: errorMessage(err), partition: p, seq: msg?.info.streamSequence },
                      `${err.name}: HSM action list terminated`,
                    )
                  : // A worker stopping hands its list back unfinished: not a failure.
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

  /**
   * A cancel broadcast counts only with the seal of the job it names (a cancel request's job: its
   * key is in the job record, which only the fleet reads); anything else is logged and ignored,
   * so that a forged cancel cancels nothing (docs/security.md).
   */
  async #sealedCancel(c: HsmCancel, m: Parameters<typeof hasValidSeal>[1]): Promise<void> {
    const job = c.jobId === "" ? undefined : await this.#ctx.job(c.jobId);
    if (job === undefined || !hasValidSeal(job.spec.itemKey, m)) {
      this.#ctx.logger?.warn(
        { jobId: c.jobId || undefined, fids: c.fids.length },
        "HSM cancel without a valid seal of the job it names ignored (forged, or from an unknown job)",
      );
      return;
    }
    this.cancel(c.fids, c.cookie);
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
    // Untrusted input (item-checks.ts): a list that does not decode, lacks its job's seal or names
    // an unsafe path is terminated by runWorkConsumer (a TerminalMessageError), never retried.
    const list = decodeWorkItem(
      msg.subject,
      msg.data,
      HSM_ACTION_LIST_RULES.what,
      decodeHsmActionList,
    );
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
    const cancelling = state === JobState.Cancelling || state === JobState.Cancelled;
    if (job === undefined || (!this.#ctx.isLive(job) && !cancelling)) {
      // Lists of ended or unknown jobs are dropped.
      msg.term();
      traced.end("skipped");
      return;
    }
    try {
      if (!hasValidSeal(job.spec.itemKey, msg))
        throw new UnsolicitedWorkItemError(
          msg.subject,
          `no valid seal of job ${list.jobId} (forged, altered, or from another job)`,
        );
      checkHsmActionList(msg.subject, list);
    } catch (err) {
      traced.end("skipped", err);
      throw err;
    }
    if (!this.#ctx.isLive(job)) {
      // A cancelled job's lists are reported (every item cancelled), so its coordinator can tell
      // when all of them are accounted for.
      await this.#publishResults(
        msg,
        list,
        list.items.map((i) => result(i, HsmItemStatus.Cancelled, "job cancelled")),
      );
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

  /** Lustre: one `lfs hsm_<action>` batch per action kind in the list (hsm-lustre-list.ts). */
  async #runLustre(job: JobStatus, list: HsmActionList, msg: JsMsg): Promise<HsmItemResult[]> {
    return runLustreList(this.#backend("lustre", job.spec.hsmXattr), job, list, msg);
  }

  async #runEmulation(job: JobStatus, list: HsmActionList, msg: JsMsg): Promise<HsmItemResult[]> {
    const backend = this.#backend("hsm-emulation", job.spec.hsmXattr) as HsmEmulationBackend;
    // Every file is reached beneath the job root's fd, no symlink followed (issue 14's class).
    const root = await jobRootFor(job.spec.root);
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
            .releaseMany(
              root,
              batch.map((i) => list.items[i]!.path),
            )
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
          results[i] = await this.#runItem(job, list, item, backend, root);
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
    root: JobRoot,
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
      const rel = item.path;
      switch (item.action) {
        case HsmAction.Release: {
          const released = await backend.release(root, rel);
          return result(item, released ? HsmItemStatus.Done : HsmItemStatus.Skipped);
        }
        case HsmAction.Archive:
          try {
            return await this.#copy.archive(job, list, item, backend, root, abort.signal);
          } catch (err) {
            // A list redelivered while its first holder was still at it (ack deadline missed on a
            // starved event loop): the other copy's xattr write or completion looks like a change
            // here. If the file is archived and clean now, the item is done.
            if (abort.signal.aborted) throw err;
            const now = (await backend.state(root, rel))?.flags ?? 0;
            if ((now & HsmFlag.Archived) !== 0 && (now & HsmFlag.Dirty) === 0) {
              return result(item, HsmItemStatus.Skipped, "archived meanwhile by another worker");
            }
            throw err;
          }
        case HsmAction.Restore:
          return await this.#copy.restore(job, list, item, backend, root, abort.signal);
        case HsmAction.Remove: {
          const flags = (await backend.state(root, rel))?.flags ?? 0;
          // A released file's only data is the archive copy: refused, with the reason.
          if ((flags & HsmFlag.Released) !== 0) await backend.remove(root, rel);
          const copy = await this.#copy.archiveCopy(job, item);
          const container = await this.#ctx.container(job, copy.container);
          const deleted = await container.deleteBlob(copy.blobName);
          const archived = (flags & (HsmFlag.Archived | HsmFlag.Lost | HsmFlag.Dirty)) !== 0;
          if (archived) await backend.remove(root, rel);
          return result(item, deleted || archived ? HsmItemStatus.Done : HsmItemStatus.Skipped);
        }
        default:
          return result(item, HsmItemStatus.Failed, `unknown action ${String(item.action)}`);
      }
    } catch (err) {
      if (abort.signal.reason instanceof Cancelled) {
        return result(item, HsmItemStatus.Cancelled, "cancelled while in flight");
      }
      // A refused path names the action asked for, not the state read that met the symlink.
      const named = namedForOperation(
        REQUEST_FOR_ACTION[item.action] ?? "hsm",
        root,
        item.path,
        err,
      );
      return result(item, HsmItemStatus.Failed, errorMessage(named));
    } finally {
      this.#ctx.abortSignal.removeEventListener("abort", onWorkerAbort);
      if (this.#inFlight.get(item.fid)?.abort === abort) this.#inFlight.delete(item.fid);
    }
  }
}
