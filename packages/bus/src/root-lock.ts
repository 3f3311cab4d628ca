import { createHash } from "node:crypto";
import { JetStreamApiError } from "@nats-io/jetstream";
import type { KV } from "@nats-io/kv";

/** Key of a source root in the locks bucket (KV keys cannot hold arbitrary path bytes). */
const lockKey = (root: Buffer): string =>
  `root_${createHash("sha256").update(root).digest("hex").slice(0, 40)}`;

/**
 * One import/export job per source root at a time: a job takes the root's key with a KV create
 * (atomic: fails if the key exists) and deletes it when it ends.
 */
export class RootLocks {
  readonly #kv: KV;
  constructor(kv: KV) {
    this.#kv = kv;
  }

  /** Takes the lock for `jobId`; returns the holder's job id when someone else has it. */
  async acquire(
    root: Buffer,
    jobId: string,
  ): Promise<{ acquired: true } | { acquired: false; holder: string }> {
    try {
      await this.#kv.create(lockKey(root), new TextEncoder().encode(jobId));
      return { acquired: true };
    } catch (err) {
      if (!(err instanceof JetStreamApiError && err.code === 10071)) throw err;
      const holder = await this.holder(root);
      if (holder === undefined) return this.acquire(root, jobId); // released in between
      return { acquired: false, holder };
    }
  }

  async holder(root: Buffer): Promise<string | undefined> {
    const entry = await this.#kv.get(lockKey(root));
    if (!entry || entry.operation !== "PUT" || entry.value.length === 0) return undefined;
    return new TextDecoder().decode(entry.value);
  }

  /** Hands the lock from a dead job to `jobId` (only if `from` still holds it). */
  async takeOver(root: Buffer, from: string, jobId: string): Promise<boolean> {
    const entry = await this.#kv.get(lockKey(root));
    if (!entry || new TextDecoder().decode(entry.value) !== from) return false;
    try {
      await this.#kv.update(lockKey(root), new TextEncoder().encode(jobId), entry.revision);
      return true;
    } catch {
      return false;
    }
  }

  /** Releases the lock if `jobId` holds it. */
  async release(root: Buffer, jobId: string): Promise<void> {
    if ((await this.holder(root)) === jobId) await this.#kv.delete(lockKey(root));
  }
}
