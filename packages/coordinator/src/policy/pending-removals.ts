import { createHash } from "node:crypto";
import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { AckPolicy, DeliverPolicy, jetstream } from "@nats-io/jetstream";
import type { Consumer } from "@nats-io/jetstream";
import { Kvm } from "@nats-io/kv";
import type { KV } from "@nats-io/kv";
import { jetstreamManager } from "@hsmfleet/bus";
import type { NatsConnection } from "@hsmfleet/bus";
import type { BlobContainer } from "@hsmfleet/blob";
import { blobNameForPath, errorMessage } from "@hsmfleet/core";
import type { PolicySettings, ResolvedPolicy } from "@hsmfleet/core";
import {
  CHANGES_STREAM,
  changesSubject,
  CHANGES_ALL,
  decodeChangeRecord,
} from "@hsmfleet/protocol";
import type { Logger } from "@hsmfleet/telemetry";
import { ensureChangesStream } from "./change-stream.js";

const execFileAsync = promisify(execFile);

/** Pending removals of every remove policy: one key per deleted file. */
export const REMOVALS_BUCKET = "hsmfleet-policy-removals";

/**
 * A removal waiting for its delay. Keyed by the deleted file's identity in its change source
 * (`source` + `target`, the FID on Lustre), never by the inode, which is gone; it carries what the
 * removal needs without the file: the archive copy's location, and the FID for `lfs hsm_remove`.
 */
export interface PendingRemoval {
  policy: string;
  source: string;
  /** FID (`[0x…:0x…:0x…]`) or `ino:<n>`. */
  target: string;
  /** Path relative to the tree root when it was deleted. */
  path: string;
  deletedAtMs: number;
  dueAtMs: number;
  container: string;
  blobName: string;
}

export const removalKey = (policy: string, source: string, target: string): string =>
  `${policy}.${createHash("sha256").update(`${source}\0${target}`).digest("hex").slice(0, 40)}`;

export interface RemovalServiceOptions {
  nc: NatsConnection;
  policy: ResolvedPolicy;
  settings: PolicySettings;
  /** The archive container (hsm-emulation: the blob is deleted by this process). */
  container?: BlobContainer | undefined;
  /** How often due removals are looked for. Default: a quarter of the delay, 250 ms to 10 s. */
  sweepEveryMs?: number | undefined;
  logger?: Logger | undefined;
  onRemoved?: ((r: PendingRemoval) => void) | undefined;
}

export interface RemovalStats {
  recorded: number;
  removed: number;
  failed: number;
  ignored: number;
  /** Change records not yet read by this policy's consumer (its lag). */
  backlog: number;
  pending: number;
}

/**
 * `remove`: follows the change stream with a durable consumer (`policy-remove-<policy>`), records
 * every UNLNK of a file with an HSM copy in the KV bucket, and after the policy's delay deletes the
 * archive copy (hsm-emulation: the blob at the location the archive used — the container at the
 * path's blob name; lustre: `lfs hsm_remove --mntpath ROOT FID`). Acked only once recorded, so a
 * process killed at any point resumes where it was, without re-reading the stream.
 */
export class RemovalService {
  readonly #o: RemovalServiceOptions;
  readonly stats: RemovalStats = {
    recorded: 0,
    removed: 0,
    failed: 0,
    ignored: 0,
    backlog: 0,
    pending: 0,
  };
  #kv: KV | undefined;
  #consumer: Consumer | undefined;

  constructor(o: RemovalServiceOptions) {
    this.#o = o;
  }

  get consumerName(): string {
    return `policy-remove-${this.#o.policy.name}`;
  }

  async start(): Promise<void> {
    const { nc, policy } = this.#o;
    await ensureChangesStream(nc);
    this.#kv = await new Kvm(nc).create(REMOVALS_BUCKET, { history: 1 });
    const jsm = await jetstreamManager(nc);
    const filter = policy.changesFrom === "*" ? CHANGES_ALL : changesSubject(policy.changesFrom);
    try {
      await jsm.consumers.info(CHANGES_STREAM, this.consumerName);
    } catch {
      await jsm.consumers.add(CHANGES_STREAM, {
        durable_name: this.consumerName,
        ack_policy: AckPolicy.Explicit,
        deliver_policy: DeliverPolicy.All,
        filter_subject: filter,
        ack_wait: 30_000 * 1_000_000,
        max_ack_pending: 1000,
      });
    }
    this.#consumer = await jetstream(nc).consumers.get(CHANGES_STREAM, this.consumerName);
  }

  /** Follows the stream until `signal` aborts. */
  async follow(signal: AbortSignal): Promise<void> {
    const consumer = this.#consumer!;
    while (!signal.aborted) {
      const batch = await consumer.fetch({ max_messages: 256, expires: 1000 });
      const stop = () => batch.stop();
      signal.addEventListener("abort", stop);
      try {
        for await (const m of batch) {
          await this.#take(m.data);
          m.ack();
        }
      } finally {
        signal.removeEventListener("abort", stop);
      }
      const info = await consumer.info(true).catch(() => undefined);
      if (info) this.stats.backlog = info.num_pending;
    }
  }

  async #take(data: Uint8Array): Promise<void> {
    const { policy, settings, logger } = this.#o;
    let r;
    try {
      r = decodeChangeRecord(data);
    } catch (err) {
      // Untrusted input: a record that does not decode is logged and skipped.
      this.stats.ignored++;
      logger?.warn({ err: errorMessage(err) }, "policy remove: change record ignored");
      return;
    }
    if (r.type !== "UNLNK" || r.hsmExists !== true || !r.path) return;
    if (r.lastLink === false) return; // another link still holds the data
    const path = r.path.replace(/^\/+/, "");
    if (path === "" || path.split("/").includes("..")) {
      this.stats.ignored++;
      return;
    }
    const pending: PendingRemoval = {
      policy: policy.name,
      source: r.source,
      target: r.target,
      path,
      deletedAtMs: r.time,
      dueAtMs: r.time + policy.removeDelayMs,
      container: settings.container,
      blobName: blobNameForPath(Buffer.from(path), settings.prefix),
    };
    await this.#kv!.put(removalKey(policy.name, r.source, r.target), JSON.stringify(pending));
    this.stats.recorded++;
  }

  /** Carries out the removals that are due; returns how many were done. */
  async sweep(now = Date.now()): Promise<number> {
    const kv = this.#kv!;
    const prefix = `${this.#o.policy.name}.`;
    let done = 0;
    let pending = 0;
    for await (const key of await kv.keys(`${prefix}>`)) {
      const e = await kv.get(key);
      if (!e || e.operation !== "PUT") continue;
      let r: PendingRemoval;
      try {
        r = JSON.parse(e.string()) as PendingRemoval;
      } catch {
        await kv.purge(key);
        continue;
      }
      if (r.dueAtMs > now) {
        pending++;
        continue;
      }
      try {
        await this.#remove(r);
        await kv.purge(key);
        this.stats.removed++;
        done++;
        this.#o.onRemoved?.(r);
      } catch (err) {
        this.stats.failed++;
        pending++;
        this.#o.logger?.warn(
          { path: r.path, err: errorMessage(err) },
          `policy ${r.policy}: removing the archive copy of ${r.path} failed; retried at the next sweep`,
        );
      }
    }
    this.stats.pending = pending;
    return done;
  }

  async #remove(r: PendingRemoval): Promise<void> {
    const { settings, policy } = this.#o;
    if (settings.backend === "lustre") {
      await execFileAsync(settings.lfsPath, ["hsm_remove", "--mntpath", policy.root, r.target]);
      return;
    }
    const c = this.#o.container;
    if (!c) throw new Error(`no storage to delete ${r.container}/${r.blobName} from`);
    await c.deleteBlob(r.blobName);
  }
}
