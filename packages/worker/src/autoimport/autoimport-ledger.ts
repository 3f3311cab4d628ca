/**
 * Durable progress of one `hsmfleet autoimport` service in JetStream KV (bucket
 * `hsmfleet-autoimport`, history 1): the Service Bus message ids already applied (a duplicate
 * delivery changes nothing), the last applied `sequencer` of each blob name (an older event for
 * that name is stale and skipped) and the service's status (AMLFS autoImportJobs field names).
 *
 * The applied message ids are written **one KV entry per round** (`<service>.r.<uuid>`: the time
 * and the digests of the round's ids), not one per message (issue 20: a KV get and a put per message
 * were most of the intake's CPU), and read back into memory when the ledger opens: a duplicate is
 * then a lookup in a Set. Rounds older than the dedupe window (`dedupeWindowMs`, default 24 h:
 * Event Grid's default retry period, far past a Service Bus lock) are deleted, on open and as new
 * rounds are written; an id older than that which comes again is sent to the fleet, where its
 * changes' sequencers make it stale (nothing changes). Blob keys are `<service>.b.<sha256(blob)>`,
 * the status `<service>.status`, so any message id or blob name makes a valid key. The status is
 * also the service's job record (job id = the service name, autoimport-job-record.ts) for
 * `hsmfleet status`, `hsmfleet jobs` and the dashboard.
 */
import { createHash, randomUUID } from "node:crypto";
import { Kvm } from "@nats-io/kv";
import type { KV } from "@nats-io/kv";
import { JobStore, ensureTopology } from "@hsmfleet/bus";
import type { NatsConnection } from "@hsmfleet/bus";
import { errorMessage } from "@hsmfleet/core";
import { compareSequencers } from "@hsmfleet/protocol";
import type { JobSpec } from "@hsmfleet/protocol";
import type { AutoImportStatus } from "./autoimport-status.js";
import { autoImportJobRecord } from "./autoimport-job-record.js";

export const AUTOIMPORT_BUCKET = "hsmfleet-autoimport";

const digest = (s: string): string => createHash("sha256").update(s).digest("hex");
/** A message id's digest in a round record (128 bits of its SHA-256, base64url). */
const idDigest = (id: string): string =>
  createHash("sha256").update(id).digest().subarray(0, 16).toString("base64url");

/** How long applied message ids are remembered (ms), by default: 24 h. */
export const DEFAULT_DEDUPE_WINDOW_MS = 24 * 3600 * 1000;

/** A round record `<service>.r.<uuid>` (JSON). */
interface RoundRecord {
  /** When it was written (ms since the epoch). */
  at: number;
  /** idDigest of each message id applied in the round. */
  ids: string[];
}

export interface AutoImportLedgerOptions {
  /** Applied message ids older than this (ms) are forgotten. Default DEFAULT_DEDUPE_WINDOW_MS. */
  dedupeWindowMs?: number;
}

export class AutoImportLedger {
  readonly #kv: KV;
  readonly #name: string;
  readonly #jobs: JobStore;
  readonly #startedAtMs = Date.now();
  readonly #windowMs: number;
  /** Applied message ids (idDigest) -> the time of the newest round that holds it. */
  readonly #applied = new Map<string, number>();
  /** The round records in memory, oldest first. */
  readonly #rounds: Array<{ key: string; at: number; ids: string[] }> = [];

  private constructor(kv: KV, name: string, jobs: JobStore, windowMs: number) {
    this.#kv = kv;
    this.#name = name;
    this.#jobs = jobs;
    this.#windowMs = windowMs;
  }

  static async open(
    nc: NatsConnection,
    name: string,
    options: AutoImportLedgerOptions = {},
  ): Promise<AutoImportLedger> {
    if (!/^[A-Za-z0-9_-]{1,64}$/.test(name)) {
      throw new Error(
        `autoimport: service name ${JSON.stringify(name)} must be 1-64 of [A-Za-z0-9_-]`,
      );
    }
    const kv = await new Kvm(nc).create(AUTOIMPORT_BUCKET, { history: 1 });
    const { jobs } = await ensureTopology(nc);
    return new AutoImportLedger(
      kv,
      name,
      new JobStore(jobs),
      options.dedupeWindowMs ?? DEFAULT_DEDUPE_WINDOW_MS,
    );
  }

  /**
   * Reads the round records of the applied message ids into memory (the service, before its first
   * receive; workers never call it), deleting those past the dedupe window.
   */
  async loadApplied(): Promise<void> {
    const prefix = `${this.#name}.r.`;
    const keys: string[] = [];
    try {
      for await (const k of await this.#kv.keys(`${prefix}>`)) keys.push(k);
    } catch (err) {
      throw new Error(
        `autoimport ${this.#name}: listing the applied message ids (KV ${AUTOIMPORT_BUCKET} ${prefix}*): ${errorMessage(err)}`,
        { cause: err },
      );
    }
    const loaded: Array<{ key: string; at: number; ids: string[] }> = [];
    for (let i = 0; i < keys.length; i += 64) {
      const chunk = keys.slice(i, i + 64);
      const entries = await Promise.all(chunk.map((k) => this.#kv.get(k)));
      entries.forEach((e, j) => {
        if (e === null || e.operation !== "PUT") return;
        let r: RoundRecord;
        try {
          r = e.json<RoundRecord>();
        } catch {
          return; // not a round record: ignored (never written by this code)
        }
        if (typeof r?.at !== "number" || !Array.isArray(r.ids)) return;
        loaded.push({ key: chunk[j]!, at: r.at, ids: r.ids.filter((d) => typeof d === "string") });
      });
    }
    loaded.sort((a, b) => a.at - b.at);
    for (const r of loaded) this.#remember(r);
    await this.#forgetOld();
  }

  #remember(r: { key: string; at: number; ids: string[] }): void {
    this.#rounds.push(r);
    for (const d of r.ids)
      if ((this.#applied.get(d) ?? -Infinity) < r.at) this.#applied.set(d, r.at);
  }

  /** Rounds past the window: out of memory and deleted from KV. */
  async #forgetOld(): Promise<void> {
    const before = Date.now() - this.#windowMs;
    const old: string[] = [];
    while (this.#rounds.length > 0 && this.#rounds[0]!.at < before) {
      const r = this.#rounds.shift()!;
      for (const d of r.ids)
        if ((this.#applied.get(d) ?? Infinity) <= r.at) this.#applied.delete(d);
      old.push(r.key);
    }
    await Promise.all(old.map((k) => this.#kv.purge(k)));
  }

  /** Whether each message id was applied (within the dedupe window); after loadApplied(). */
  appliedAll(messageIds: readonly string[]): Promise<boolean[]> {
    return Promise.resolve(messageIds.map((id) => this.#applied.has(idDigest(id))));
  }

  /**
   * Records the message ids of a round as applied: ONE KV entry; resolves once it is acknowledged
   * (durable), so the caller completes the messages after.
   */
  async markAppliedAll(messageIds: readonly string[]): Promise<void> {
    if (messageIds.length === 0) return;
    const r = {
      key: `${this.#name}.r.${randomUUID()}`,
      at: Date.now(),
      ids: messageIds.map(idDigest),
    };
    await this.#kv.put(r.key, JSON.stringify({ at: r.at, ids: r.ids } satisfies RoundRecord));
    this.#remember(r);
    await this.#forgetOld();
  }

  /** The last sequencer applied to the blob ('' when none). */
  async lastSequencer(blob: string): Promise<string> {
    const e = await this.#kv.get(`${this.#name}.b.${digest(blob)}`);
    return e === null ? "" : e.string();
  }

  /** True when `sequencer` is older than (or equal to) the last one applied for the blob. */
  async stale(blob: string, sequencer: string): Promise<boolean> {
    const e = await this.#kv.get(`${this.#name}.b.${digest(blob)}`);
    return e !== null && compareSequencers(sequencer, e.string()) <= 0;
  }

  async markSequencer(blob: string, sequencer: string): Promise<void> {
    await this.#kv.put(`${this.#name}.b.${digest(blob)}`, sequencer);
  }

  /**
   * Saves the status and the service's job record. `spec` (autoImportJobSpec: the item key workers
   * check seals with, the import options) is the same for a whole run; without it the record is
   * written with a fresh spec (status only, no work items in flight).
   */
  async saveStatus(status: AutoImportStatus, spec?: JobSpec): Promise<void> {
    await this.#kv.put(`${this.#name}.status`, JSON.stringify(status));
    await this.#jobs.put(autoImportJobRecord(status, this.#startedAtMs, spec));
  }

  async status(): Promise<AutoImportStatus | undefined> {
    const e = await this.#kv.get(`${this.#name}.status`);
    return e === null ? undefined : e.json<AutoImportStatus>();
  }
}
