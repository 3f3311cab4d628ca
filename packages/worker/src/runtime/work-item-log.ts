/**
 * Warn-level log lines for work items that go round again: a delivery after the first (with the
 * reason as far as this worker knows it) and an item handed back after a retryable failure. Each
 * names the item by id and path, a chunk also by its place in the file, and the attempt.
 */
import { displayPath, errorMessage } from "@hsmfleet/core";
import type { JsMsg, Redelivery } from "@hsmfleet/bus";
import { decodeChunk, decodeTransferBatch, decodeWalkShard } from "@hsmfleet/protocol";
import type { Logger } from "@hsmfleet/telemetry";
import { chunkLabel } from "./chunk-result.js";

export type WorkItemKind = "walk" | "transfer" | "chunk";

interface ItemFields {
  kind: WorkItemKind;
  jobId?: string;
  item?: string;
  path?: string;
  chunk?: string;
}

/** What a log line says about the item in `msg` (decoded again: the handler's copy is its own). */
export const itemFields = (kind: WorkItemKind, msg: JsMsg): ItemFields => {
  try {
    if (kind === "chunk") {
      const c = decodeChunk(msg.data);
      return {
        kind,
        jobId: c.jobId,
        item: c.chunkId,
        path: displayPath(c.path),
        chunk: chunkLabel(c),
      };
    }
    if (kind === "walk") {
      const s = decodeWalkShard(msg.data);
      const first = s.paths[0];
      return {
        kind,
        jobId: s.jobId,
        item: s.shardId,
        ...(first ? { path: displayPath(first) } : {}),
      };
    }
    const b = decodeTransferBatch(msg.data);
    const first = b.entries[0]?.path;
    return {
      kind,
      jobId: b.jobId,
      item: b.batchId,
      ...(first ? { path: displayPath(first) } : {}),
    };
  } catch {
    return { kind }; // not decodable: the handler reports that
  }
};

const seconds = (ms: number) => `${Math.round(ms / 100) / 10} s`;

/** Why a delivery after the first happened, as this worker can tell. */
export const redeliveryReason = (msg: JsMsg, redelivery: Redelivery, ackWaitMs: number): string => {
  const previous = msg.info.deliveryCount - 1;
  if (redelivery.held)
    return `this worker still runs attempt ${previous} of it: its ack wait (${seconds(ackWaitMs)}) expired while the worker was stalled; the copy is not started`;
  if (redelivery.previousError !== undefined)
    return `attempt ${previous} failed on this worker with a retryable error: ${errorMessage(redelivery.previousError)}`;
  return `attempt ${previous} was not acknowledged within the ack wait (${seconds(ackWaitMs)}) or was handed back by another worker: it died, was stopped, or failed with a retryable error (see its log)`;
};

export const logRedelivery = (
  logger: Logger | undefined,
  kind: WorkItemKind,
  msg: JsMsg,
  redelivery: Redelivery,
  limits: { ackWaitMs: number; maxDeliver: number },
): void =>
  logger?.warn(
    {
      ...itemFields(kind, msg),
      attempt: msg.info.deliveryCount,
      maxDeliver: limits.maxDeliver,
      reason: redeliveryReason(msg, redelivery, limits.ackWaitMs),
    },
    `${kind} item delivered again (attempt ${msg.info.deliveryCount} of ${limits.maxDeliver})`,
  );

export const logHandedBack = (
  logger: Logger | undefined,
  kind: WorkItemKind,
  err: unknown,
  msg: JsMsg | undefined,
  limits: { maxDeliver: number },
  /** The worker is stopping: the item was not failed, only handed back unfinished (info). */
  stopping = false,
): void =>
  msg === undefined
    ? logger?.warn({ kind, err: errorMessage(err) }, `pulling ${kind} items failed; trying again`)
    : stopping
      ? logger?.info(
          { ...itemFields(kind, msg), attempt: msg.info.deliveryCount },
          `${kind} item handed back unfinished: this worker is stopping`,
        )
      : logger?.warn(
          {
            ...itemFields(kind, msg),
            attempt: msg.info.deliveryCount,
            maxDeliver: limits.maxDeliver,
            err: errorMessage(err),
          },
          `${kind} item failed; handed back for another attempt`,
        );
