import type { BlobContainer } from "@hsmfleet/blob";
import type { RequestConcurrency, RequestPacing } from "@hsmfleet/blob/targets";
import type { BlobServiceClient } from "@azure/storage-blob";
import { DependencyError } from "@hsmfleet/core";
import type { JobStatus } from "@hsmfleet/protocol";
import type { ResolvedWorkerOptions } from "../options.js";
import type { JobLimiters } from "./job-limits.js";

/**
 * The worker's container clients (the Azure SDK loads on first use): requests take the worker's
 * request slots; a job with fleet-wide limits gets clients of its own that also pay its buckets.
 */
export class BlobContainers {
  readonly #options: ResolvedWorkerOptions;
  /** Request slots shared by all transfers of this worker, and their controller. */
  readonly #requests: RequestConcurrency;
  readonly #limiters: JobLimiters;
  readonly #containers = new Map<string, BlobContainer>();
  #blobService: BlobServiceClient | undefined;

  constructor(options: ResolvedWorkerOptions, requests: RequestConcurrency, limiters: JobLimiters) {
    this.#options = options;
    this.#requests = requests;
    this.#limiters = limiters;
  }

  /** The job's container, through this worker's own credentials (the Azure SDK loads on first use). */
  container(job: JobStatus): Promise<BlobContainer> {
    return this.containerNamed(job.spec.container, job);
  }

  /**
   * A container client whose requests take this worker's request slots; a job with fleet-wide
   * limits gets a client of its own whose requests also pay the job's token buckets.
   */
  async containerNamed(name: string, job: JobStatus): Promise<BlobContainer> {
    const limiter = this.#limiters.for(job.spec.jobId, job.spec.limits);
    const key = limiter === undefined ? name : `${name}\n${job.spec.jobId}`;
    let container = this.#containers.get(key);
    if (!container) {
      const { BlobContainer, createBlobServiceClient, DEFAULT_MAX_SOCKETS } =
        await import("@hsmfleet/blob");
      if (!this.#options.storage) {
        throw new DependencyError(
          `worker ${this.#options.workerId} has no storage credentials for container ${name} (start it with --storage, AZURE_STORAGE_CONNECTION_STRING, or a managed identity account URL)`,
        );
      }
      const clientOptions = (pacing: RequestPacing) => ({
        localAddress: this.#options.bindAddress,
        maxRetries: this.#options.requestRetries,
        retryDelayMs: this.#options.requestRetryDelayMs,
        maxSockets: Math.max(DEFAULT_MAX_SOCKETS, this.#requests.max),
        pacing,
      });
      const service =
        limiter === undefined
          ? (this.#blobService ??= createBlobServiceClient(
              this.#options.storage,
              clientOptions({ slots: this.#requests.slots }),
            ))
          : createBlobServiceClient(
              this.#options.storage,
              clientOptions({ slots: this.#requests.slots, limits: limiter.buckets }),
            );
      container = new BlobContainer(service.getContainerClient(name));
      // Clients of finished limited jobs go (the oldest first).
      if (this.#containers.size >= 64)
        this.#containers.delete(this.#containers.keys().next().value!);
      this.#containers.set(key, container);
    }
    return container;
  }
}
