export { connectBus, BusAuthError } from "./connection.js";
export {
  natsAuthOptions,
  describeBusAuth,
  hasBusAuth,
  redactNatsUrl,
  redactBusSecrets,
} from "./auth.js";
export type { BusAuth, NatsAuthOptions } from "./auth.js";
export type { BusConnectOptions } from "./connection.js";
export {
  ensureTopology,
  reachJetStream,
  REACH_JETSTREAM_DEADLINE_MS,
  ensureHsmPartitions,
  listHsmPartitions,
  openLedgerBucket,
  resolveTopology,
  TOPOLOGY_DEFAULTS,
  TOPOLOGY_REUSE_MS,
} from "./topology.js";
export type { TopologyOptions, ResolvedTopology, EnsuredTopology } from "./topology.js";
export { JobStore, checkJobId } from "./job-store.js";
export {
  withJetStreamRetry,
  isRetryableJetStreamError,
  jetStreamRetryCount,
  JETSTREAM_RETRY_DEFAULTS,
} from "./jetstream-retry.js";
export type { JetStreamRetryOptions } from "./jetstream-retry.js";
export { RootLocks } from "./root-lock.js";
export { WORK_CONSUMER_DEFAULTS, pullBackoffMs, runWorkConsumer } from "./work-consumer.js";
export type { Redelivery, WorkConsumerOptions } from "./work-consumer.js";
export { ResilientConsumer } from "./resilient-consumer.js";
export type { ResilientConsumerOptions } from "./resilient-consumer.js";
export { retryingPublishes } from "./retrying-publish.js";
export type { RetryingPublishOptions } from "./retrying-publish.js";
export { jetstream, jetstreamManager, JetStreamApiError } from "@nats-io/jetstream";
export type {
  JetStreamClient,
  JetStreamManager,
  JsMsg,
  ConsumerMessages,
} from "@nats-io/jetstream";
export type { NatsConnection } from "@nats-io/transport-node";
export type { KV } from "@nats-io/kv";
export { headerReader, traceHeaders } from "./trace-headers.js";
export { ensureJobConsumer, deleteJobConsumer } from "./job-consumer.js";
export type { JobConsumerOptions } from "./job-consumer.js";
export { ChunkTracker, ChunkTrackerUnavailableError } from "./chunk-tracker.js";
export type { ChunkCompletion } from "./chunk-tracker.js";
export { sealHeaders, hasValidSeal, sealingPublishes } from "./sealed-publish.js";
export type { ItemKeyLookup } from "./sealed-publish.js";
export { serverKeepsTermReason, terminateMessage, isTerminalMessageError } from "./terminate.js";
export type { TerminalMessageError } from "./terminate.js";
export { ensureSyncTopology, SYNC_BUCKET, SYNC_TOPOLOGY_DEFAULTS } from "./sync-topology.js";
export type { SyncTopologyOptions } from "./sync-topology.js";
export {
  publishPipelined,
  PipelinedPublishError,
  PIPELINED_PUBLISH_DEFAULTS,
} from "./pipelined-publish.js";
export type { PipelinedMessage, PipelinedPublishOptions } from "./pipelined-publish.js";
