/**
 * Lustre HSM requests and copytool actions (lustre_user.h): what a user asks for (enum
 * hsm_user_action, HUA_*), what a copytool carries out (enum hsm_copytool_action, HSMA_*), and the
 * action items/lists (struct hsm_action_item / hsm_action_list) that carry them.
 */
import { UsageError } from "./errors.js";

/** User requests (enum hsm_user_action): `lfs hsm_archive` sends HUA_ARCHIVE, and so on. */
export const HsmUserAction = {
  Archive: 10,
  Restore: 11,
  Release: 12,
  Remove: 13,
  Cancel: 14,
} as const;
export type HsmUserAction = (typeof HsmUserAction)[keyof typeof HsmUserAction];

/**
 * Copytool actions (enum hsm_copytool_action). RELEASE is not a copytool action in Lustre (the MDT
 * releases a file itself); hsmfleet carries it through the same pipeline for the emulation backend
 * and for bulk `lfs hsm_release` on Lustre, under the value the proto uses (100).
 */
export const HsmCopytoolAction = {
  None: 0,
  Archive: 20,
  Restore: 21,
  Remove: 22,
  Cancel: 23,
  Release: 100,
} as const;
export type HsmCopytoolAction = (typeof HsmCopytoolAction)[keyof typeof HsmCopytoolAction];

/** hsm_progress flags. */
export const HsmProgressFlag = { Completed: 1, Retry: 2 } as const;

/** The request words the CLI and docs use: `hsmfleet hsm archive`, … */
export type HsmRequestName = "archive" | "restore" | "release" | "remove" | "cancel";
export const HSM_REQUEST_NAMES: readonly HsmRequestName[] = [
  "archive",
  "restore",
  "release",
  "remove",
  "cancel",
];

const REQUEST_TO_USER: Record<HsmRequestName, HsmUserAction> = {
  archive: HsmUserAction.Archive,
  restore: HsmUserAction.Restore,
  release: HsmUserAction.Release,
  remove: HsmUserAction.Remove,
  cancel: HsmUserAction.Cancel,
};

/** HUA_* -> HSMA_* (what the coordinator turns a user request into). */
const USER_TO_COPYTOOL: Record<HsmUserAction, HsmCopytoolAction> = {
  [HsmUserAction.Archive]: HsmCopytoolAction.Archive,
  [HsmUserAction.Restore]: HsmCopytoolAction.Restore,
  [HsmUserAction.Release]: HsmCopytoolAction.Release,
  [HsmUserAction.Remove]: HsmCopytoolAction.Remove,
  [HsmUserAction.Cancel]: HsmCopytoolAction.Cancel,
};

export const userActionForRequest = (name: HsmRequestName): HsmUserAction => REQUEST_TO_USER[name];

export const copytoolActionForUser = (action: HsmUserAction): HsmCopytoolAction =>
  USER_TO_COPYTOOL[action];

const COPYTOOL_NAMES: Record<HsmCopytoolAction, string> = {
  [HsmCopytoolAction.None]: "NOOP",
  [HsmCopytoolAction.Archive]: "ARCHIVE",
  [HsmCopytoolAction.Restore]: "RESTORE",
  [HsmCopytoolAction.Remove]: "REMOVE",
  [HsmCopytoolAction.Cancel]: "CANCEL",
  [HsmCopytoolAction.Release]: "RELEASE",
};

/** ARCHIVE, RESTORE, … as `lctl get_param mdt.*.hsm.actions` prints them. */
export const copytoolActionName = (action: number): string =>
  COPYTOOL_NAMES[action as HsmCopytoolAction] ?? `ACTION_${action}`;

export const parseHsmRequestName = (word: string): HsmRequestName => {
  const lower = word.toLowerCase();
  if ((HSM_REQUEST_NAMES as readonly string[]).includes(lower)) return lower as HsmRequestName;
  throw new UsageError(
    `unknown HSM request ${JSON.stringify(word)}; expected one of ${HSM_REQUEST_NAMES.join(", ")}`,
  );
};

/** struct hsm_extent; length 2^64-1 (Lustre's -1) means "to the end of the file". */
export interface HsmExtent {
  offset: bigint;
  length: bigint;
}

export const WHOLE_FILE_EXTENT: HsmExtent = { offset: 0n, length: 0xffff_ffff_ffff_ffffn };

/** struct hsm_action_item plus the path the emulation backend (and fid2path) resolves. */
export interface HsmActionItem {
  action: HsmCopytoolAction;
  /** Lustre FID as `[0xseq:0xoid:0xver]`. */
  fid: string;
  /** Data FID (the volatile file a copytool restores into); equals fid here. */
  dfid: string;
  extent: HsmExtent;
  /** Unique per action on the coordinator (hai_cookie); CANCEL names the cookie it cancels. */
  cookie: bigint;
  gid: bigint;
  /** Copytool-specific data (hai_data); hsmfleet leaves it empty. */
  data: Buffer;
  /** Path relative to the root, raw bytes. */
  path: Buffer;
}

/** struct hsm_action_list: items sharing one archive id and file system. */
export interface HsmActionList {
  jobId: string;
  listId: string;
  archiveId: number;
  fsname: string;
  flags: bigint;
  items: HsmActionItem[];
}
