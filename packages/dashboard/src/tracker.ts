import { displayPath, formatErrorLine } from "@hsmfleet/core";
import { jobReport } from "@hsmfleet/coordinator/reports";
import { JobState, jobStateName, withInFlight } from "@hsmfleet/protocol";
import type { JobStatus, WorkerHeartbeat } from "@hsmfleet/protocol";

/** The ceiling a fleet is measured against: ~7.5 GiB/s, an AMLFS/Blob account's practical limit. */
export const DEFAULT_CEILING_BYTES_PER_SECOND = 7.5 * 1024 ** 3;

export interface WorkerView {
  workerId: string;
  vmName: string;
  bytesPerSecond: number;
  bytesMoved: number;
  itemsInFlight: number;
  itemsDone: number;
  concurrency: number;
}

export interface VmView {
  vmName: string;
  workers: number;
  bytesPerSecond: number;
  bytesMoved: number;
}

export interface JobView {
  jobId: string;
  kind: string;
  state: string;
  bytesDone: number;
  bytesFound: number;
  filesDone: number;
  filesFound: number;
  errors: number;
  itemsPublished: number;
  itemsCompleted: number;
  /** The walk is still finding work, so totals (and the ETA) can still grow. */
  walking: boolean;
  /** 0..1, or null when nothing is known yet. */
  progress: number | null;
  bytesPerSecond: number;
  /** Seconds to go at the job's current rate, for what is known so far; null when idle or done. */
  etaSeconds: number | null;
  /** The job's first errors (at most ERROR_MESSAGES_SHOWN), one line each naming its path once. */
  errorMessages: string[];
}

/** Error lines shown per job. */
export const ERROR_MESSAGES_SHOWN = 3;

/**
 * The throughput chart's vertical scale. It follows the data, so a 10 MiB/s job is not a flat
 * line under a 7.5 GiB/s ceiling: the top is 1.25 × the peak of the last five minutes; when the
 * ceiling fits (the peak is at least a quarter of it) the top holds the ceiling line instead.
 */
export interface ChartScale {
  topBytesPerSecond: number;
  /** False when the ceiling is above the top: the page marks it at the top edge, off scale. */
  ceilingOnScale: boolean;
}

/** The span of history the chart draws. */
export const CHART_SPAN_MS = 5 * 60 * 1000;

export const chartScale = (
  history: ReadonlyArray<readonly [number, number]>,
  nowMs: number,
  ceiling: number,
): ChartScale => {
  const peak = Math.max(
    0,
    ...history.filter(([t]) => nowMs - t <= CHART_SPAN_MS).map(([, v]) => v),
  );
  if (peak * 4 >= ceiling)
    return { topBytesPerSecond: Math.max(ceiling * 1.15, peak * 1.1), ceilingOnScale: true };
  // 1 KiB/s at least, so an idle fleet still has an axis.
  return { topBytesPerSecond: Math.max(peak * 1.25, 1024), ceilingOnScale: false };
};

export interface Snapshot {
  atMs: number;
  ceilingBytesPerSecond: number;
  bytesPerSecond: number;
  /** bytesPerSecond / ceiling. */
  shareOfCeiling: number;
  /** [time ms, bytes/s] samples, oldest first. */
  history: Array<[number, number]>;
  chart: ChartScale;
  vms: VmView[];
  workers: WorkerView[];
  jobs: JobView[];
  /** Errors of the jobs shown. */
  errors: number;
  /** The policy engine (watermarks, last runs, last report) when the dashboard was given it. */
  policies?: unknown;
}

export interface TrackerOptions {
  /** Default DEFAULT_CEILING_BYTES_PER_SECOND. */
  ceilingBytesPerSecond?: number | undefined;
  /** History kept for the chart. Default 900 s. */
  historySeconds?: number | undefined;
  /** A worker silent this long is gone. Default 15,000 ms. */
  staleAfterMs?: number | undefined;
  /** Finished jobs still shown. Default 3. */
  finishedJobsShown?: number | undefined;
}

/** Rates are averaged over this much time: block completions are bursty, a 1 s rate flickers. */
export const RATE_WINDOW_MS = 5000;

interface Reading {
  value: number;
  atMs: number;
}

/** A rate from a cumulative counter, over the last RATE_WINDOW_MS (from the newest reading at least that old). */
class Rate {
  #readings: Reading[] = [];

  update(value: number, atMs: number): void {
    const last = this.#readings.at(-1);
    // The counter restarted (a new process): start over rather than show a negative rate.
    if (last && value < last.value) this.#readings = [];
    this.#readings.push({ value, atMs });
    while (this.#readings.length > 2 && atMs - this.#readings[1]!.atMs >= RATE_WINDOW_MS)
      this.#readings.shift();
  }

  get perSecond(): number {
    const first = this.#readings[0];
    const last = this.#readings.at(-1);
    if (!first || !last || last.atMs - first.atMs <= 0) return 0;
    return ((last.value - first.value) * 1000) / (last.atMs - first.atMs);
  }
}

/**
 * Folds worker heartbeats (cumulative bytes moved per worker) and job records into what the
 * dashboard shows: fleet throughput against the ceiling, per-VM and per-worker rates, job progress
 * and ETA. Times are this process's clock at reception, so VM clock skew does not matter.
 */
export class ThroughputTracker {
  readonly ceilingBytesPerSecond: number;
  readonly #historyMs: number;
  readonly #staleAfterMs: number;
  readonly #finishedShown: number;
  readonly #workers = new Map<string, { hb: WorkerHeartbeat; seenAtMs: number; rate: Rate }>();
  readonly #jobRates = new Map<string, Rate>();
  #jobs: JobStatus[] = [];
  readonly #history: Array<[number, number]> = [];

  constructor(options: TrackerOptions = {}) {
    this.ceilingBytesPerSecond = options.ceilingBytesPerSecond ?? DEFAULT_CEILING_BYTES_PER_SECOND;
    this.#historyMs = (options.historySeconds ?? 900) * 1000;
    this.#staleAfterMs = options.staleAfterMs ?? 15_000;
    this.#finishedShown = options.finishedJobsShown ?? 3;
  }

  heartbeat(hb: WorkerHeartbeat, nowMs = Date.now()): void {
    let w = this.#workers.get(hb.workerId);
    if (!w) {
      w = { hb, seenAtMs: nowMs, rate: new Rate() };
      this.#workers.set(hb.workerId, w);
    }
    w.hb = hb;
    w.seenAtMs = nowMs;
    w.rate.update(hb.bytesMoved, nowMs);
  }

  jobs(jobs: JobStatus[], nowMs = Date.now()): void {
    // A running job's figures include the work of its items in flight (issue 16).
    this.#jobs = jobs.map(withInFlight);
    for (const j of jobs) {
      let rate = this.#jobRates.get(j.spec.jobId);
      if (!rate) this.#jobRates.set(j.spec.jobId, (rate = new Rate()));
      rate.update(bytesDone(j), j.updatedAtMs || nowMs);
    }
  }

  /** The current state; also records a history sample. */
  snapshot(nowMs = Date.now()): Snapshot {
    const workers: WorkerView[] = [];
    for (const [id, w] of this.#workers) {
      if (nowMs - w.seenAtMs > this.#staleAfterMs) {
        this.#workers.delete(id);
        continue;
      }
      workers.push({
        workerId: id,
        vmName: w.hb.vmName,
        bytesPerSecond: w.rate.perSecond,
        bytesMoved: w.hb.bytesMoved,
        itemsInFlight: w.hb.itemsInFlight,
        itemsDone: w.hb.itemsDone,
        concurrency: w.hb.concurrency,
      });
    }
    workers.sort(
      (a, b) => a.vmName.localeCompare(b.vmName) || a.workerId.localeCompare(b.workerId),
    );
    const vms = new Map<string, VmView>();
    for (const w of workers) {
      const vm = vms.get(w.vmName) ?? {
        vmName: w.vmName,
        workers: 0,
        bytesPerSecond: 0,
        bytesMoved: 0,
      };
      vm.workers++;
      vm.bytesPerSecond += w.bytesPerSecond;
      vm.bytesMoved += w.bytesMoved;
      vms.set(w.vmName, vm);
    }
    const total = workers.reduce((n, w) => n + w.bytesPerSecond, 0);
    this.#history.push([nowMs, total]);
    while (this.#history.length > 0 && nowMs - this.#history[0]![0] > this.#historyMs)
      this.#history.shift();
    const jobs = this.#jobViews();
    return {
      atMs: nowMs,
      ceilingBytesPerSecond: this.ceilingBytesPerSecond,
      bytesPerSecond: total,
      shareOfCeiling: total / this.ceilingBytesPerSecond,
      history: [...this.#history],
      chart: chartScale(this.#history, nowMs, this.ceilingBytesPerSecond),
      vms: [...vms.values()],
      workers,
      jobs,
      errors: jobs.reduce((n, j) => n + j.errors, 0),
    };
  }

  #jobViews(): JobView[] {
    const running = this.#jobs.filter(
      (j) => j.state === JobState.Running || j.state === JobState.Cancelling,
    );
    const finished = this.#jobs
      .filter((j) => j.finishedAtMs > 0 && !running.includes(j))
      .sort((a, b) => b.finishedAtMs - a.finishedAtMs)
      .slice(0, this.#finishedShown);
    return [...running, ...finished].map((j) => this.#jobView(j));
  }

  #jobView(j: JobStatus): JobView {
    // What the job moved or found, in its kind's own counters (coordinator job-reports.ts).
    const row = jobReport(j.spec.kind).row(j);
    const done = row.bytesDone;
    const found = row.bytesFound;
    const live = j.state === JobState.Running;
    const rate = live ? (this.#jobRates.get(j.spec.jobId)?.perSecond ?? 0) : 0;
    const walking = live && j.published > j.completed;
    let progress: number | null = null;
    if (!live && j.finishedAtMs > 0) progress = 1;
    else if (row.progressByBytes && found > 0) progress = Math.min(1, done / found);
    else if (j.published > 0) progress = j.completed / j.published;
    return {
      jobId: j.spec.jobId,
      kind: row.kind,
      state: jobStateName(j.state),
      bytesDone: done,
      bytesFound: found,
      filesDone: row.filesDone,
      filesFound: row.filesFound,
      errors: row.errors,
      itemsPublished: j.published,
      itemsCompleted: j.completed,
      walking,
      progress,
      bytesPerSecond: rate,
      etaSeconds: row.progressByBytes && rate > 0 && found > done ? (found - done) / rate : null,
      errorMessages: j.errorSamples.slice(0, ERROR_MESSAGES_SHOWN).map((e) =>
        formatErrorLine({
          path: displayPath(e.path) || ".",
          operation: e.operation,
          code: e.code,
          message: e.message,
        }),
      ),
    };
  }
}

const bytesDone = (j: JobStatus): number => jobReport(j.spec.kind).row(j).bytesDone;
