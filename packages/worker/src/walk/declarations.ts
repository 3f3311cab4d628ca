import { hasValidSeal } from "@hsmfleet/bus";
import type { JetStreamClient, NatsConnection } from "@hsmfleet/bus";
import { managerFor } from "./manager-for.js";
import { errorMessage } from "@hsmfleet/core";
import {
  RESULTS_STREAM,
  WORK_STREAM,
  PARKED_PLACEHOLDER,
  decodeItemResult,
  decodeParkedChildren,
  encodeItemResult,
  encodeParkedChildren,
  newItemResult,
  parkedChildBytes,
  subjects,
  spawnNoticeId,
  walkResultId,
} from "@hsmfleet/protocol";
import type { ItemResult, ParkedChild, ParkedChildKind, WalkShard } from "@hsmfleet/protocol";

/** A child held by a walk shard until the declaration naming it is out (child-window.ts). */
export interface HeldChild {
  subject: string;
  data: Uint8Array;
  msgID: string;
}

/** What a redelivered shard found of its earlier attempts' declarations. */
export interface EarlierDeclarations {
  /** An earlier attempt's final result stands: its children were re-published, the shard is done. */
  done: boolean;
  /** Ids of every child an earlier attempt declared (this attempt must not declare them again). */
  declared: Set<string>;
  /** Declarations found (spawn notices and a final result). */
  declarations: number;
  /** Children re-published from their parked copies. */
  republished: number;
}

/** The server's max payload when it does not say (nats-server's default). */
const DEFAULT_MAX_PAYLOAD = 1024 * 1024;
/** Room left in a part for its headers (seal, message id, trace context). */
const PART_HEADROOM = 8 * 1024;

/**
 * Makes a walk shard's children as durable as the declaration that names them (a spawn notice
 * or the shard's final result, whose child ids the coordinator's ledger waits for): before a
 * declaration is published, the children it names are parked on the WORK stream (`park`
 * subject, no consumer), and they are deleted there once every child is published. A worker
 * killed in between leaves the shard unacknowledged; its redelivery first looks for the earlier
 * attempts' declarations — by publishing an empty spawn notice under each of their message ids:
 * JetStream answers "duplicate" with the stored message's sequence when one exists (and keeps the
 * empty notice, which declares nothing, when none does, so a late declaration of a dead-but-alive
 * attempt is refused as a duplicate in turn) — and publishes exactly the children they named,
 * from the parked copies. Every message read back is checked: the job's seal, the subject, the
 * item it belongs to.
 */
export class Declarations {
  readonly #js: JetStreamClient;
  readonly #nc: NatsConnection;
  readonly #shard: WalkShard;
  readonly #key: Uint8Array;
  readonly #workerId: string;
  readonly #attempt: number;

  constructor(
    js: JetStreamClient,
    nc: NatsConnection,
    shard: WalkShard,
    key: Uint8Array,
    workerId: string,
    attempt: number,
  ) {
    this.#js = js;
    this.#nc = nc;
    this.#shard = shard;
    this.#key = key;
    this.#workerId = workerId;
    this.#attempt = attempt;
  }

  /** Parks `children`, named by declaration `id`; returns the parts' stream sequences. */
  async park(id: string, children: readonly HeldChild[]): Promise<number[]> {
    if (children.length === 0) return [];
    const jobId = this.#shard.jobId;
    const limit = (this.#nc.info?.max_payload ?? DEFAULT_MAX_PAYLOAD) - PART_HEADROOM;
    const parts: ParkedChild[][] = [[]];
    let bytes = 0;
    for (const c of children) {
      const child: ParkedChild = { kind: kindOf(jobId, c.subject), id: c.msgID, data: c.data };
      const size = parkedChildBytes(child);
      if (bytes + size > limit && parts[parts.length - 1]!.length > 0) {
        parts.push([]);
        bytes = 0;
      }
      parts[parts.length - 1]!.push(child);
      bytes += size;
    }
    const seqs: number[] = [];
    for (const [part, list] of parts.entries()) {
      const ack = await this.#js.publish(
        subjects.park(jobId),
        encodeParkedChildren({ part, parts: parts.length, children: list }),
        { msgID: `${id}.p${part}` },
      );
      seqs.push(ack.seq);
    }
    return seqs;
  }

  /**
   * Publishes declaration `result` under message id `id`. False when another attempt's message
   * already holds that id (this attempt was given up on: it must publish none of its children);
   * true when the declaration is this attempt's (stored now, or by an earlier try of the same
   * publish whose answer was lost).
   */
  async declare(id: string, result: ItemResult): Promise<boolean> {
    const ack = await this.#js.publish(
      subjects.itemResult(this.#shard.jobId),
      encodeItemResult(result),
      { msgID: id },
    );
    if (!ack.duplicate) return true;
    const stored = await this.#storedResult(ack.seq, id);
    return (
      stored !== undefined &&
      stored.kind === result.kind &&
      stored.itemId === result.itemId &&
      stored.workerId === this.#workerId &&
      stored.attempt === this.#attempt
    );
  }

  /** Deletes parked parts once their children are published (best effort: the job's end purges them). */
  async unpark(seqs: readonly number[]): Promise<void> {
    if (seqs.length === 0) return;
    try {
      const jsm = await managerFor(this.#nc);
      for (const seq of seqs) await jsm.streams.deleteMessage(WORK_STREAM, seq, false);
    } catch {
      // Left for the end-of-job purge of the job's WORK subjects.
    }
  }

  /**
   * A redelivery (attempt > 1): for each earlier attempt, its spawn notices in order and then its
   * final result. A notice found is re-published child by child; a final result found is too,
   * and then the shard is done (that attempt's walk stands: it declared every entry it found).
   */
  async replayEarlier(publish: (c: HeldChild) => Promise<void>): Promise<EarlierDeclarations> {
    const declared = new Set<string>();
    const shardId = this.#shard.shardId;
    let declarations = 0;
    let republished = 0;
    const counted = async (c: HeldChild): Promise<void> => {
      republished++;
      await publish(c);
    };
    for (let attempt = 1; attempt < this.#attempt; attempt++) {
      for (let n = 0; ; n++) {
        const id = spawnNoticeId(shardId, attempt, n);
        const notice = await this.#probe(id);
        if (notice === undefined || notice.kind !== "spawn" || notice.children === 0) break;
        if (notice.parentId !== shardId || notice.itemId !== id)
          throw this.#refused(id, `it is not a spawn notice of shard ${shardId}`);
        for (const c of notice.childIds) declared.add(c);
        declarations++;
        await this.#replay(id, notice, counted);
      }
      const id = walkResultId(shardId, attempt);
      const final = await this.#probe(id);
      if (final === undefined || final.kind === "spawn") continue;
      if (final.itemId !== shardId) throw this.#refused(id, `it is not the result of ${shardId}`);
      for (const c of final.childIds) declared.add(c);
      await this.#replay(id, final, counted);
      return { done: true, declared, declarations: declarations + 1, republished };
    }
    return { done: false, declared, declarations, republished };
  }

  /**
   * Publishes an empty spawn notice (no children: the ledger counts nothing) under `id`; the
   * message stored under that id when there already was one.
   */
  async #probe(id: string): Promise<ItemResult | undefined> {
    const probe = newItemResult({
      jobId: this.#shard.jobId,
      itemId: id,
      kind: "spawn",
      parentId: this.#shard.shardId,
      workerId: this.#workerId,
      attempt: this.#attempt,
    });
    const ack = await this.#js.publish(
      subjects.itemResult(this.#shard.jobId),
      encodeItemResult(probe),
      { msgID: id },
    );
    return ack.duplicate ? this.#storedResult(ack.seq, id) : undefined;
  }

  /** Publishes the parked children of declaration `id` that `result` names. */
  async #replay(
    id: string,
    result: ItemResult,
    publish: (c: HeldChild) => Promise<void>,
  ): Promise<void> {
    const jobId = this.#shard.jobId;
    const wanted = new Set(result.childIds);
    for (let part = 0, parts = 1; part < parts && wanted.size > 0; part++) {
      const msgID = `${id}.p${part}`;
      const ack = await this.#js.publish(subjects.park(jobId), PARKED_PLACEHOLDER, { msgID });
      if (!ack.duplicate) {
        // None parked under that id any more: its children were all published before the parts
        // were deleted. The placeholder goes too.
        await this.unpark([ack.seq]);
        return;
      }
      const m = await this.#stored(WORK_STREAM, ack.seq);
      if (m === undefined) return; // deleted since: published, as above
      if (m.subject !== subjects.park(jobId) || !hasValidSeal(this.#key, m))
        throw this.#refused(msgID, "its seal or subject is wrong");
      if (m.data.length === 0) return; // another redelivery's placeholder: deleted, as above
      let parked;
      try {
        parked = decodeParkedChildren(m.data);
      } catch (err) {
        throw this.#refused(msgID, errorMessage(err));
      }
      if (parked.part !== part) throw this.#refused(msgID, `it holds part ${parked.part}`);
      parts = parked.parts;
      for (const c of parked.children) {
        if (!wanted.delete(c.id)) continue;
        await publish({ subject: subjectOf(jobId, c.kind), data: c.data, msgID: c.id });
      }
    }
  }

  async #storedResult(seq: number, id: string): Promise<ItemResult | undefined> {
    const m = await this.#stored(RESULTS_STREAM, seq);
    if (m === undefined) return undefined;
    const subject = subjects.itemResult(this.#shard.jobId);
    if (m.subject !== subject || !hasValidSeal(this.#key, m))
      throw this.#refused(id, "its seal or subject is wrong");
    let r: ItemResult;
    try {
      r = decodeItemResult(m.data);
    } catch (err) {
      throw this.#refused(id, errorMessage(err));
    }
    if (r.jobId !== this.#shard.jobId) throw this.#refused(id, `it names job ${r.jobId}`);
    return r;
  }

  async #stored(stream: string, seq: number): Promise<StoredMessage | undefined> {
    const jsm = await managerFor(this.#nc);
    try {
      const m = await jsm.streams.getMessage(stream, { seq });
      return m === null ? undefined : { subject: m.subject, data: m.data, headers: m.header };
    } catch (err) {
      if (isNoMessage(err)) return undefined;
      throw new Error(
        `walk shard ${this.#shard.shardId} of job ${this.#shard.jobId}: could not read message ${seq} of stream ${stream}: ${errorMessage(err)}`,
        { cause: err },
      );
    }
  }

  #refused(id: string, why: string): Error {
    return new Error(
      `walk shard ${this.#shard.shardId} of job ${this.#shard.jobId}: the stored message ${id} of an earlier attempt was refused: ${why}`,
    );
  }
}

type StoredMessage = Parameters<typeof hasValidSeal>[1];

const isNoMessage = (err: unknown): boolean =>
  err instanceof Error &&
  /no message found|10037/i.test(`${err.message} ${String((err as { code?: unknown }).code)}`);

/** The subject of each kind of child a walk shard holds (one table both ways). */
const CHILD_SUBJECTS: ReadonlyArray<[ParkedChildKind, (jobId: string) => string]> = [
  ["walk", subjects.walk],
  ["xfer", subjects.transfer],
  ["chunk", subjects.chunk],
  ["restore", subjects.restore],
];

const kindOf = (jobId: string, subject: string): ParkedChildKind => {
  const found = CHILD_SUBJECTS.find(([, subjectFor]) => subjectFor(jobId) === subject);
  if (found === undefined)
    throw new Error(`a walk shard of job ${jobId} cannot hold a child on ${subject}`);
  return found[0];
};

const subjectOf = (jobId: string, kind: ParkedChildKind): string =>
  CHILD_SUBJECTS.find(([k]) => k === kind)![1](jobId);
