import { jetstream } from "@hsmfleet/bus";
import type { JobStore, NatsConnection, RootLocks } from "@hsmfleet/bus";
import { UsageError } from "@hsmfleet/core";
import { JobState, WORK_STREAM, subjects } from "@hsmfleet/protocol";
import type { JobStatus } from "@hsmfleet/protocol";
import type { Logger } from "@hsmfleet/telemetry";
import { COORDINATOR_STALE_MS } from "./job-follower.js";

export interface RootClaim {
  /** The job this run carries on with (its coordinator died), or undefined for a new job. */
  resumed: JobStatus | undefined;
  release(): Promise<void>;
}

/**
 * Only one import/export/restore job per file-system root at a time. Takes the root's lock for
 * `jobId`; when another job holds it: refused while that job's coordinator is alive; taken over
 * (the same job resumed) when it is the same job (`sameJob`) and its coordinator is gone;
 * otherwise the stale job is marked failed, its queued work dropped, and the lock taken over.
 */
export const claimRoot = async (o: {
  nc: NatsConnection;
  store: JobStore;
  locks: RootLocks;
  root: string;
  jobId: string;
  /** Whether the holder is the very job this command would start (same kind and arguments). */
  sameJob: (holder: JobStatus) => boolean;
  what: string;
  logger?: Logger | undefined;
}): Promise<RootClaim> => {
  const rootBytes = Buffer.from(o.root);
  const lock = await o.locks.acquire(rootBytes, o.jobId);
  let resumed: JobStatus | undefined;
  if (!lock.acquired) {
    const holder = await o.store.get(lock.holder);
    const alive =
      holder !== undefined &&
      holder.state === JobState.Running &&
      Date.now() - holder.updatedAtMs < COORDINATOR_STALE_MS;
    if (alive) {
      const silentFor = Math.round((Date.now() - holder.updatedAtMs) / 1000);
      const takeOverIn = Math.ceil(
        (COORDINATOR_STALE_MS - (Date.now() - holder.updatedAtMs)) / 1000,
      );
      throw new UsageError(
        `another job (${lock.holder}) is running on ${o.root}; only one import/export/restore job per file system root at a time. ` +
          `Wait for it, or stop it with: hsmfleet cancel ${lock.holder}. ` +
          `(Its coordinator last reported ${silentFor} s ago; if it died, the same command re-run in ${takeOverIn} s takes the job over.)`,
      );
    }
    if (holder !== undefined && holder.state === JobState.Running && o.sameJob(holder)) {
      // Its coordinator died: carry on with the same job (the fleet may still be working on it).
      resumed = holder;
      o.logger?.info({ jobId: holder.spec.jobId }, `resuming ${o.what} whose coordinator stopped`);
    } else {
      if (holder !== undefined && holder.state === JobState.Running) {
        holder.state = JobState.Failed;
        holder.reason = `coordinator lost; superseded by ${o.jobId}`;
        holder.finishedAtMs = Date.now();
        await o.store.put(holder);
        const jsm = await jetstream(o.nc).jetstreamManager();
        await jsm.streams.purge(WORK_STREAM, { filter: subjects.workForJob(holder.spec.jobId) });
      }
      if (!(await o.locks.takeOver(rootBytes, lock.holder, o.jobId))) {
        throw new UsageError(`could not take the lock on ${o.root} from ${lock.holder}; try again`);
      }
    }
  }
  const owner = resumed?.spec.jobId ?? o.jobId;
  return {
    resumed,
    release: () => o.locks.release(rootBytes, owner).catch(() => undefined),
  };
};
