// The HSM action pipeline's messages: action lists, their results, progress and cancel.

export const HsmAction = {
  Archive: 20,
  Restore: 21,
  Remove: 22,
  Cancel: 23,
  Release: 100,
} as const;
export type HsmAction = (typeof HsmAction)[keyof typeof HsmAction];

export interface HsmActionItem {
  action: HsmAction;
  fid: string;
  dfid: string;
  extent: { offset: number; length: number };
  cookie: bigint;
  gid: bigint;
  data: Buffer;
  path: Buffer;
}

export interface HsmActionList {
  jobId: string;
  listId: string;
  archiveId: number;
  fsname: string;
  flags: bigint;
  items: HsmActionItem[];
  /** Partition the list was published on (hsmfleet.hsm.<partition>). */
  partition: number;
}

export const HsmItemStatus = { Done: 1, Skipped: 2, Failed: 3, Cancelled: 4 } as const;
export type HsmItemStatus = (typeof HsmItemStatus)[keyof typeof HsmItemStatus];

export interface HsmItemResult {
  fid: string;
  cookie: bigint;
  action: HsmAction;
  path: Buffer;
  status: HsmItemStatus;
  error: string;
  bytes: number;
}

/** Results of one action list; see proto/hsmfleet/v1/hsm.proto. */
export interface HsmActionResult {
  jobId: string;
  listId: string;
  workerId: string;
  attempt: number;
  items: HsmItemResult[];
}

export interface HsmProgress {
  jobId: string;
  listId: string;
  fid: string;
  action: HsmAction;
  bytesDone: number;
  bytesTotal: number;
  workerId: string;
}

export interface HsmCancel {
  fids: string[];
  cookie: bigint;
  /** The job whose seal the message carries (workers ignore a cancel without a valid one). */
  jobId: string;
}
