/**
 * Job lifecycle events (`hsmfleet serve --events-topic`): started, progress (at most every
 * `progressIntervalMs`), and one of completed / failed / cancelled, with AMLFS's job-status state
 * names (InProgress, Completed, CompletedPartial, Failed, Canceled). The sink (a Service Bus topic
 * sender) is given by the caller; events carry no credentials, only the job's spec fields and
 * counters.
 */
import type { JobSpec } from "./job-spec.js";

export type LifecycleEventType = "started" | "progress" | "completed" | "failed" | "cancelled";
export type AmlfsJobState = "InProgress" | "Completed" | "CompletedPartial" | "Failed" | "Canceled";

export interface LifecycleEvent {
  eventType: LifecycleEventType;
  /** hsmfleet's job id (`hsmfleet status <jobId>`), empty until the job has one. */
  jobId: string;
  name: string;
  kind: JobSpec["kind"];
  path: string;
  container?: string;
  state: AmlfsJobState;
  /** ISO 8601. */
  time: string;
  startTimeUTC: string;
  endTimeUTC?: string;
  /** The job's counters as its summary or progress names them (AMLFS names for import). */
  status: Record<string, unknown>;
  statusMessage?: string;
}

export type LifecycleSink = (event: LifecycleEvent) => Promise<void>;

/** AMLFS state of an ended job from its summary's state and error count. */
export const amlfsStateOf = (state: string, errors: number): AmlfsJobState =>
  state === "cancelled"
    ? "Canceled"
    : state === "failed"
      ? "Failed"
      : errors > 0
        ? "CompletedPartial"
        : "Completed";

/** Publishes one job's events; progress is throttled, sends never overlap. */
export class JobLifecycle {
  readonly #sink: LifecycleSink;
  readonly #base: Omit<LifecycleEvent, "eventType" | "state" | "time" | "status">;
  readonly #intervalMs: number;
  #lastProgressMs = 0;
  #chain: Promise<void> = Promise.resolve();
  jobId = "";

  constructor(sink: LifecycleSink, spec: JobSpec, name: string, progressIntervalMs: number) {
    this.#sink = sink;
    this.#intervalMs = progressIntervalMs;
    this.#base = {
      jobId: "",
      name,
      kind: spec.kind,
      path: spec.path,
      ...(spec.container ? { container: spec.container } : {}),
      startTimeUTC: new Date().toISOString(),
    };
  }

  #send(
    event: Pick<LifecycleEvent, "eventType" | "state" | "status"> & Partial<LifecycleEvent>,
  ): Promise<void> {
    const full = {
      ...this.#base,
      jobId: this.jobId,
      time: new Date().toISOString(),
      ...event,
    };
    this.#chain = this.#chain.then(() => this.#sink(full));
    return this.#chain;
  }

  started(): Promise<void> {
    return this.#send({ eventType: "started", state: "InProgress", status: {} });
  }

  /** Sends a progress event unless one went out less than the interval ago. */
  progress(status: Record<string, unknown>, jobId?: string): void {
    if (jobId) this.jobId = jobId;
    const now = Date.now();
    if (now - this.#lastProgressMs < this.#intervalMs) return;
    this.#lastProgressMs = now;
    void this.#send({ eventType: "progress", state: "InProgress", status }).catch(() => undefined);
  }

  ended(
    summary: Record<string, unknown> & { state: string; jobId?: string },
    errors: number,
  ): Promise<void> {
    if (summary.jobId) this.jobId = summary.jobId;
    const state = amlfsStateOf(summary.state, errors);
    const eventType: LifecycleEventType =
      state === "Canceled" ? "cancelled" : state === "Failed" ? "failed" : "completed";
    const reason =
      typeof summary.reason === "string" && summary.reason !== ""
        ? { statusMessage: summary.reason }
        : {};
    return this.#send({
      eventType,
      state,
      status: summary,
      endTimeUTC: new Date().toISOString(),
      ...reason,
    });
  }

  failed(message: string): Promise<void> {
    return this.#send({
      eventType: "failed",
      state: "Failed",
      status: {},
      endTimeUTC: new Date().toISOString(),
      statusMessage: message,
    });
  }
}
