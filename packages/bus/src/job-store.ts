import { JetStreamApiError } from "@nats-io/jetstream";
import type { KV } from "@nats-io/kv";
import { JobError } from "@hsmfleet/core";
import { decodeJobStatus, encodeJobStatus, JOB_ID_PATTERN } from "@hsmfleet/protocol";
import type { JobStatus } from "@hsmfleet/protocol";
import { withJetStreamRetry } from "./jetstream-retry.js";

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

  /** Creates the record; refuses an id that already exists. */
  async create(status: JobStatus): Promise<void> {
    checkJobId(status.spec.jobId);
    try {
      await this.#kv.create(status.spec.jobId, encodeJobStatus(status));
    } catch (err) {
      // KV create is a put expecting "no previous revision"; anything else is a real failure.
      if (err instanceof JetStreamApiError && err.code === 10071) {
        throw new JobError(status.spec.jobId, `job ${status.spec.jobId} already exists`, {
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

  /** Every job, newest first. */
  async list(): Promise<JobStatus[]> {
    const out: JobStatus[] = [];
    const keys = await withJetStreamRetry("list the job records", () => this.#kv.keys());
    for await (const key of keys) {
      const status = await this.get(key);
      if (status) out.push(status);
    }
    return out.sort((a, b) => b.spec.createdAtMs - a.spec.createdAtMs);
  }

  /** Current record of every job, then every update, until stop(). */
  async watchAll(onChange: (status: JobStatus) => void): Promise<{ stop(): void }> {
    const iter = await withJetStreamRetry("watch the job records", () =>
      this.#kv.watch({ key: ">" }),
    );
    void (async () => {
      for await (const entry of iter) {
        if (entry.operation === "PUT" && entry.value.length > 0)
          onChange(decodeJobStatus(entry.value));
      }
    })();
    return { stop: () => iter.stop() };
  }

  /** Calls `onChange` for every update of one job until the returned stop() is called. */
  async watch(jobId: string, onChange: (status: JobStatus) => void): Promise<{ stop(): void }> {
    const iter = await withJetStreamRetry(`watch the record of job ${jobId}`, () =>
      this.#kv.watch({ key: jobId }),
    );
    void (async () => {
      for await (const entry of iter) {
        if (entry.operation === "PUT" && entry.value.length > 0)
          onChange(decodeJobStatus(entry.value));
      }
    })();
    return { stop: () => iter.stop() };
  }
}

export const checkJobId = (jobId: string): void => {
  if (!JOB_ID_PATTERN.test(jobId)) {
    throw new JobError(
      jobId,
      `invalid job id ${JSON.stringify(jobId)}: letters, digits, '-' and '_' only`,
    );
  }
};
