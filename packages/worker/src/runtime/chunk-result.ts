/**
 * What the export and import chunk handlers share at their end: the chunk's label in messages and
 * logs, and its result published (deterministic id, so a redelivered chunk's repeat is dropped)
 * before the item is acknowledged. Keep-alive is not theirs: runWorkConsumer (bus) keeps every
 * held item alive from the moment it arrives.
 */
import { encodeItemResult, newItemResult, subjects } from "@hsmfleet/protocol";
import type { Chunk, ExportCounters, ImportCounters, ItemError } from "@hsmfleet/protocol";
import type { JsMsg } from "@hsmfleet/bus";
import type { TransferContext } from "./transfer-batch.js";

/** `chunk 3 of 64 (bytes 67108864–100663295)`: the chunk's place in its file, for people. */
export const chunkLabel = (chunk: Chunk): string =>
  `chunk ${chunk.index + 1} of ${chunk.count} (bytes ${chunk.offset}–${chunk.offset + chunk.length - 1})`;

/** Publishes the chunk item's result, then acknowledges the item. */
export const publishChunkResult = async (
  ctx: TransferContext,
  msg: JsMsg,
  chunk: Chunk,
  result: { errors: ItemError[] } & (
    { export: ExportCounters; import?: undefined } | { import: ImportCounters; export?: undefined }
  ),
): Promise<void> => {
  await ctx.js.publish(
    subjects.itemResult(chunk.jobId),
    encodeItemResult(
      newItemResult({
        jobId: chunk.jobId,
        itemId: chunk.chunkId,
        kind: "chunk",
        errors: result.errors,
        workerId: ctx.options.workerId,
        attempt: msg.info.deliveryCount,
        ...(result.export ? { export: result.export } : { import: result.import }),
      }),
    ),
    { msgID: `${chunk.chunkId}.r` },
  );
  msg.ack();
};
