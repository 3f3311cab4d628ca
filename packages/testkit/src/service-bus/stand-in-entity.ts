// One message store of the Service Bus STAND-IN (a queue, a topic's subscription, or the
// `$DeadLetterQueue` sub-entity of either): peek-lock with lock tokens and expiry, delivery
// counts, max delivery count -> dead-letter, and what the SDK reads back as message
// annotations. Service Bus semantics as documented for the service, not the service itself.
import { randomBytes } from "node:crypto";
import type { Message } from "rhea";

/** Settings of a queue or subscription (Service Bus defaults). */
export interface StandInEntityOptions {
  /** Lock duration of peek-lock receives; Service Bus's default is 60 s. */
  lockDurationMs?: number;
  /** Deliveries after which a message is dead-lettered (`MaxDeliveryCountExceeded`); default 10. */
  maxDeliveryCount?: number;
}

/** A message held by an entity. */
export interface StandInMessage {
  sequenceNumber: number;
  enqueuedAtMs: number;
  /** The message as sent (rhea's decoded form); annotations are added on delivery. */
  body: Message;
  /** Deliveries so far (Service Bus's DeliveryCount: 1 on the first receive). */
  deliveries: number;
  lockToken?: string;
  lockedUntilMs?: number;
}

/** A delivery handed to a receiver link: the lock token is the AMQP delivery tag. */
export interface StandInDelivery {
  message: StandInMessage;
  tag: Buffer;
  annotated: Message;
}

/** Service Bus sends lock tokens as .NET GUID bytes: the SDK swaps the first three groups. */
export const reorderGuidBytes = (b: Buffer): Buffer =>
  Buffer.from([b[3]!, b[2]!, b[1]!, b[0]!, b[5]!, b[4]!, b[7]!, b[6]!, ...b.subarray(8)]);

export const guidString = (b: Buffer): string => {
  const h = b.toString("hex");
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
};

export const DEFAULT_ENTITY_OPTIONS = { lockDurationMs: 60_000, maxDeliveryCount: 10 } as const;

export class StandInEntity {
  readonly path: string;
  readonly lockDurationMs: number;
  readonly maxDeliveryCount: number;
  /** The `$DeadLetterQueue` sub-entity (absent on a dead-letter queue itself). */
  readonly deadLetter: StandInEntity | undefined;
  private readonly available: StandInMessage[] = [];
  private readonly locked = new Map<string, StandInMessage>();
  private readonly all = new Map<number, StandInMessage>();
  private sequence = 0;
  /**
   * No lock expires before this (ms): a lower bound of the locked messages' lockedUntilMs (kept
   * by every lock and renewal; an unlock only drops one), so expireLocks looks at the locks only
   * once it has passed, not at every take and settlement (with thousands locked, that scan was most
   * of the stand-in's CPU in bench:autoimport).
   */
  private nextExpiryMs = Infinity;

  constructor(path: string, options: StandInEntityOptions = {}, isDeadLetter = false) {
    this.path = path;
    this.lockDurationMs = options.lockDurationMs ?? DEFAULT_ENTITY_OPTIONS.lockDurationMs;
    this.maxDeliveryCount = options.maxDeliveryCount ?? DEFAULT_ENTITY_OPTIONS.maxDeliveryCount;
    this.deadLetter = isDeadLetter
      ? undefined
      : new StandInEntity(`${path}/$DeadLetterQueue`, options, true);
  }

  /** Active messages (available and locked). */
  get count(): number {
    return this.all.size;
  }

  /** Messages locked by a receiver (delivered in peek-lock mode, not settled yet). */
  get lockedCount(): number {
    return this.locked.size;
  }

  enqueue(body: Message, nowMs = Date.now()): StandInMessage {
    const m: StandInMessage = {
      sequenceNumber: ++this.sequence,
      enqueuedAtMs: nowMs,
      body,
      deliveries: 0,
    };
    this.all.set(m.sequenceNumber, m);
    this.insertAvailable(m);
    return m;
  }

  /** Locks the oldest available message (peek-lock), or removes it (receive-and-delete). */
  take(peekLock: boolean, nowMs = Date.now()): StandInDelivery | undefined {
    this.expireLocks(nowMs);
    const m = this.available.shift();
    if (!m) return undefined;
    m.deliveries += 1;
    const tag = randomBytes(16);
    if (peekLock) {
      m.lockToken = guidString(reorderGuidBytes(tag));
      m.lockedUntilMs = nowMs + this.lockDurationMs;
      this.locked.set(m.lockToken, m);
      if (m.lockedUntilMs < this.nextExpiryMs) this.nextExpiryMs = m.lockedUntilMs;
    } else {
      this.all.delete(m.sequenceNumber);
    }
    return { message: m, tag, annotated: this.annotate(m) };
  }

  /** The message a lock token names, while its lock is held. */
  lockedMessage(lockToken: string, nowMs = Date.now()): StandInMessage | undefined {
    this.expireLocks(nowMs);
    return this.locked.get(lockToken);
  }

  complete(lockToken: string): boolean {
    const m = this.lockedMessage(lockToken);
    if (!m) return false;
    this.locked.delete(lockToken);
    this.all.delete(m.sequenceNumber);
    return true;
  }

  /** Abandon: back to the queue (in sequence order), or dead-lettered past maxDeliveryCount. */
  abandon(lockToken: string, annotations?: Record<string, unknown>): boolean {
    const m = this.lockedMessage(lockToken);
    if (!m) return false;
    this.unlock(m);
    if (annotations) m.body.message_annotations = { ...m.body.message_annotations, ...annotations };
    this.requeueOrDeadLetter(m);
    return true;
  }

  deadLetterMessage(
    lockToken: string,
    reason?: string,
    description?: string,
    properties?: Record<string, unknown>,
  ): boolean {
    const m = this.lockedMessage(lockToken);
    if (!m) return false;
    this.unlock(m);
    this.moveToDeadLetter(m, reason, description, properties);
    return true;
  }

  renewLock(lockToken: string, nowMs = Date.now()): number | undefined {
    const m = this.lockedMessage(lockToken, nowMs);
    if (!m) return undefined;
    m.lockedUntilMs = nowMs + this.lockDurationMs;
    if (m.lockedUntilMs < this.nextExpiryMs) this.nextExpiryMs = m.lockedUntilMs;
    return m.lockedUntilMs;
  }

  /** Messages from a sequence number on, without locking them (`peekMessages`). */
  peek(fromSequence: number, max: number): Message[] {
    return [...this.all.values()]
      .filter((m) => m.sequenceNumber >= fromSequence)
      .sort((a, b) => a.sequenceNumber - b.sequenceNumber)
      .slice(0, max)
      .map((m) => this.annotate(m));
  }

  /** Expired locks make their messages available again (a delivery attempt spent). */
  expireLocks(nowMs = Date.now()): boolean {
    if (nowMs < this.nextExpiryMs) return false;
    let changed = false;
    let next = Infinity;
    for (const [token, m] of this.locked) {
      const until = m.lockedUntilMs ?? 0;
      if (until <= nowMs) {
        this.locked.delete(token);
        this.unlock(m);
        this.requeueOrDeadLetter(m);
        changed = true;
      } else if (until < next) next = until;
    }
    this.nextExpiryMs = next;
    return changed;
  }

  private unlock(m: StandInMessage): void {
    if (m.lockToken) this.locked.delete(m.lockToken);
    delete m.lockToken;
    delete m.lockedUntilMs;
  }

  private requeueOrDeadLetter(m: StandInMessage): void {
    if (this.deadLetter && m.deliveries >= this.maxDeliveryCount) {
      this.moveToDeadLetter(
        m,
        "MaxDeliveryCountExceeded",
        `Message could not be consumed after ${this.maxDeliveryCount} delivery attempts.`,
      );
    } else {
      this.insertAvailable(m);
    }
  }

  private moveToDeadLetter(
    m: StandInMessage,
    reason?: string,
    description?: string,
    properties?: Record<string, unknown>,
  ): void {
    this.all.delete(m.sequenceNumber);
    if (!this.deadLetter) {
      this.insertAvailable(m); // dead-lettering on a dead-letter queue leaves the message there
      this.all.set(m.sequenceNumber, m);
      return;
    }
    const app: Record<string, unknown> = { ...m.body.application_properties, ...properties };
    if (reason !== undefined) app.DeadLetterReason = reason;
    if (description !== undefined) app.DeadLetterErrorDescription = description;
    const moved = this.deadLetter.enqueue({ ...m.body, application_properties: app });
    moved.deliveries = m.deliveries;
  }

  private insertAvailable(m: StandInMessage): void {
    let i = this.available.length;
    while (i > 0 && this.available[i - 1]!.sequenceNumber > m.sequenceNumber) i -= 1;
    this.available.splice(i, 0, m);
  }

  private annotate(m: StandInMessage): Message {
    const annotations: Record<string, unknown> = {
      ...m.body.message_annotations,
      "x-opt-sequence-number": m.sequenceNumber,
      "x-opt-enqueued-time": new Date(m.enqueuedAtMs),
    };
    if (m.lockedUntilMs !== undefined)
      annotations["x-opt-locked-until"] = new Date(m.lockedUntilMs);
    return {
      ...m.body,
      delivery_count: Math.max(0, m.deliveries - 1),
      message_annotations: annotations,
    };
  }
}
