import type { KV } from "@nats-io/kv";
import { JobState, peekJobStatus } from "@hsmfleet/protocol";

/** One job record as the bucket holds it: its key (the job id) and its encoded JobStatus. */
export interface RawJobRecord {
  jobId: string;
  value: Uint8Array;
}

export interface JobFeedSubscriber {
  onRecord(record: RawJobRecord): void;
  onLost?: ((why: string) => void) | undefined;
}

/** Opens one watch of every record (JobStore's, re-created when it ends); its stop(). */
export type OpenRecordWatch = (
  onRecord: (record: RawJobRecord) => void,
  onLost: (why: string) => void,
  /** The watch ended for good (it could not be made again). */
  onGaveUp: () => void,
) => Promise<{ stop(): void }>;

const isLive = (value: Uint8Array): boolean => {
  const { state } = peekJobStatus(value);
  return state === JobState.Running || state === JobState.Pending;
};

/**
 * One watch of the job records per bucket handle, shared by everyone in the process who follows
 * the live jobs (each worker's restore, sync and autoimport pullers: with the in-process workers
 * of a command that was six watches, each replaying every job ever kept — 0.3 CPU s per command
 * with 2,000 past jobs, issue 17). A subscriber that joins later gets the records of the jobs
 * live at that moment (kept here: only those), then every update; one that joins together with
 * the first sees the whole replay. The watch stops when its last subscriber leaves.
 */
class JobFeed {
  readonly #subscribers = new Set<JobFeedSubscriber>();
  /** Latest record of each live job (the replay for a subscriber that joins late). */
  readonly #live = new Map<string, Uint8Array>();
  readonly #opened: Promise<{ stop(): void }>;
  readonly #onEmpty: () => void;

  constructor(open: OpenRecordWatch, onEmpty: () => void) {
    this.#onEmpty = onEmpty;
    this.#opened = open(
      (record) => this.#deliver(record),
      (why) => {
        for (const s of this.#subscribers) s.onLost?.(why);
      },
      // Its subscribers were told (onLost); whoever subscribes next opens a new watch.
      () => this.#onEmpty(),
    );
  }

  async subscribe(subscriber: JobFeedSubscriber): Promise<{ stop(): void }> {
    this.#subscribers.add(subscriber);
    for (const [jobId, value] of this.#live) subscriber.onRecord({ jobId, value });
    try {
      await this.#opened;
    } catch (err) {
      this.#leave(subscriber);
      throw err;
    }
    let stopped = false;
    return {
      stop: () => {
        if (stopped) return;
        stopped = true;
        this.#leave(subscriber);
      },
    };
  }

  #deliver(record: RawJobRecord): void {
    if (isLive(record.value)) this.#live.set(record.jobId, record.value);
    else this.#live.delete(record.jobId);
    for (const s of this.#subscribers) s.onRecord(record);
  }

  #leave(subscriber: JobFeedSubscriber): void {
    if (!this.#subscribers.delete(subscriber) || this.#subscribers.size > 0) return;
    this.#onEmpty();
    this.#opened.then(
      (w) => w.stop(),
      () => undefined,
    );
  }
}

const feeds = new WeakMap<KV, JobFeed>();

/** Subscribes to the shared feed of `kv`'s job records, opening it with `open` if none runs. */
export const subscribeJobFeed = (
  kv: KV,
  open: OpenRecordWatch,
  subscriber: JobFeedSubscriber,
): Promise<{ stop(): void }> => {
  let feed = feeds.get(kv);
  if (feed === undefined) {
    const made: JobFeed = new JobFeed(open, () => {
      if (feeds.get(kv) === made) feeds.delete(kv);
    });
    feeds.set(kv, made);
    feed = made;
  }
  return feed.subscribe(subscriber);
};
