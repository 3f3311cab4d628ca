export { startNatsServer } from "./nats-server.js";
export type { NatsServerOptions, NatsServerFixture } from "./nats-server.js";
export { startAzurite, AZURITE_ACCOUNT_NAME, AZURITE_ACCOUNT_KEY } from "./azurite.js";
export type { AzuriteOptions, AzuriteFixture } from "./azurite.js";
export { contentOf, contentRange } from "./tree-content.js";
export { generateTree, DEFAULT_TREE_SEED, DEFAULT_TREE_SIZES, ODD_NAMES } from "./tree.js";
export type { TreeSpec, TreeManifest, TreeEntry, TreeEntryType, HsmStateSpec } from "./tree.js";
export { referenceWalk } from "./reference-walk.js";
export type { ReferenceCounts } from "./reference-walk.js";
export { tempDir } from "./temp.js";
export type { TempDir } from "./temp.js";
export { freePort, freePorts } from "./ports.js";
export { startFaultProxy, FAULT_KINDS } from "./fault-proxy.js";
export type { FaultProxy, FaultProxyOptions, FaultKind, FaultCounters } from "./fault-proxy.js";
export { startMariaDb, mariaDbUnavailable } from "./mariadb.js";
export type { MariaDbOptions, MariaDbFixture } from "./mariadb.js";
export { startNatsCluster } from "./nats-cluster.js";
export type { NatsClusterOptions, NatsClusterFixture } from "./nats-cluster.js";
export { LustreRecorder, lfsChangelogStandIn } from "./lustre-recorder.js";
export type { LfsChangelogStandIn } from "./lustre-recorder.js";
export { startServiceBusStandIn } from "./service-bus/service-bus-stand-in.js";
export type {
  ServiceBusStandIn,
  ServiceBusStandInOptions,
} from "./service-bus/service-bus-stand-in.js";
export type { StandInEntity, StandInEntityOptions } from "./service-bus/stand-in-entity.js";
export type {
  StandInQueueOptions,
  StandInSendEntityOptions,
} from "./service-bus/stand-in-namespace.js";
export { blobEvent, sequencerOf } from "./blob-events.js";
export type { BlobEventFields, BlobEventSchema } from "./blob-events.js";
