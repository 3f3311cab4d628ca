import type { FileEntry } from "@hsmfleet/core";
import { encodeTransferBatch } from "@hsmfleet/protocol";
import { subjects } from "@hsmfleet/protocol";
import type { JobSpec, WalkShard } from "@hsmfleet/protocol";

export interface TransferBatcherOptions {
  /** Work subject the batches go to (transfer, restore). */
  subject: string;
  /** Letter in the deterministic batch id `<shard>.<tag><n>` ("b" transfers, "r" restores). */
  tag: string;
  /** What batch ids start with (ShardScope.childPrefix). Default: the shard's id. */
  idPrefix?: string | undefined;
  maxEntries: number;
  maxBytes: number;
}

/**
 * Groups the entries one shard hands on into TransferBatch work items, bounded by count and bytes
 * (a file larger than the byte bound goes alone). Batch ids are the shard id plus a sequence, so
 * a redelivered shard that adds the same entries in the same order republishes nothing new.
 */
export class TransferBatcher {
  readonly #shard: WalkShard;
  readonly #spawn: (subject: string, data: Uint8Array, msgID: string) => Promise<void>;
  readonly #o: TransferBatcherOptions;
  #entries: FileEntry[] = [];
  #names: string[] = [];
  #bytes = 0;
  #sequence = 0;

  constructor(
    shard: WalkShard,
    spawn: (subject: string, data: Uint8Array, msgID: string) => Promise<void>,
    options: TransferBatcherOptions,
  ) {
    this.#shard = shard;
    this.#spawn = spawn;
    this.#o = options;
  }

  /**
   * Adds one entry (`bytes`: what it weighs against maxBytes; `blobName` for downloads). Returns a
   * promise only when the entry first publishes the batch held (a walk adds up to a million
   * entries a second: no promise, no microtask per entry otherwise).
   */
  add(entry: FileEntry, bytes: number, blobName?: string): Promise<void> | undefined {
    if (
      this.#entries.length > 0 &&
      (this.#entries.length >= this.#o.maxEntries || this.#bytes + bytes > this.#o.maxBytes)
    )
      return this.flush().then(() => this.#push(entry, bytes, blobName));
    this.#push(entry, bytes, blobName);
    return undefined;
  }

  #push(entry: FileEntry, bytes: number, blobName: string | undefined): void {
    this.#entries.push(entry);
    if (blobName !== undefined) this.#names.push(blobName);
    this.#bytes += bytes;
  }

  /** Publishes what is held as one batch (nothing when empty). */
  async flush(): Promise<void> {
    if (this.#entries.length === 0) return;
    const shard = this.#shard;
    const batchId = `${this.#o.idPrefix ?? shard.shardId}.${this.#o.tag}${this.#sequence}`;
    await this.#spawn(
      this.#o.subject,
      encodeTransferBatch({
        jobId: shard.jobId,
        batchId,
        shardId: shard.shardId,
        sequence: this.#sequence,
        entries: this.#entries,
        ...(this.#names.length > 0 ? { blobNames: this.#names } : {}),
      }),
      batchId,
    );
    this.#sequence++;
    this.#entries = [];
    this.#names = [];
    this.#bytes = 0;
  }
}

/** Default bounds of one transfer batch when the job gives none. */
export const TRANSFER_BATCH_DEFAULTS = {
  maxEntries: 1000,
  maxBytes: 256 * 1024 * 1024,
} as const;

/** The batcher of a shard's transfer items, bounded by the job's batch settings. */
export const transferBatcherFor = (
  shard: WalkShard,
  spawn: (subject: string, data: Uint8Array, msgID: string) => Promise<void>,
  spec: JobSpec,
  defaults: { maxEntries: number; maxBytes: number } = TRANSFER_BATCH_DEFAULTS,
  idPrefix?: string,
): TransferBatcher =>
  new TransferBatcher(shard, spawn, {
    idPrefix,
    subject: subjects.transfer(shard.jobId),
    tag: "b",
    maxEntries: spec.batchMaxEntries || defaults.maxEntries,
    maxBytes: spec.batchMaxBytes || defaults.maxBytes,
  });
