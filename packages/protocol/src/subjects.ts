/**
 * Subject and stream names. One work-queue stream carries every work item; one limits stream
 * carries results back to coordinators; the KV bucket holds job records; heartbeats use core NATS.
 *
 *   hsmfleet.work.<jobId>.walk        WalkShard           (WORK stream, work-queue retention)
 *   hsmfleet.work.<jobId>.xfer        TransferBatch       (WORK stream; export uploads)
 *   hsmfleet.result.<jobId>.item      ItemResult          (RESULTS stream, limits retention)
 *   hsmfleet.result.<jobId>.entries   TransferBatch       (scan --list)
 *   hsmfleet.work.<jobId>.chunk       Chunk               (WORK stream; a block range of one large file)
 *   hsmfleet.work.<jobId>.restore     TransferBatch       (WORK stream; one consumer per restore job)
 *   hsmfleet.work.<jobId>.park        ParkedChildren      (WORK stream, no consumer: the children a
 *                                                          walk declaration names, kept until
 *                                                          published; see worker declarations.ts)
 *   hsmfleet.result.<jobId>.errors    ErrorBatch
 *   hsmfleet.result.<jobId>.conflicts ErrorBatch          (import conflicts: code = resolution)
 *   hsmfleet.hsm.<partition>          HsmActionList       (HSM stream, work-queue; one durable
 *                                                          consumer per partition: hsm-<partition>)
 *   hsmfleet.result.<jobId>.hsm       HsmActionResult     (RESULTS stream)
 *   hsmfleet.hsmprogress.<jobId>      HsmProgress         (core NATS; bytes done, heartbeat)
 *   hsmfleet.hsmcancel                HsmCancel           (core NATS; every worker listens)
 *   hsmfleet.hb.<workerId>            WorkerHeartbeat     (core NATS)
 *   hsmfleet.hbping                   (empty)             (core NATS; workers answer with a heartbeat)
 */
export const WORK_STREAM = "HSMFLEET_WORK";
export const RESULTS_STREAM = "HSMFLEET_RESULTS";
export const JOBS_BUCKET = "hsmfleet-jobs";
/** Outstanding work item ids of running jobs, in pages (coordinator ledger-store.ts). */
export const LEDGER_BUCKET = "hsmfleet-ledger";
export const WALK_CONSUMER = "walk";
export const TRANSFER_CONSUMER = "transfer";
export const CHUNK_CONSUMER = "chunk";
/** Which chunks of a large file are done: key <jobId>.<fileKey>, see bus ChunkTracker. */
export const CHUNKS_BUCKET = "hsmfleet-chunks";
/** One key per source root with an import/export job running: only one such job at a time. */
export const LOCKS_BUCKET = "hsmfleet-locks";
/** HSM action lists, sharded by FID hash onto partitions (work-queue retention). */
export const HSM_STREAM = "HSMFLEET_HSM";
/** Partitions when nobody chose (coordinator --partitions). */
export const HSM_DEFAULT_PARTITIONS = 16;
/** Durable pull consumer of one partition. */
export const hsmConsumerName = (partition: number): string => `hsm-${partition}`;

export const subjects = {
  workAll: "hsmfleet.work.>",
  walkAll: "hsmfleet.work.*.walk",
  walk: (jobId: string): string => `hsmfleet.work.${jobId}.walk`,
  transferAll: "hsmfleet.work.*.xfer",
  transfer: (jobId: string): string => `hsmfleet.work.${jobId}.xfer`,
  chunkAll: "hsmfleet.work.*.chunk",
  chunk: (jobId: string): string => `hsmfleet.work.${jobId}.chunk`,
  workForJob: (jobId: string): string => `hsmfleet.work.${jobId}.>`,
  restore: (jobId: string): string => `hsmfleet.work.${jobId}.restore`,
  park: (jobId: string): string => `hsmfleet.work.${jobId}.park`,
  conflicts: (jobId: string): string => `hsmfleet.result.${jobId}.conflicts`,
  resultsAll: "hsmfleet.result.>",
  resultsForJob: (jobId: string): string => `hsmfleet.result.${jobId}.>`,
  itemResult: (jobId: string): string => `hsmfleet.result.${jobId}.item`,
  entries: (jobId: string): string => `hsmfleet.result.${jobId}.entries`,
  errors: (jobId: string): string => `hsmfleet.result.${jobId}.errors`,
  hsmAll: "hsmfleet.hsm.>",
  hsmPartition: (partition: number): string => `hsmfleet.hsm.${partition}`,
  hsmResults: (jobId: string): string => `hsmfleet.result.${jobId}.hsm`,
  hsmProgress: (jobId: string): string => `hsmfleet.hsmprogress.${jobId}`,
  hsmCancel: "hsmfleet.hsmcancel",
  /** JobProgress of the items a worker runs for a job (core NATS). */
  progress: (jobId: string): string => `hsmfleet.progress.${jobId}`,
  /**
   * A job is being cancelled: workers re-read its record (the message itself is not trusted) and
   * stop its items, reporting what they finished (core NATS).
   */
  jobCancel: (jobId: string): string => `hsmfleet.jobcancel.${jobId}`,
  jobCancelAll: "hsmfleet.jobcancel.*",
  heartbeatAll: "hsmfleet.hb.*",
  heartbeat: (workerId: string): string => `hsmfleet.hb.${workerId}`,
  /** Anyone may publish here; every worker answers with a heartbeat at once. */
  heartbeatPing: "hsmfleet.hbping",
} as const;

/**
 * A restore job's own durable consumer: its max_ack_pending bounds the restore items outstanding
 * across the whole fleet (--max-inflight).
 */
export const restoreConsumer = (jobId: string): string => `restore-${jobId}`;

/** Job ids become subject tokens: letters, digits, '-' and '_' only. */
export const JOB_ID_PATTERN = /^[A-Za-z0-9_-]{1,64}$/;
