import { createHash } from "node:crypto";
import { withJetStreamRetry } from "@hsmfleet/bus";
import type { KV } from "@hsmfleet/bus";
import type { ChangeCheckpoint } from "./change-source.js";

/** What `hsmfleet status` shows of a sync service (AMLFS autoExportJobs-like), kept in KV. */
export interface SyncStatusRecord {
  name: string;
  jobId: string;
  /** `starting`, `running` (in step or catching up), `stopped`, `failed`. */
  state: string;
  root: string;
  container: string;
  prefix: string;
  source: string;
  recordsRead: number;
  recordsApplied: number;
  filesExported: number;
  bytesExported: number;
  directoriesExported: number;
  symlinksExported: number;
  metadataUpdates: number;
  renames: number;
  deletions: number;
  /** Deletions waiting out the remove delay. */
  deletionsPending: number;
  failures: number;
  /** Records read and not yet applied. */
  backlog: number;
  /** Age of the oldest change not yet applied (0 when in step). */
  secondsBehind: number;
  /** When the service last had nothing left to apply (ms since the epoch; 0: never yet). */
  lastFullySynchronizedMs: number;
  /** The last reconciliation scan's end (ms; 0: none yet). */
  lastRescanMs: number;
  /** Per source, the last record applied. */
  checkpoint: Record<string, string>;
  startedAtMs: number;
  updatedAtMs: number;
  lastError: string;
}

/** One deletion waiting out `--remove-delay`. */
export interface DelayedDelete {
  key: string;
  rel: Buffer;
  dir: boolean;
  dueMs: number;
}

/** KV keys allow [-/_=.a-zA-Z0-9]: a source name such as `lustre:fs-MDT0000` is hex-encoded. */
const token = (s: string): string => Buffer.from(s).toString("hex");

/**
 * A sync service's durable state in the hsmfleet-sync bucket (every read and write retried while
 * JetStream does not answer, up to withJetStreamRetry's deadline: a busy server is not a failure): per source its checkpoint (the last
 * record applied and the time of the oldest change not yet applied), the deletions waiting out the
 * remove delay (one key each, so they survive a restart whatever their number), and its status.
 */
export class SyncState {
  readonly #kv: KV;
  readonly #name: string;
  readonly #deletes = new Map<string, DelayedDelete>();

  constructor(kv: KV, name: string) {
    this.#kv = kv;
    this.#name = name;
  }

  async checkpoint(source: string): Promise<ChangeCheckpoint | undefined> {
    const key = `${this.#name}.ckpt.${token(source)}`;
    const e = await withJetStreamRetry(`read ${key} from KV`, () => this.#kv.get(key));
    if (!e || e.length === 0) return undefined;
    const v = JSON.parse(e.string()) as { index?: unknown; watermarkMs?: unknown };
    if (
      typeof v.index !== "string" ||
      !/^\d{1,20}$/.test(v.index) ||
      typeof v.watermarkMs !== "number"
    )
      throw new Error(`sync ${this.#name}: checkpoint of ${source} in KV is malformed`);
    return { index: BigInt(v.index), watermarkMs: v.watermarkMs };
  }

  async saveCheckpoint(source: string, c: ChangeCheckpoint): Promise<void> {
    const key = `${this.#name}.ckpt.${token(source)}`;
    const value = JSON.stringify({ index: c.index.toString(), watermarkMs: c.watermarkMs });
    await withJetStreamRetry(`write ${key} to KV`, () => this.#kv.put(key, value));
  }

  /** Loads the deletions still waiting (after a restart). */
  async loadDeletes(): Promise<void> {
    const keys = await withJetStreamRetry(`list ${this.#name}.del.> in KV`, () =>
      this.#kv.keys(`${this.#name}.del.>`),
    );
    for await (const key of keys) {
      const e = await withJetStreamRetry(`read ${key} from KV`, () => this.#kv.get(key));
      if (!e || e.length === 0) continue;
      const v = JSON.parse(e.string()) as { rel: string; dir: boolean; dueMs: number };
      this.#deletes.set(key, {
        key,
        rel: Buffer.from(v.rel, "base64"),
        dir: v.dir,
        dueMs: v.dueMs,
      });
    }
  }

  async addDelete(rel: Buffer, dir: boolean, dueMs: number): Promise<void> {
    const key = `${this.#name}.del.${createHash("sha256").update(rel).digest("hex").slice(0, 40)}`;
    const value = JSON.stringify({ rel: rel.toString("base64"), dir, dueMs });
    await withJetStreamRetry(`write ${key} to KV`, () => this.#kv.put(key, value));
    this.#deletes.set(key, { key, rel, dir, dueMs });
  }

  get pendingDeletes(): number {
    return this.#deletes.size;
  }

  /** Deletions due by `nowMs`, at most `max`. */
  dueDeletes(nowMs: number, max: number): DelayedDelete[] {
    const out: DelayedDelete[] = [];
    for (const d of this.#deletes.values()) {
      if (out.length >= max) break;
      if (d.dueMs <= nowMs) out.push(d);
    }
    return out;
  }

  /** A path is an entry again: a deletion waiting for it is void. */
  async cancelDelete(rel: Buffer): Promise<void> {
    const key = `${this.#name}.del.${createHash("sha256").update(rel).digest("hex").slice(0, 40)}`;
    if (this.#deletes.delete(key))
      await withJetStreamRetry(`purge ${key} from KV`, () => this.#kv.purge(key));
  }

  async removeDeletes(done: DelayedDelete[]): Promise<void> {
    const purges: Promise<void>[] = [];
    for (const d of done) {
      if (this.#deletes.get(d.key) !== d) continue; // replaced by a newer deletion of that path
      this.#deletes.delete(d.key);
      purges.push(withJetStreamRetry(`purge ${d.key} from KV`, () => this.#kv.purge(d.key)));
    }
    await Promise.all(purges);
  }

  async saveStatus(status: SyncStatusRecord): Promise<void> {
    await this.#kv.put(`${this.#name}.status`, JSON.stringify(status));
  }
}

/** The status of sync service `name`, or undefined when it never ran. */
export const readSyncStatus = async (
  kv: KV,
  name: string,
): Promise<SyncStatusRecord | undefined> => {
  const e = await kv.get(`${name}.status`);
  if (!e || e.length === 0) return undefined;
  return JSON.parse(e.string()) as SyncStatusRecord;
};
