import type { BlobContainer } from "@hsmfleet/blob";
import type { MemoryBudget } from "@hsmfleet/blob/targets";
import type { JetStreamClient, NatsConnection } from "@hsmfleet/bus";
import type { JobStatus } from "@hsmfleet/protocol";
import type { Logger } from "@hsmfleet/telemetry";

/** What the HSM action runner needs from its worker. */
export interface HsmActionContext {
  nc: NatsConnection;
  js: JetStreamClient;
  workerId: string;
  /** The job record (cached); undefined or not live = the list is dropped. */
  job: (jobId: string) => Promise<JobStatus | undefined>;
  isLive: (job: JobStatus | undefined) => job is JobStatus;
  /** The job's container, or the one named (an archive copy recorded on the file). */
  container: (job: JobStatus, name?: string) => Promise<BlobContainer>;
  budget: MemoryBudget;
  blockConcurrency: number;
  /** Items of one list carried out at once. Default 32. */
  itemConcurrency?: number | undefined;
  /** Stops pulling (shutdown step 1). */
  pullSignal: AbortSignal;
  /** Aborts in-flight work (shutdown after the grace period): lists are handed back, not failed. */
  abortSignal: AbortSignal;
  /** lfs binary for lustre jobs. Default "lfs". */
  lfsPath?: string | undefined;
  onBytes?: ((n: number) => void) | undefined;
  onItems?: ((done: number, failed: number) => void) | undefined;
  logger?: Logger | undefined;
}
