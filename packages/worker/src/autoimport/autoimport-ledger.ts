/**
 * Durable progress of one `hsmfleet autoimport` service in JetStream KV (bucket
 * `hsmfleet-autoimport`, history 1): the Service Bus message ids already applied (a duplicate
 * delivery changes nothing), the last applied `sequencer` of each blob name (an older event for
 * that name is stale and skipped) and the service's status (AMLFS autoImportJobs field names).
 * Keys are `<service>.m.<sha256(message id)>`, `<service>.b.<sha256(blob)>` and
 * `<service>.status`, so any message id or blob name makes a valid key.
 */
import { createHash } from "node:crypto";
import { Kvm } from "@nats-io/kv";
import type { KV } from "@nats-io/kv";
import type { NatsConnection } from "@hsmfleet/bus";
import { compareSequencers } from "@hsmfleet/protocol";
import type { AutoImportCounters } from "./apply-blob-change.js";

export const AUTOIMPORT_BUCKET = "hsmfleet-autoimport";

/** What `hsmfleet status` shows of a running auto-import (AMLFS autoImportJobs fields). */
export interface AutoImportStatus extends AutoImportCounters {
  name: string;
  state: "InProgress" | "Disabling" | "Disabled" | "Failed";
  container: string;
  target: string;
  /** Messages completed, including duplicates and stale events. */
  messagesConsumed: number;
  duplicates: number;
  staleEvents: number;
  deadLettered: number;
  /** Event time of the newest event applied (AMLFS: lastChangeFeedEventConsumedTime). */
  lastChangeFeedEventConsumedTime: string;
  /** When the initial scan (a full import) last ended. */
  lastTimeFullySynchronized: string;
  updatedAt: string;
}

const digest = (s: string): string => createHash("sha256").update(s).digest("hex");

export class AutoImportLedger {
  readonly #kv: KV;
  readonly #name: string;

  private constructor(kv: KV, name: string) {
    this.#kv = kv;
    this.#name = name;
  }

  static async open(nc: NatsConnection, name: string): Promise<AutoImportLedger> {
    if (!/^[A-Za-z0-9_-]{1,64}$/.test(name)) {
      throw new Error(
        `autoimport: service name ${JSON.stringify(name)} must be 1-64 of [A-Za-z0-9_-]`,
      );
    }
    const kv = await new Kvm(nc).create(AUTOIMPORT_BUCKET, { history: 1 });
    return new AutoImportLedger(kv, name);
  }

  async applied(messageId: string): Promise<boolean> {
    return (await this.#kv.get(`${this.#name}.m.${digest(messageId)}`)) !== null;
  }

  async markApplied(messageId: string): Promise<void> {
    await this.#kv.put(`${this.#name}.m.${digest(messageId)}`, "1");
  }

  /** True when `sequencer` is older than (or equal to) the last one applied for the blob. */
  async stale(blob: string, sequencer: string): Promise<boolean> {
    const e = await this.#kv.get(`${this.#name}.b.${digest(blob)}`);
    return e !== null && compareSequencers(sequencer, e.string()) <= 0;
  }

  async markSequencer(blob: string, sequencer: string): Promise<void> {
    await this.#kv.put(`${this.#name}.b.${digest(blob)}`, sequencer);
  }

  async saveStatus(status: AutoImportStatus): Promise<void> {
    await this.#kv.put(`${this.#name}.status`, JSON.stringify(status));
  }

  async status(): Promise<AutoImportStatus | undefined> {
    const e = await this.#kv.get(`${this.#name}.status`);
    return e === null ? undefined : e.json<AutoImportStatus>();
  }
}
