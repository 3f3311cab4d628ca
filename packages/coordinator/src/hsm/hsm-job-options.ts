import type { NatsConnection, TopologyOptions } from "@hsmfleet/bus";
import type { HsmRequestName } from "@hsmfleet/core";
import type { HsmBackendKind } from "@hsmfleet/fs";
import { HSM_DEFAULT_PARTITIONS } from "@hsmfleet/protocol";
import type { HsmItemResult } from "@hsmfleet/protocol";
import type { Logger } from "@hsmfleet/telemetry";
import type { HsmJobProgress } from "./hsm-summary.js";

export interface HsmJobOptions {
  nc: NatsConnection;
  request: HsmRequestName;
  /** Absolute root every path lies under (mounted at the same path on every worker VM). */
  root: string;
  /** Absolute paths of the files (a stream: millions need not sit in memory). */
  paths: AsyncIterable<Buffer> | Iterable<Buffer>;
  backend: HsmBackendKind;
  /** Xattr holding hsm_attrs. Default "trusted.hsm". */
  hsmXattr?: string | undefined;
  /** lfs binary (lustre backend: path2fid runs here). Default "lfs". */
  lfsPath?: string | undefined;
  /** Archive id (lfs --archive). Default 1. */
  archiveId?: number | undefined;
  /** Partitions to shard onto. Default 16. */
  partitions?: number | undefined;
  /** Items per action list. Default 256. */
  listMaxItems?: number | undefined;
  /**
   * On a cancel (Ctrl-C, the signal, or `hsmfleet cancel`), how long to wait at most for the lists
   * sent to report (workers stop them at once). Default 15,000 ms.
   */
  cancelDrainMs?: number | undefined;
  /** Container and prefix of the archive (emulation backend). */
  container?: string | undefined;
  prefix?: string | undefined;
  jobId?: string | undefined;
  signal?: AbortSignal | undefined;
  /** Every item's outcome, as its list's result arrives. */
  onItem?: ((item: HsmItemResult) => void) | undefined;
  /** Bytes moved by long actions (archive, restore), from the workers' progress messages. */
  onProgress?: ((p: HsmJobProgress) => void) | undefined;
  logger?: Logger | undefined;
  topology?: TopologyOptions | undefined;
}

export const HSM_JOB_DEFAULTS = {
  partitions: HSM_DEFAULT_PARTITIONS,
  listMaxItems: 256,
  archiveId: 1,
} as const;
