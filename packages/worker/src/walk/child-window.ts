import type { JetStreamClient, JsMsg } from "@hsmfleet/bus";
import { newItemResult, spawnNoticeId, subjects } from "@hsmfleet/protocol";
import type { ItemResult, WalkShard } from "@hsmfleet/protocol";
import { Publisher } from "../runtime/publisher.js";
import type { Declarations, HeldChild } from "./declarations.js";
import type { WorkBacklog } from "./work-backlog.js";

/** Children held before being announced: at most this many, or this many bytes. */
const WINDOW_ITEMS = 256;
const WINDOW_BYTES = 4 * 1024 * 1024;

export interface ChildWindowOptions {
  workerId: string;
  /** Delivery attempt of the shard (1 = first). */
  attempt: number;
  /** The shard's declarations (parked children; declarations.ts). */
  declarations: Declarations;
  backlog?: WorkBacklog | undefined;
  /** Test hook: before the `index`-th held child is published (WorkerHooks.beforeHeldChild). */
  beforeHeldChild?: ((shard: WalkShard, index: number) => Promise<void> | void) | undefined;
}

/**
 * The termination rule (a phase ends when completed == published) only holds if the coordinator
 * learns about a child before it can learn about the child's own result. Results arrive in stream
 * order, so children are held here and published only after they were counted in the results
 * stream: by a "spawn" notice when the window fills up mid-directory (a huge directory), or by the
 * shard's own final result (every ordinary directory: no extra message). The children a
 * declaration names are parked first (declarations.ts), so a worker killed between the
 * declaration and its children leaves them for the shard's redelivery to publish.
 */
export class ChildWindow {
  readonly #shard: WalkShard;
  readonly #o: ChildWindowOptions;
  readonly #publisher: Publisher;
  /** Ids an earlier attempt declared (re-published from there): not declared again. */
  readonly #skip = new Set<string>();
  #held: HeldChild[] = [];
  #bytes = 0;
  #notices = 0;

  constructor(js: JetStreamClient, shard: WalkShard, msg: JsMsg, o: ChildWindowOptions) {
    this.#shard = shard;
    this.#o = o;
    this.#publisher = new Publisher(js, msg);
  }

  get held(): number {
    return this.#held.length;
  }

  /** Ids of the children held (the coordinator tracks ids: result-ledger.ts). */
  get heldIds(): string[] {
    return this.#held.map((c) => c.msgID);
  }

  /** Children with these ids are not held again (an earlier attempt declared them). */
  skip(ids: Iterable<string>): void {
    for (const id of ids) this.#skip.add(id);
  }

  /** Publishes one child at once (re-published children of an earlier attempt). */
  async publishNow(c: HeldChild): Promise<void> {
    await this.#publisher.publish(c.subject, c.data, c.msgID);
  }

  async flush(): Promise<void> {
    await this.#publisher.flush();
  }

  async add(subject: string, data: Uint8Array, msgID: string): Promise<void> {
    if (this.#skip.has(msgID)) return;
    this.#held.push({ subject, data, msgID });
    this.#bytes += data.length;
    if (this.#held.length < WINDOW_ITEMS && this.#bytes < WINDOW_BYTES) return;
    const id = spawnNoticeId(this.#shard.shardId, this.#o.attempt, this.#notices++);
    await this.announce(
      id,
      newItemResult({
        jobId: this.#shard.jobId,
        itemId: id,
        kind: "spawn",
        children: this.#held.length,
        childIds: this.heldIds,
        parentId: this.#shard.shardId,
        workerId: this.#o.workerId,
        attempt: this.#o.attempt,
      }),
    );
  }

  /**
   * Parks the children held, publishes `declaration` (which names them) under message id `id`,
   * then the children, then deletes the parked copies. A declaration another attempt already
   * made under that id (this attempt was given up on) publishes none of them.
   */
  async announce(id: string, declaration: ItemResult): Promise<void> {
    const d = this.#o.declarations;
    const parked = await d.park(id, this.#held);
    if (await d.declare(id, declaration)) await this.#publishHeld();
    this.#held = [];
    this.#bytes = 0;
    await d.unpark(parked);
  }

  /** Publishes what is held; call only once it was announced. */
  async #publishHeld(): Promise<void> {
    const transfer = subjects.transfer(this.#shard.jobId);
    const backlog = this.#o.backlog;
    for (const [i, c] of this.#held.entries()) {
      if (this.#o.beforeHeldChild) {
        await this.#publisher.flush();
        await this.#o.beforeHeldChild(this.#shard, i);
      }
      // Backpressure: a transfer batch waits while the job's queue is full (work-backlog.ts).
      if (backlog !== undefined && backlog.limit > 0 && c.subject === transfer) {
        await this.#publisher.flush(); // what this walk published is counted by the read
        await backlog.admit(this.#shard.jobId);
      }
      await this.#publisher.publish(c.subject, c.data, c.msgID);
    }
    await this.#publisher.flush();
  }
}
