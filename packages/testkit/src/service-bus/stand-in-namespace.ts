// The entities of the Service Bus STAND-IN: queues and topics with subscriptions, addressed as
// the SDK addresses them (`queue`, `queue/$DeadLetterQueue`, `topic/Subscriptions/sub`, …;
// names are case-insensitive as in Service Bus), and duplicate detection by message id.
import { randomBytes } from "node:crypto";
import type { Message } from "rhea";
import { StandInEntity } from "./stand-in-entity.js";
import type { StandInEntityOptions } from "./stand-in-entity.js";

/** Options of a queue or topic (Service Bus defaults). */
export interface StandInSendEntityOptions {
  /** Drop a message whose id was seen within the window (`requiresDuplicateDetection`); default false. */
  requiresDuplicateDetection?: boolean;
  /** Duplicate detection window; Service Bus's default is 10 minutes. */
  duplicateDetectionWindowMs?: number;
}

export type StandInQueueOptions = StandInEntityOptions & StandInSendEntityOptions;

const DEFAULT_DUPLICATE_WINDOW_MS = 10 * 60_000;

/** Message ids seen within the duplicate detection window. */
class DuplicateDetector {
  private readonly seen = new Map<string, number>();
  constructor(
    private readonly enabled: boolean,
    private readonly windowMs: number,
  ) {}

  /** True if the message is a duplicate (and must be dropped). */
  isDuplicate(message: Message, nowMs: number): boolean {
    if (!this.enabled || message.message_id === undefined || message.message_id === null)
      return false;
    const id = String(message.message_id);
    for (const [key, at] of this.seen) {
      if (at + this.windowMs > nowMs) break;
      this.seen.delete(key);
    }
    const at = this.seen.get(id);
    if (at !== undefined && at + this.windowMs > nowMs) return true;
    this.seen.delete(id);
    this.seen.set(id, nowMs);
    return false;
  }
}

interface StandInTopic {
  name: string;
  duplicates: DuplicateDetector;
  subscriptions: Map<string, StandInEntity>;
}

interface StandInQueue {
  entity: StandInEntity;
  duplicates: DuplicateDetector;
}

/** Counters the fidelity tests and benches read. */
export interface StandInCounters {
  received: number;
  duplicatesDropped: number;
}

export class StandInNamespace {
  private readonly queues = new Map<string, StandInQueue>();
  private readonly topics = new Map<string, StandInTopic>();
  readonly counters: StandInCounters = { received: 0, duplicatesDropped: 0 };

  createQueue(name: string, options: StandInQueueOptions = {}): StandInEntity {
    const entity = new StandInEntity(name, options);
    this.queues.set(name.toLowerCase(), { entity, duplicates: detector(options) });
    return entity;
  }

  createTopic(name: string, options: StandInSendEntityOptions = {}): void {
    this.topics.set(name.toLowerCase(), {
      name,
      duplicates: detector(options),
      subscriptions: new Map(),
    });
  }

  createSubscription(
    topic: string,
    name: string,
    options: StandInEntityOptions = {},
  ): StandInEntity {
    const t = this.topics.get(topic.toLowerCase());
    if (!t) throw new Error(`Service Bus stand-in: create subscription ${name}: no topic ${topic}`);
    const entity = new StandInEntity(`${t.name}/Subscriptions/${name}`, options);
    t.subscriptions.set(name.toLowerCase(), entity);
    return entity;
  }

  /** Every store (queues, subscriptions, their dead-letter queues). */
  *entities(): Iterable<StandInEntity> {
    const withDeadLetter = function* (e: StandInEntity): Iterable<StandInEntity> {
      yield e;
      if (e.deadLetter) yield e.deadLetter;
    };
    for (const q of this.queues.values()) yield* withDeadLetter(q.entity);
    for (const t of this.topics.values())
      for (const s of t.subscriptions.values()) yield* withDeadLetter(s);
  }

  /** True if the address names a queue or topic (a send target). */
  isSendTarget(address: string): boolean {
    const key = address.toLowerCase();
    return this.queues.has(key) || this.topics.has(key);
  }

  /**
   * Enqueues a message sent to a queue or topic (a topic copies it to every subscription).
   * Returns false when the address names no queue or topic.
   */
  send(address: string, message: Message, nowMs = Date.now()): boolean {
    const key = address.toLowerCase();
    const queue = this.queues.get(key);
    const topic = this.topics.get(key);
    if (!queue && !topic) return false;
    this.counters.received += 1;
    // Service Bus gives a message without an id one of its own (the SDK relies on it).
    if (message.message_id === undefined || message.message_id === null)
      message.message_id = randomBytes(16).toString("hex");
    if ((queue ?? topic)!.duplicates.isDuplicate(message, nowMs)) {
      this.counters.duplicatesDropped += 1;
      return true;
    }
    if (queue) queue.entity.enqueue(message, nowMs);
    for (const sub of topic?.subscriptions.values() ?? []) sub.enqueue({ ...message }, nowMs);
    return true;
  }

  /** The store a receiver or `$management` address names (`…/$DeadLetterQueue` included). */
  entity(address: string): StandInEntity | undefined {
    const parts = address.split("/");
    let deadLetter = false;
    if (parts.length > 1 && parts[parts.length - 1]!.toLowerCase() === "$deadletterqueue") {
      deadLetter = true;
      parts.pop();
    }
    let entity: StandInEntity | undefined;
    if (parts.length === 1) entity = this.queues.get(parts[0]!.toLowerCase())?.entity;
    else if (parts.length === 3 && parts[1]!.toLowerCase() === "subscriptions") {
      entity = this.topics.get(parts[0]!.toLowerCase())?.subscriptions.get(parts[2]!.toLowerCase());
    }
    return deadLetter ? entity?.deadLetter : entity;
  }
}

const detector = (options: StandInSendEntityOptions): DuplicateDetector =>
  new DuplicateDetector(
    options.requiresDuplicateDetection ?? false,
    options.duplicateDetectionWindowMs ?? DEFAULT_DUPLICATE_WINDOW_MS,
  );
