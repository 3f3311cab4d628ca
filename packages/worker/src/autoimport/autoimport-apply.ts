/**
 * What a worker does with one autoimport batch: the changes of each blob name in the order the
 * batch gives (sequencer order), blob names in parallel. Before a blob's changes, the last
 * sequencer applied to it is read from KV; a change not newer is `stale` (nothing done). After
 * them, the newest applied sequencer is written, so a redelivered or late older event for the
 * name is stale. A change that throws fails, and so does every later change of the same blob in
 * the batch (their order must hold): the service abandons their messages and they come again.
 */
import { errorMessage, testSeam } from "@hsmfleet/core";
import { compareSequencers, emptyAutoImportCounters } from "@hsmfleet/protocol";
import type {
  AutoImportBatch,
  AutoImportChange,
  AutoImportCounters,
  AutoImportOutcome,
  BlobChange,
  ItemError,
} from "@hsmfleet/protocol";
import { forEachLimit } from "../runtime/transfer-batch.js";
import type { BlobChangeApplier } from "./apply-blob-change.js";

export interface BatchOutcome {
  counters: AutoImportCounters;
  outcomes: AutoImportOutcome[];
  failures: { index: number; message: string }[];
  /** Errors that are not retryable (counted in totalErrors), for the log. */
  errors: ItemError[];
}

export interface SequencerStore {
  lastSequencer(blob: string): Promise<string>;
  markSequencer(blob: string, sequencer: string): Promise<void>;
}

const asBlobChange = (c: AutoImportChange, container: string): BlobChange => ({
  eventId: "",
  schema: "eventgrid",
  container,
  kind: c.kind,
  blob: c.blob,
  sequencer: c.sequencer,
  eventTime: c.eventTime,
  ...(c.destination !== undefined ? { destination: c.destination } : {}),
  ...(c.recursive ? { recursive: true } : {}),
});

export const applyAutoImportBatch = async (
  batch: AutoImportBatch,
  container: string,
  applier: BlobChangeApplier,
  sequencers: SequencerStore,
  concurrency: number,
  signal: AbortSignal,
): Promise<BatchOutcome> => {
  const out: BatchOutcome = {
    counters: emptyAutoImportCounters(),
    outcomes: batch.changes.map(() => "failed"),
    failures: [],
    errors: [],
  };
  const byBlob = new Map<string, number[]>();
  batch.changes.forEach((c, i) => {
    const list = byBlob.get(c.blob) ?? [];
    list.push(i);
    byBlob.set(c.blob, list);
  });
  await forEachLimit([...byBlob], Math.max(1, concurrency), async ([blob, indexes]) => {
    let last = await sequencers.lastSequencer(blob);
    const before = last;
    let failed: string | undefined;
    for (const i of indexes) {
      if (signal.aborted) throw signal.reason;
      const c = batch.changes[i]!;
      if (failed !== undefined) {
        out.failures.push({
          index: i,
          message: `an earlier change of this blob failed: ${failed}`,
        });
        continue;
      }
      if (last !== "" && compareSequencers(c.sequencer, last) <= 0) {
        out.outcomes[i] = "stale";
        continue;
      }
      testSeam("autoimport-change-start", Buffer.from(c.blob));
      try {
        const applied = await applier.apply(asBlobChange(c, container));
        for (const k of Object.keys(applied.counters) as (keyof AutoImportCounters)[])
          out.counters[k] += applied.counters[k];
        out.errors.push(...applied.errors);
        out.outcomes[i] = "ok";
        last = c.sequencer;
      } catch (err) {
        failed = errorMessage(err);
        out.failures.push({ index: i, message: failed });
      }
    }
    if (last !== before) await sequencers.markSequencer(blob, last);
  });
  return out;
};
