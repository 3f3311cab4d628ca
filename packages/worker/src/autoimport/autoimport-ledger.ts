/**
 * Durable progress of one `hsmfleet autoimport` service in JetStream KV (bucket
 * `hsmfleet-autoimport`, history 1): the Service Bus message ids already applied (a duplicate
 * delivery changes nothing), the last applied `sequencer` of each blob name (an older event for
 * that name is stale and skipped) and the service's status (AMLFS autoImportJobs field names).
 * Keys are `<service>.m.<sha256(message id)>`, `<service>.b.<sha256(blob)>` and
 * `<service>.status`, so any message id or blob name makes a valid key. The status is also the
 * service's job record (job id = the service name, autoimport-job-record.ts) for `hsmfleet status`,
 * `hsmfleet jobs` and the dashboard.
 */
import { createHash } from "node:crypto";
import { Kvm } from "@nats-io/kv";
import type { KV } from "@nats-io/kv";
import { JobStore, ensureTopology } from "@hsmfleet/bus";
import type { NatsConnection } from "@hsmfleet/bus";
import { compareSequencers } from "@hsmfleet/protocol";
import type { JobSpec } from "@hsmfleet/protocol";
import type { AutoImportStatus } from "./autoimport-status.js";
import { autoImportJobRecord } from "./autoimport-job-record.js";

export const AUTOIMPORT_BUCKET = "hsmfleet-autoimport";

const digest = (s: string): string => createHash("sha256").update(s).digest("hex");

export class AutoImportLedger {
  readonly #kv: KV;
  readonly #name: string;
  readonly #jobs: JobStore;
  readonly #startedAtMs = Date.now();

  private constructor(kv: KV, name: string, jobs: JobStore) {
    this.#kv = kv;
    this.#name = name;
    this.#jobs = jobs;
  }

  static async open(nc: NatsConnection, name: string): Promise<AutoImportLedger> {
    if (!/^[A-Za-z0-9_-]{1,64}$/.test(name)) {
      throw new Error(
        `autoimport: service name ${JSON.stringify(name)} must be 1-64 of [A-Za-z0-9_-]`,
      );
    }
    const kv = await new Kvm(nc).create(AUTOIMPORT_BUCKET, { history: 1 });
    const { jobs } = await ensureTopology(nc);
    return new AutoImportLedger(kv, name, new JobStore(jobs));
  }

  async applied(messageId: string): Promise<boolean> {
    return (await this.#kv.get(`${this.#name}.m.${digest(messageId)}`)) !== null;
  }

  async markApplied(messageId: string): Promise<void> {
    await this.#kv.put(`${this.#name}.m.${digest(messageId)}`, "1");
  }

  /** applied() of many ids at once (the reads pipelined on the connection). */
  appliedAll(messageIds: readonly string[]): Promise<boolean[]> {
    return Promise.all(messageIds.map((id) => this.applied(id)));
  }

  /** markApplied() of many ids at once; resolves once every write is acknowledged (durable). */
  async markAppliedAll(messageIds: readonly string[]): Promise<void> {
    await Promise.all(messageIds.map((id) => this.markApplied(id)));
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
