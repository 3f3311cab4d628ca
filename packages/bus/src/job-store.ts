import { JetStreamApiError } from "@nats-io/jetstream";
import type { JetStreamManager } from "@nats-io/jetstream";
import type { KV } from "@nats-io/kv";
import { JobError, errorMessage } from "@hsmfleet/core";
import {
  decodeJobStatus,
  encodeJobStatus,
  JOB_ID_PATTERN,
  peekJobStatus,
} from "@hsmfleet/protocol";
import type { JobStatus, JobStatusPeek } from "@hsmfleet/protocol";
import { subscribeJobFeed } from "./job-feed.js";
import type { RawJobRecord } from "./job-feed.js";
import { withJetStreamRetry } from "./jetstream-retry.js";

/** Pause before a watch that ended is created again (no busy loop if it keeps ending). */
const REWATCH_DELAY_MS = 1000;

/** Job records `list()` reads at once. */
const LIST_READS_IN_FLIGHT = 32;

/**
 * Job records in the JetStream KV bucket: one key per job id, value = protobuf JobStatus. Watches
 * and listings are ordered consumers, created with retries (jetstream-retry.ts: a clustered
 * JetStream with a node down can leave a new consumer unanswered).
 */
export class JobStore {
  readonly #kv: KV;
  constructor(kv: KV) {
    this.#kv = kv;
  }

  /**
   * Creates the record; refuses an id that already exists. Retried like every other JetStream
   * call (jetstream-retry.ts): a clustered bucket whose stream leader was on a node just lost
   * answers nothing for a moment. A retry that finds the id taken by exactly this record is the
   * earlier try's write whose answer was lost, not a clash.
   */
  async create(status: JobStatus): Promise<void> {
    const jobId = status.spec.jobId;
    checkJobId(jobId);
    const value = encodeJobStatus(status);
    let tries = 0;
    try {
      await withJetStreamRetry(`create the record of job ${jobId}`, async () => {
        tries++;
        try {
          await this.#kv.create(jobId, value);
        } catch (err) {
          if (tries > 1 && err instanceof JetStreamApiError && err.code === 10071) {
            const stored = await this.#kv.get(jobId);
            if (stored && Buffer.from(stored.value).equals(value)) return;
          }
          throw err;
        }
      });
    } catch (err) {
      // KV create is a put expecting "no previous revision"; anything else is a real failure.
      if (err instanceof JetStreamApiError && err.code === 10071) {
        throw new JobError(jobId, `job ${jobId} already exists`, {
          cause: err,
        });
      }
      throw err;
    }
  }

  async put(status: JobStatus): Promise<void> {
    await this.#kv.put(status.spec.jobId, encodeJobStatus(status));
  }

  async get(jobId: string): Promise<JobStatus | undefined> {
    checkJobId(jobId);
    const entry = await this.#kv.get(jobId);
    if (!entry || entry.operation !== "PUT" || entry.value.length === 0) return undefined;
    return decodeJobStatus(entry.value);
  }

  async require(jobId: string): Promise<JobStatus> {
    const status = await this.get(jobId);
    if (!status) throw new JobError(jobId, `no job ${jobId} (hsmfleet jobs lists the known ones)`);
    return status;
  }

  /**
   * Every job, newest first. The keys come from one look at the bucket's stream (its subjects):
   * nats.js `kv.keys()` reads an ordered consumer until the last key, and while a record is
   * rewritten it hands out that key again and again and may not end — a `scan` e2e test waited
   * ~10 minutes in it while its coordinator updated the job record (test: job-store-create).
   */
  async list(): Promise<JobStatus[]> {
    const out: JobStatus[] = [];
    const keys = await withJetStreamRetry("list the job records", () => this.#listKeys());
    // Read LIST_READS_IN_FLIGHT records at a time: one round trip each, sequential reads made
    // `hsmfleet jobs` wait ~1 ms per job ever kept.
    for (let i = 0; i < keys.length; i += LIST_READS_IN_FLIGHT) {
      const read = await Promise.all(
        keys.slice(i, i + LIST_READS_IN_FLIGHT).map((key) => this.get(key)),
      );
      for (const status of read) if (status) out.push(status);
    }
    return out.sort((a, b) => b.spec.createdAtMs - a.spec.createdAtMs);
  }

  async #listKeys(): Promise<string[]> {
    // The bucket's manager and name (public fields of nats.js's Bucket, not in the KV interface).
    const bucket = this.#kv as unknown as { jsm?: JetStreamManager; bucket?: unknown };
    if (bucket.jsm !== undefined && typeof bucket.bucket === "string") {
      const prefix = `$KV.${bucket.bucket}.`;
      const info = await bucket.jsm.streams.info(`KV_${bucket.bucket}`, {
        subjects_filter: `${prefix}>`,
      });
      return Object.keys(info.state.subjects ?? {})
        .filter((s) => s.startsWith(prefix))
        .map((s) => s.slice(prefix.length));
    }
    throw new Error(
      "list the job records: the job bucket is not a nats.js KV bucket (no stream manager to read its keys from)",
    );
  }

  /**
   * Current record of every job, then every update, until stop(). With `want`, only the records
   * it accepts (judged on the job id, kind and state, read without decoding the record) are
   * decoded and passed on: the watch replays every job ever kept, and most watchers care for
   * a few.
   */
  watchAll(
    onChange: (status: JobStatus) => void,
    onLost?: (why: string) => void,
    want?: (record: JobStatusPeek & { jobId: string }) => boolean,
  ): Promise<{ stop(): void }> {
    return this.#watch(">", "watch the job records", decoded(onChange, want), onLost);
  }

  /**
   * The current record of every live job (running or pending), then every update of any job,
   * until stop(); `want` as in watchAll. Everyone in the process who watches this way on the same
   * bucket handle shares one watch (job-feed.ts): a command's in-process workers each follow the
   * live jobs for three kinds. A subscriber that joins with the first also sees ended jobs.
   */
  watchLive(
    onChange: (status: JobStatus) => void,
    onLost?: (why: string) => void,
    want?: (record: JobStatusPeek & { jobId: string }) => boolean,
  ): Promise<{ stop(): void }> {
    const onRecord = decoded(onChange, want);
    return subscribeJobFeed(
      this.#kv,
      (deliver, lost, gaveUp) =>
        this.#watch(">", "watch the job records", (r) => deliver(r), lost, gaveUp),
      { onRecord, onLost },
    );
  }

  /** Calls `onChange` for every update of one job until the returned stop() is called. */
  watch(
    jobId: string,
    onChange: (status: JobStatus) => void,
    onLost?: (why: string) => void,
  ): Promise<{ stop(): void }> {
    return this.#watch(jobId, `watch the record of job ${jobId}`, decoded(onChange), onLost);
  }

  /**
   * A KV watch is an ordered push consumer: nats.js re-creates it after missed heartbeats, but
   * gives up after 30 failed creations (a cluster with a node down places some on the dead node)
   * and then simply ends. A watch that ends before stop() is created again here (retried like the
   * first), delivering the current record again, so callers must take a repeated value calmly.
   */
  async #watch(
    key: string,
    what: string,
    onRecord: (record: RawJobRecord) => void,
    onLost: ((why: string) => void) | undefined,
    /** The watch ended and could not be made again: no record comes any more. */
    onGaveUp?: () => void,
  ): Promise<{ stop(): void }> {
    const open = () => withJetStreamRetry(what, () => this.#kv.watch({ key }));
    let iter = await open();
    let stopped = false;
    void (async () => {
      for (;;) {
        for await (const entry of iter) {
          if (entry.operation !== "PUT" || entry.value.length === 0) continue;
          onRecord({ jobId: entry.key, value: entry.value });
        }
        if (stopped) return;
        onLost?.(`the ${what.replace(/^watch /, "")} watch ended; re-creating it`);
        await new Promise((resolve) => setTimeout(resolve, REWATCH_DELAY_MS));
        if (stopped) return;
        try {
          iter = await open();
        } catch (err) {
          onLost?.(`could not ${what} again: ${errorMessage(err)}`);
          onGaveUp?.();
          return;
        }
        if (stopped) {
          iter.stop();
          return;
        }
      }
    })();
    return {
      stop: () => {
        stopped = true;
        iter.stop();
      },
    };
  }
}

/** A record consumer that decodes only what `want` accepts (judged on the undecoded record). */
const decoded =
  (
    onChange: (status: JobStatus) => void,
    want?: (record: JobStatusPeek & { jobId: string }) => boolean,
  ) =>
  (record: RawJobRecord): void => {
    if (want && !want({ ...peekJobStatus(record.value), jobId: record.jobId })) return;
    onChange(decodeJobStatus(record.value));
  };

export const checkJobId = (jobId: string): void => {
  if (!JOB_ID_PATTERN.test(jobId)) {
    throw new JobError(
      jobId,
      `invalid job id ${JSON.stringify(jobId)}: letters, digits, '-' and '_' only`,
    );
  }
};
