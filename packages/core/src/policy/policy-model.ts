/**
 * The resolved form of a policy file (docs/policies.md): what `hsmfleet policy check` prints, what
 * the coordinator runs and what a policy job carries to the workers (as JSON in its spec). Sizes
 * are bytes, ages milliseconds; the YAML parser (coordinator) resolves units and names.
 */

/** The HSM states a class can select, named as `hsmfleet scan` names them. */
export type PolicyHsmState = "new" | "exists" | "archived" | "dirty" | "released" | "lost";
export const POLICY_HSM_STATES: readonly PolicyHsmState[] = [
  "new",
  "exists",
  "archived",
  "dirty",
  "released",
  "lost",
];

/** Conditions a file must meet to belong to a class (all given ones must hold). */
export interface ClassMatch {
  /** Globs on the path relative to the policy root (`*` one segment, `**` any depth). */
  paths?: string[] | undefined;
  /** Size bounds in bytes, inclusive. */
  minSize?: number | undefined;
  maxSize?: number | undefined;
  /** Owners and groups, as numeric ids (names are resolved when the file is parsed). */
  uids?: number[] | undefined;
  gids?: number[] | undefined;
  /** Age of the last modification / access, in ms: older than / younger than. */
  lastModOlderMs?: number | undefined;
  lastModYoungerMs?: number | undefined;
  lastAccessOlderMs?: number | undefined;
  lastAccessYoungerMs?: number | undefined;
  hsmStates?: PolicyHsmState[] | undefined;
}

export interface FileClass {
  name: string;
  match: ClassMatch;
  /** Globs excluded from the class even when `match` holds. */
  exclude: string[];
  /** Files of this class are never archived / released by any policy. */
  noArchive: boolean;
  noRelease: boolean;
}

export type PolicyAction = "archive" | "release" | "remove";

/** One rule of a policy: the first rule whose classes hold a file decides for it. */
export interface PolicyRule {
  name: string;
  /** Class names; empty = every file (Robinhood's default rule). */
  classes: string[];
  /** archive: last modification older than this (ms). */
  lastModOlderMs?: number | undefined;
  /** release: last access older than this (ms). */
  lastAccessOlderMs?: number | undefined;
}

export interface RateLimit {
  /** Actions per period (0 = no count limit). */
  count: number;
  /** Bytes per period (0 = no byte limit). */
  bytes: number;
  periodMs: number;
}

export interface PolicyLimits {
  rate?: RateLimit | undefined;
  /** Actions per run (also the size of the per-shard and merged candidate heaps). */
  maxActions: number;
  /** Bytes per run (0 = no limit). */
  maxBytes: number;
  /** Suspend the run when failed / finished passes this (0..1) after `suspendMinActions`. */
  suspendErrorRate: number;
  suspendMinActions: number;
}

export interface UsageTrigger {
  /** What the watermarks are measured on: the whole file system, or each OST (lfs df). */
  of: "filesystem" | "ost";
  /** Percent of capacity used: a run starts above `highPercent` and stops at `lowPercent`. */
  highPercent: number;
  lowPercent: number;
}

export interface OwnerUsageTrigger {
  /** Per user (`uid`) or per group (`gid`): bytes used above `highBytes` start a run for them. */
  by: "user" | "group";
  highBytes: number;
  lowBytes: number;
}

export interface PolicyTriggers {
  /** Run every this many ms (0 = not periodic). */
  periodicMs: number;
  usage?: UsageTrigger | undefined;
  ownerUsage?: OwnerUsageTrigger | undefined;
  /** How often `policy serve` checks the usage triggers. */
  checkEveryMs: number;
}

export interface ResolvedPolicy {
  name: string;
  action: PolicyAction;
  /** Absolute root of the tree the policy walks (mounted at the same path on every worker). */
  root: string;
  rules: PolicyRule[];
  /** Classes never acted on by this policy (Robinhood's ignore_fileclass). */
  ignoreClasses: string[];
  limits: PolicyLimits;
  triggers: PolicyTriggers;
  /** remove: how long after the deletion the archive copy is deleted (ms). */
  removeDelayMs: number;
  /** remove: which sync's change stream to follow (`*` = every sync). */
  changesFrom: string;
}

export interface PolicySettings {
  backend: "hsm-emulation" | "lustre";
  hsmXattr: string;
  lfsPath: string;
  archiveId: number;
  container: string;
  prefix: string;
  /** HSM partitions the actions are sharded onto (lists of up to 256 items each). */
  partitions: number;
}

export interface PolicyFile {
  settings: PolicySettings;
  classes: FileClass[];
  policies: ResolvedPolicy[];
}

/**
 * What a policy job's workers evaluate: the classes, the one policy and the evaluation time (so
 * every worker measures ages from the same instant), carried as JSON in the job spec.
 */
export interface PolicyEvaluation {
  /** The policy evaluated; absent for a report (`hsmfleet report`: classes and tallies only). */
  policy?: ResolvedPolicy | undefined;
  /** A report walk: each shard also sends a ReportTally with lists of this many entries. */
  reportTop?: number | undefined;
  classes: FileClass[];
  nowMs: number;
  /** Candidates kept per shard (and merged by the coordinator). */
  topK: number;
  backend: PolicySettings["backend"];
  /** Per-user/group run: only files of these owners (empty = all). */
  onlyUids?: number[] | undefined;
  onlyGids?: number[] | undefined;
}
