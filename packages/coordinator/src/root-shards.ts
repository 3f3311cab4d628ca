import { sealHeaders } from "@hsmfleet/bus";
import type { JetStreamClient } from "@hsmfleet/bus";
import { encodeWalkShard, subjects } from "@hsmfleet/protocol";
import type { JobStatus, WalkShard } from "@hsmfleet/protocol";

type MsgHdrs = NonNullable<Parameters<typeof sealHeaders>[3]>;

/**
 * Publishes a job's first walk shard (the root, or an import prefix), sealed with the job's key so
 * workers accept it (workers refuse unsealed items: worker item-checks.ts). Its id must be in the
 * job record's `outstanding` list, which the record got when it was made.
 */
export const publishRootShard = async (
  js: JetStreamClient,
  status: JobStatus,
  shard: WalkShard,
  headers?: MsgHdrs,
): Promise<void> => {
  const subject = subjects.walk(shard.jobId);
  const data = encodeWalkShard(shard);
  await js.publish(subject, data, {
    msgID: shard.shardId,
    headers: sealHeaders(status.spec.itemKey, subject, data, headers),
  });
};
