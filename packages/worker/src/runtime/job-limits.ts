import { TokenBucket } from "@hsmfleet/blob/targets";
import type { RequestLimits } from "@hsmfleet/blob/targets";
import type { JobLimits } from "@hsmfleet/protocol";

/** One job's limits on this worker: token buckets at the job's cap divided by the live workers. */
export interface JobLimiter {
  readonly limits: JobLimits;
  readonly buckets: RequestLimits;
}

export const hasLimits = (l: JobLimits): boolean =>
  l.maxBandwidthBytesPerSec > 0 || l.maxRequestsPerSec > 0;

/**
 * The job limiters of a worker. A job's fleet-wide cap is shared equally by the live workers
 * (every worker seen on the heartbeat subject), like azcopy's per-process --cap-mbps but split:
 * the sum of the shares is the cap. A worker that has no work of the job leaves its share unused,
 * so the fleet stays under the cap, never over it (except for one burst per worker: one second's
 * worth of its share at the start).
 */
export class JobLimiters {
  readonly #byJob = new Map<string, JobLimiter>();
  #workers: number;

  constructor(liveWorkers: number) {
    this.#workers = Math.max(1, liveWorkers);
  }

  /** The job's limiter (created on first use); undefined when the job has no limits. */
  for(jobId: string, limits: JobLimits): JobLimiter | undefined {
    if (!hasLimits(limits)) return undefined;
    let limiter = this.#byJob.get(jobId);
    if (limiter === undefined) {
      const n = this.#workers;
      limiter = {
        limits,
        buckets: {
          requests:
            limits.maxRequestsPerSec > 0
              ? new TokenBucket(limits.maxRequestsPerSec / n)
              : undefined,
          bytes:
            limits.maxBandwidthBytesPerSec > 0
              ? new TokenBucket(limits.maxBandwidthBytesPerSec / n)
              : undefined,
        },
      };
      if (this.#byJob.size >= 64) this.#byJob.delete(this.#byJob.keys().next().value!);
      this.#byJob.set(jobId, limiter);
    }
    return limiter;
  }

  get(jobId: string): JobLimiter | undefined {
    return this.#byJob.get(jobId);
  }

  /** The fleet's size changed: every job's share follows. */
  setWorkers(liveWorkers: number): void {
    this.#workers = Math.max(1, liveWorkers);
    for (const { limits, buckets } of this.#byJob.values()) {
      buckets.requests?.setRate(limits.maxRequestsPerSec / this.#workers);
      buckets.bytes?.setRate(limits.maxBandwidthBytesPerSec / this.#workers);
    }
  }

  get workers(): number {
    return this.#workers;
  }

  delete(jobId: string): void {
    this.#byJob.delete(jobId);
  }
}
