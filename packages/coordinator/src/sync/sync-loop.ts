import type { BlobContainer } from "@hsmfleet/blob";
import type { JetStreamClient, NatsConnection } from "@hsmfleet/bus";
import { blobNameForPath, errorMessage, pathForBlobName } from "@hsmfleet/core";
import { changesSubject, encodeChangeRecord } from "@hsmfleet/protocol";
import type { ChangeRecord, JobStatus, SyncOp } from "@hsmfleet/protocol";
import type { Logger } from "@hsmfleet/telemetry";
import type { ChangeSource, SourceChange } from "./change-source.js";
import { Coalescer } from "./coalesce.js";
import type { Phase } from "./coalesce.js";
import { PhaseDispatcher } from "./sync-dispatch.js";
import type { PhaseOutcome } from "./sync-dispatch.js";
import type { SyncState, SyncStatusRecord } from "./sync-state.js";

export interface SyncLoopOptions {
  nc: NatsConnection;
  js: JetStreamClient;
  job: JobStatus;
  name: string;
  root: string;
  prefix: string;
  source: ChangeSource;
  state: SyncState;
  /** To list a renamed directory's blobs; without it the worker lists them. */
  container: BlobContainer | undefined;
  settleMs: number;
  removeDelayMs: number;
  noDelete: boolean;
  rescanIntervalMs: number;
  opsPerItem: number;
  maxPhaseOps: number;
  itemTimeoutMs: number;
  statusIntervalMs: number;
  logger: Logger | undefined;
  onStatus: ((status: SyncStatusRecord) => void) | undefined;
}

/**
 * The sync service's main loop: changes from the source are coalesced per path; ready operations
 * go out as phases (one at a time, so changes to one path never overtake each other) to the
 * workers; after each phase the checkpoint moves to just before the oldest record not yet
 * applied, the applied records are published on HSMFLEET_CHANGES, and the source may release
 * them (Lustre: changelog_clear).
 */
export class SyncLoop {
  readonly #o: SyncLoopOptions;
  readonly #coalescer = new Coalescer();
  /** Records read and not yet known applied, in index order. */
  #records: ChangeRecord[] = [];
  #lastRead: bigint | undefined;
  #savedIndex: bigint | undefined;
  #wake: (() => void) | undefined;
  #lastRescanMs = 0;
  readonly #status: SyncStatusRecord;

  constructor(options: SyncLoopOptions) {
    this.#o = options;
    const now = Date.now();
    this.#status = {
      name: options.name,
      jobId: options.job.spec.jobId,
      state: "starting",
      root: options.root,
      container: options.job.spec.container,
      prefix: options.prefix,
      source: options.source.name,
      recordsRead: 0,
      recordsApplied: 0,
      filesExported: 0,
      bytesExported: 0,
      directoriesExported: 0,
      symlinksExported: 0,
      metadataUpdates: 0,
      renames: 0,
      deletions: 0,
      deletionsPending: 0,
      failures: 0,
      backlog: 0,
      secondsBehind: 0,
      lastFullySynchronizedMs: 0,
      lastRescanMs: 0,
      checkpoint: {},
      startedAtMs: now,
      updatedAtMs: now,
      lastError: "",
    };
  }

  /** The status as last computed. */
  status(): SyncStatusRecord {
    return { ...this.#status };
  }

  #emit(changes: SourceChange[]): void {
    const now = Date.now();
    for (const c of changes) {
      this.#coalescer.add(c, now);
      this.#records.push(c.record);
      this.#lastRead = BigInt(c.record.index);
    }
    this.#status.recordsRead += changes.length;
    this.#wake?.();
  }

  async run(signal: AbortSignal): Promise<SyncStatusRecord> {
    const o = this.#o;
    const checkpoint = await o.state.checkpoint(o.source.name);
    this.#savedIndex = checkpoint?.index;
    this.#lastRead = checkpoint?.index;
    if (checkpoint) this.#status.checkpoint[o.source.name] = checkpoint.index.toString();
    const dispatcher = new PhaseDispatcher(
      o.nc,
      o.js,
      o.job.spec.jobId,
      o.job.spec.itemKey,
      o.logger,
    );
    let statusTimer: NodeJS.Timeout | undefined;
    try {
      await o.source.start(checkpoint, (changes) => this.#emit(changes));
      this.#lastRescanMs = Date.now();
      this.#status.state = "running";
      statusTimer = setInterval(() => void this.#saveStatus(), o.statusIntervalMs);
      while (!signal.aborted) {
        const worked = await this.#step(dispatcher, signal);
        if (!worked) await this.#idle(signal);
      }
    } catch (err) {
      if (!signal.aborted) {
        this.#status.state = "failed";
        this.#status.lastError = errorMessage(err);
        await this.#saveStatus();
        throw err;
      }
    } finally {
      if (statusTimer) clearInterval(statusTimer);
      dispatcher.close();
      await o.source.stop().catch(() => undefined);
    }
    this.#status.state = "stopped";
    await this.#saveStatus();
    return { ...this.#status };
  }

  /** One phase, due deletions or a rescan; false when nothing was ready. */
  async #step(dispatcher: PhaseDispatcher, signal: AbortSignal): Promise<boolean> {
    const o = this.#o;
    const now = Date.now();
    const phase = this.#coalescer.takePhase(now, o.settleMs, o.maxPhaseOps);
    if (phase !== undefined) {
      const minIndex = this.#phaseMin(phase);
      const ops = await this.#phaseOps(phase, now);
      o.logger?.debug({ ops: ops.length, moves: phase.moves.length }, "sync: phase");
      if (ops.length > 0)
        this.#fold(await dispatcher.run(ops, o.opsPerItem, o.itemTimeoutMs, signal), minIndex);
      await this.#advance();
      return true;
    }
    const due = o.state.dueDeletes(now, o.maxPhaseOps);
    if (due.length > 0) {
      const ops: SyncOp[] = due.map((d) => ({ op: "delete", path: d.rel, dir: d.dir }));
      this.#fold(await dispatcher.run(ops, o.opsPerItem, o.itemTimeoutMs, signal), undefined);
      await o.state.removeDeletes(due);
      return true;
    }
    if (now - this.#lastRescanMs >= o.rescanIntervalMs) {
      await this.rescan(dispatcher, signal);
      return true;
    }
    await this.#advance();
    if (this.#coalescer.size === 0 && this.#records.length === 0)
      this.#status.lastFullySynchronizedMs = now;
    return false;
  }

  /** Compares every directory the source knows with its blobs (the reconciliation scan). */
  async rescan(dispatcher: PhaseDispatcher, signal: AbortSignal): Promise<void> {
    const o = this.#o;
    const dirs = o.source.directories();
    const ops: SyncOp[] = dirs.map((path) => ({ op: "reconcile", path, keep: o.noDelete }));
    for (let i = 0; i < ops.length; i += o.maxPhaseOps)
      this.#fold(
        await dispatcher.run(
          ops.slice(i, i + o.maxPhaseOps),
          o.opsPerItem,
          o.itemTimeoutMs,
          signal,
        ),
        undefined,
      );
    this.#lastRescanMs = Date.now();
    this.#status.lastRescanMs = this.#lastRescanMs;
  }

  #phaseMin(phase: Phase): bigint | undefined {
    let min: bigint | undefined;
    for (const op of phase.ops) if (min === undefined || op.firstIndex < min) min = op.firstIndex;
    for (const m of phase.moves) if (min === undefined || m.index < min) min = m.index;
    return min;
  }

  /** The work items of a phase; deletions are stored to wait out the remove delay instead. */
  async #phaseOps(phase: Phase, now: number): Promise<SyncOp[]> {
    const o = this.#o;
    const ops: SyncOp[] = [];
    for (const op of phase.ops) {
      switch (op.kind) {
        case "delete":
          if (!o.noDelete) await o.state.addDelete(op.rel, op.isDir, now + o.removeDelayMs);
          break;
        case "reconcile":
          ops.push({ op: "reconcile", path: op.rel, keep: o.noDelete });
          break;
        default:
          ops.push({ op: op.kind, path: op.rel });
      }
    }
    for (const m of phase.moves) {
      ops.push({ op: "move", path: m.to, from: m.from });
      if (!m.isDir) continue;
      if (o.container === undefined) {
        // No credentials here: the directory's new place is compared with its blobs instead.
        ops.push({ op: "reconcile", path: m.to, keep: o.noDelete });
        ops.push({ op: "delete", path: m.from, dir: true });
        continue;
      }
      // Every blob under the former prefix is moved by its own operation, spread over the fleet.
      const oldPrefix = `${blobNameForPath(m.from, o.prefix)}/`;
      for await (const name of o.container.listNames(oldPrefix)) {
        const from = pathForBlobName(name, o.prefix);
        ops.push({ op: "move", path: Buffer.concat([m.to, from.subarray(m.from.length)]), from });
      }
    }
    return ops;
  }

  #fold(outcome: PhaseOutcome, minIndex: bigint | undefined): void {
    const c = outcome.counters;
    const s = this.#status;
    s.filesExported += c.filesExported;
    s.bytesExported += c.bytesExported;
    s.directoriesExported += c.directoriesExported;
    s.symlinksExported += c.symlinksExported;
    s.metadataUpdates += c.metadataUpdates;
    s.renames += c.renames;
    s.deletions += c.deletions;
    s.failures += c.failures;
    const now = Date.now();
    for (const rel of outcome.requeue)
      this.#coalescer.requeue(rel, minIndex ?? this.#lastRead ?? 0n, now);
    for (const f of outcome.failures.slice(0, 10))
      this.#o.logger?.warn(
        { path: f.path, operation: f.operation, err: f.message },
        "sync: change not applied",
      );
    if (outcome.failures.length > 0)
      s.lastError = `${outcome.failures[0]!.operation} ${outcome.failures[0]!.path}: ${outcome.failures[0]!.message}`;
  }

  /** Moves the checkpoint to just before the oldest record still pending and publishes the applied ones. */
  async #advance(): Promise<void> {
    const o = this.#o;
    const oldest = this.#coalescer.oldestIndex();
    const upTo = oldest !== undefined ? oldest - 1n : this.#lastRead;
    if (upTo === undefined) return;
    let n = 0;
    while (n < this.#records.length && BigInt(this.#records[n]!.index) <= upTo) n++;
    const applied = this.#records.slice(0, n);
    this.#records = this.#records.slice(n);
    for (const r of applied) {
      await o.js.publish(changesSubject(o.name), encodeChangeRecord(r), {
        msgID: `${o.name}.${r.source}.${r.index}`,
      });
    }
    this.#status.recordsApplied += applied.length;
    if (this.#savedIndex !== undefined && upTo <= this.#savedIndex) return;
    const watermarkMs = this.#records[0]?.time ?? Date.now();
    await o.state.saveCheckpoint(o.source.name, { index: upTo, watermarkMs });
    this.#savedIndex = upTo;
    this.#status.checkpoint[o.source.name] = upTo.toString();
    await o.source.release(upTo);
  }

  async #idle(signal: AbortSignal): Promise<void> {
    const next = this.#coalescer.nextSettleMs(this.#o.settleMs);
    const waitMs = Math.max(20, Math.min(1_000, next === undefined ? 1_000 : next - Date.now()));
    await new Promise<void>((resolve) => {
      const timer = setTimeout(done, waitMs);
      function done() {
        clearTimeout(timer);
        signal.removeEventListener("abort", done);
        resolve();
      }
      this.#wake = done;
      signal.addEventListener("abort", done, { once: true });
    });
    this.#wake = undefined;
  }

  async #saveStatus(): Promise<void> {
    const s = this.#status;
    const now = Date.now();
    s.backlog = this.#records.length;
    s.secondsBehind =
      this.#records.length > 0 ? Math.max(0, (now - this.#records[0]!.time) / 1000) : 0;
    s.deletionsPending = this.#o.state.pendingDeletes;
    s.updatedAtMs = now;
    this.#o.onStatus?.({ ...s });
    await this.#o.state
      .saveStatus(s)
      .catch((err: unknown) =>
        this.#o.logger?.warn({ err: errorMessage(err) }, "sync: status not saved"),
      );
  }
}
