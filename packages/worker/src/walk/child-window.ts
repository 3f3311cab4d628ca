import type { JetStreamClient, JsMsg } from "@hsmfleet/bus";
import { encodeItemResult, newItemResult, subjects } from "@hsmfleet/protocol";
import type { WalkShard } from "@hsmfleet/protocol";
import { Publisher } from "../runtime/publisher.js";
import type { WorkBacklog } from "./work-backlog.js";

/** Children held before being announced: at most this many, or this many bytes. */
const WINDOW_ITEMS = 256;
const WINDOW_BYTES = 4 * 1024 * 1024;

/**
 * The termination rule (a phase ends when completed == published) only holds if the coordinator
 * learns about a child before it can learn about the child's own result. Results arrive in stream
 * order, so children are held here and published only after they were counted in the results
 * stream: by a "spawn" notice when the window fills up mid-directory (a huge directory), or by the
 * shard's own final result (every ordinary directory: no extra message). All ids are deterministic,
 * so a redelivered shard re-announces and re-publishes nothing new.
 */
export class ChildWindow {
  readonly #js: JetStreamClient;
  readonly #shard: WalkShard;
  readonly #workerId: string;
  readonly #publisher: Publisher;
  readonly #backlog: WorkBacklog | undefined;
  #held: Array<{ subject: string; data: Uint8Array; msgID: string }> = [];
  #bytes = 0;
  #notices = 0;

  constructor(
    js: JetStreamClient,
    shard: WalkShard,
    workerId: string,
    msg: JsMsg,
    backlog: WorkBacklog | undefined,
  ) {
    this.#js = js;
    this.#shard = shard;
    this.#workerId = workerId;
    this.#publisher = new Publisher(js, msg);
    this.#backlog = backlog;
  }

  get held(): number {
    return this.#held.length;
  }

  /** Ids of the children held (the coordinator tracks ids: result-ledger.ts). */
  get heldIds(): string[] {
    return this.#held.map((c) => c.msgID);
  }

  async add(subject: string, data: Uint8Array, msgID: string): Promise<void> {
    this.#held.push({ subject, data, msgID });
    this.#bytes += data.length;
    if (this.#held.length < WINDOW_ITEMS && this.#bytes < WINDOW_BYTES) return;
    const id = `${this.#shard.shardId}.s${this.#notices++}`;
    await this.#js.publish(
      subjects.itemResult(this.#shard.jobId),
      encodeItemResult(
        newItemResult({
          jobId: this.#shard.jobId,
          itemId: id,
          kind: "spawn",
          children: this.#held.length,
          childIds: this.heldIds,
          parentId: this.#shard.shardId,
          workerId: this.#workerId,
        }),
      ),
      { msgID: id },
    );
    await this.publishHeld();
  }

  /** Publishes what is held; call only once it was announced. */
  async publishHeld(): Promise<void> {
    const transfer = subjects.transfer(this.#shard.jobId);
    for (const c of this.#held) {
      // Backpressure: a transfer batch waits while the job's queue is full (work-backlog.ts).
      if (this.#backlog !== undefined && this.#backlog.limit > 0 && c.subject === transfer) {
        await this.#publisher.flush(); // what this walk published is counted by the read
        await this.#backlog.admit(this.#shard.jobId);
      }
      await this.#publisher.publish(c.subject, c.data, c.msgID);
    }
    await this.#publisher.flush();
    this.#held = [];
    this.#bytes = 0;
  }
}
