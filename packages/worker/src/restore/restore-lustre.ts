/**
 * Restore on Lustre: the copytool moves the data; hsmfleet only asks and waits. The released files
 * of one restore item are requested with one `lfs hsm_restore --filelist` (the backend batches),
 * then their states are polled (1 s, growing to 10 s) until RELEASED clears, LOST appears, or the
 * wait runs out. The item stays in flight meanwhile, so the job's consumer bound (--max-inflight)
 * is the number of restores outstanding at the MDS across every client — AMLFS's documented
 * batch restore, spread over many clients.
 */
import { HsmFlag, displayPath, resolveUnderRoot } from "@hsmfleet/core";
import { jobRootFor, openHsmBackend } from "@hsmfleet/fs";
import type { JsMsg } from "@hsmfleet/bus";
import { emptyRestoreCounters } from "@hsmfleet/protocol";
import type { ItemError, JobStatus, TransferBatch } from "@hsmfleet/protocol";
import { recordRestoredBy, restoredBy } from "../runtime/archive-location.js";
import { itemErrorOf } from "../runtime/publisher.js";
import { finishBatch } from "../runtime/transfer-batch.js";
import type { TransferContext } from "../runtime/transfer-batch.js";

/** How long one item waits for the copytool before its files are reported. Default 6 h. */
export const LUSTRE_RESTORE_WAIT_MS = 6 * 3_600_000;

export const handleLustreRestore = async (
  ctx: TransferContext,
  msg: JsMsg,
  batch: TransferBatch,
  job: JobStatus,
  signal: AbortSignal,
  waitMs = LUSTRE_RESTORE_WAIT_MS,
): Promise<void> => {
  const counters = emptyRestoreCounters();
  ctx.track?.({ restore: counters });
  const errors: ItemError[] = [];
  const backend = openHsmBackend({
    backend: "lustre",
    xattr: job.spec.hsmXattr || undefined,
    lfsPath: ctx.options.lfsPath,
  });
  const root = await jobRootFor(job.spec.root);
  // Still released? (A redelivered item finds some restored already.)
  const waiting = new Map<string, { rel: Buffer; abs: Buffer; size: number }>();
  for (const entry of batch.entries) {
    const abs = resolveUnderRoot(job.spec.root, entry.path);
    try {
      const state = await backend.state(root, entry.path);
      if (((state?.flags ?? 0) & HsmFlag.Released) !== 0)
        waiting.set(abs.toString("latin1"), { rel: entry.path, abs, size: entry.size });
      else if (
        msg.info.deliveryCount > 1 &&
        (await restoredBy(root, entry.path, backend.xattr, batch.jobId))
      ) {
        // Requested by this item's earlier attempt, whose worker died: still this item's to count.
        counters.filesRestored++;
        counters.bytesRestored += entry.size;
      }
    } catch (err) {
      counters.errors++;
      errors.push(itemErrorOf(entry.path, err, "hsm_state"));
    }
  }
  if (waiting.size > 0) {
    // Recorded before the request, so that a redelivery after this worker dies still counts the
    // files the copytool restores for it. Best effort: without the record only the count suffers.
    await Promise.all(
      [...waiting.values()].map((w) =>
        recordRestoredBy(root, w.rel, backend.xattr, batch.jobId).catch(() => undefined),
      ),
    );
    try {
      await backend.requestRestore(
        root,
        [...waiting.values()].map((w) => w.rel),
      );
    } catch (err) {
      for (const w of waiting.values()) {
        counters.errors++;
        errors.push(itemErrorOf(w.rel, err, "hsm_restore"));
      }
      waiting.clear();
    }
  }
  const deadline = Date.now() + waitMs;
  let pause = 1000;
  while (waiting.size > 0 && Date.now() < deadline) {
    if (signal.aborted) throw signal.reason;
    await new Promise((r) => setTimeout(r, pause));
    pause = Math.min(10_000, pause * 2);
    for (const [key, w] of waiting) {
      let flags: number;
      try {
        flags = (await backend.state(root, w.rel))?.flags ?? 0;
      } catch (err) {
        counters.errors++;
        errors.push(itemErrorOf(w.rel, err, "hsm_state"));
        waiting.delete(key);
        continue;
      }
      if ((flags & HsmFlag.Lost) !== 0) {
        counters.errors++;
        errors.push({
          path: w.rel,
          operation: "hsm_restore",
          code: "HS_LOST",
          message: `${displayPath(w.abs)}: the archive copy is lost (HS_LOST); it cannot be restored`,
          retryable: false,
        });
        waiting.delete(key);
      } else if ((flags & HsmFlag.Released) === 0) {
        counters.filesRestored++;
        // The copytool moved these bytes, not this worker: counted for the job, not the worker.
        counters.bytesRestored += w.size;
        waiting.delete(key);
      }
    }
  }
  for (const w of waiting.values()) {
    counters.errors++;
    errors.push({
      path: w.rel,
      operation: "hsm_restore",
      code: "ETIMEDOUT",
      message: `${displayPath(w.abs)} still released after ${Math.round(waitMs / 1000)} s; is the copytool running (lfs hsm_action shows the request)?`,
      retryable: true,
    });
  }
  await finishBatch(ctx, msg, batch, errors, { restore: counters });
};
