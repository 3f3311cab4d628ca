import type { JobStore } from "@hsmfleet/bus";
import { JobState } from "@hsmfleet/protocol";
import type { JobStatus } from "@hsmfleet/protocol";

/**
 * Job records as workers see them: read from the KV bucket, cached briefly so a busy worker does
 * not read the bucket once per item, yet notices a cancel within `ttlMs`.
 */
export class JobCache {
  readonly #store: JobStore;
  readonly #ttlMs: number;
  readonly #entries = new Map<string, { at: number; status: Promise<JobStatus | undefined> }>();

  constructor(store: JobStore, ttlMs = 2000) {
    this.#store = store;
    this.#ttlMs = ttlMs;
  }

  /** The next get() reads the record again. */
  forget(jobId: string): void {
    this.#entries.delete(jobId);
  }

  async get(jobId: string): Promise<JobStatus | undefined> {
    const now = Date.now();
    const hit = this.#entries.get(jobId);
    if (hit && now - hit.at < this.#ttlMs) return hit.status;
    const status = this.#store.get(jobId);
    this.#entries.set(jobId, { at: now, status });
    if (this.#entries.size > 1000) {
      for (const [k, v] of this.#entries) if (now - v.at >= this.#ttlMs) this.#entries.delete(k);
    }
    return status;
  }
}

/** Whether items of a job in this state should still be worked on. */
export const isLive = (status: JobStatus | undefined): status is JobStatus =>
  status !== undefined && isLiveState(status.state);

export const isLiveState = (state: number): boolean =>
  state === JobState.Running || state === JobState.Pending;

/**
 * The records a per-job puller watcher (restore, sync, autoimport: job-pullers.ts) needs decoded: live jobs of its kind, and
 * the jobs it runs a puller for (to stop it when they end). The rest of the job history is skipped
 * undecoded (JobStore.watchLive's `want`).
 */
export const wantedBy =
  (kind: number, running: { has(jobId: string): boolean }) =>
  (r: { jobId: string; kind: number; state: number }): boolean =>
    r.kind === kind && (isLiveState(r.state) || running.has(r.jobId));
