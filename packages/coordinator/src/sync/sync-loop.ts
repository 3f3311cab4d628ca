import type { BlobContainer } from "@hsmfleet/blob";
import { publishPipelined } from "@hsmfleet/bus";
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

/** A phase being applied: the oldest record it holds (the checkpoint stays before it), its paths. */
interface PhaseInFlight {
  minIndex: bigint | undefined;
  paths: Set<string>;
}

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
  /** Phases of disjoint paths applied at once, at most (renames, deletions and rescans alone). */
  maxPhasesInFlight: number;
  itemTimeoutMs: number;
  statusIntervalMs: number;
  logger: Logger | undefined;
  onStatus: ((status: SyncStatusRecord) => void) | undefined;
}

/**
 * The sync service's main loop: changes from the source are coalesced per path; ready operations
 * go out as phases to the workers, several at once when no path is in two of them (so changes to
 * one path never overtake each other; renames, due deletions and rescans alone); after each phase
 * the checkpoint moves to just before the oldest record not yet applied (pending or in flight),
 * the applied records are published on HSMFLEET_CHANGES, and the source may release them (Lustre:
 * changelog_clear).
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
  /** Phases being applied: the oldest record each holds, and the paths it touches. */
  readonly #inFlight = new Set<PhaseInFlight>();
  /** Paths of the phases being applied (a path in two at once would lose its order). */
  readonly #busy = new Map<string, number>();
  /** Checkpoint moves, one at a time and in order. */
  #advancing: Promise<void> = Promise.resolve();
  /** What ended a phase applied in the background (it ends the loop). */
  #failure: unknown = undefined;
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
        if (this.#failure !== undefined)
          throw this.#failure instanceof Error
            ? this.#failure
            : new Error(`sync ${o.name}: ${errorMessage(this.#failure)}`);
        const worked = await this.#step(dispatcher, signal);
        if (!worked) await this.#idle(signal);
      }
      await this.#drain();
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

  /**
   * Starts one phase, or applies due deletions or a rescan; false when nothing was ready (or the
   * phases in flight must end first). Phases of uploads, metadata updates and reconciliations go
   * out while earlier ones are still applied, up to `maxPhasesInFlight`, as long as no path is in
   * two at once: a path's operations still apply in record order. A rename, due deletions and a
   * rescan wait until every phase in flight has ended and run alone.
   */
  async #step(dispatcher: PhaseDispatcher, signal: AbortSignal): Promise<boolean> {
    const o = this.#o;
    const now = Date.now();
    const exclusive =
      this.#coalescer.movesPending ||
      o.state.dueDeletes(now, 1).length > 0 ||
      now - this.#lastRescanMs >= o.rescanIntervalMs;
    if (exclusive && this.#inFlight.size > 0) return false;
    if (!exclusive && this.#inFlight.size >= o.maxPhasesInFlight) return false;
    const phase = this.#coalescer.takePhase(now, o.settleMs, o.maxPhaseOps, (rel) =>
      this.#busy.has(rel.toString("latin1")),
    );
    if (phase !== undefined) {
      // In flight from here on: the checkpoint must not pass its records while its work items are
      // made (a phase that ended meanwhile moves it).
      const entry = this.#holdPhase(phase);
      let ops: SyncOp[];
      try {
        ops = await this.#phaseOps(phase, now);
      } catch (err) {
        this.#releasePhase(entry);
        throw err;
      }
      o.logger?.debug({ ops: ops.length, moves: phase.moves.length }, "sync: phase");
      if (phase.moves.length > 0) {
        // A rename runs alone: what follows it may depend on the blobs being at the new name.
        try {
          if (ops.length > 0)
            this.#fold(
              await dispatcher.run(ops, o.opsPerItem, o.itemTimeoutMs, signal),
              entry.minIndex,
            );
        } finally {
          this.#releasePhase(entry);
        }
        await this.#advanceInOrder();
      } else this.#startPhase(dispatcher, ops, entry, signal);
      return true;
    }
    if (this.#inFlight.size > 0) return false;
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
    await this.#advanceInOrder();
    if (this.#coalescer.size === 0 && this.#records.length === 0 && this.#inFlight.size === 0)
      this.#status.lastFullySynchronizedMs = now;
    return false;
  }

  /** Marks a phase taken from the coalescer as in flight: its oldest record and its paths. */
  #holdPhase(phase: Phase): PhaseInFlight {
    const paths = new Set<string>();
    for (const op of phase.ops) paths.add(op.rel.toString("latin1"));
    for (const m of phase.moves) {
      paths.add(m.from.toString("latin1"));
      paths.add(m.to.toString("latin1"));
    }
    for (const p of paths) this.#busy.set(p, (this.#busy.get(p) ?? 0) + 1);
    const entry = { minIndex: this.#phaseMin(phase), paths };
    this.#inFlight.add(entry);
    return entry;
  }

  #releasePhase(entry: PhaseInFlight): void {
    this.#inFlight.delete(entry);
    for (const p of entry.paths) {
      const n = (this.#busy.get(p) ?? 1) - 1;
      if (n === 0) this.#busy.delete(p);
      else this.#busy.set(p, n);
    }
  }

  /** Applies a phase in the background; its paths stay busy until it has ended. */
  #startPhase(
    dispatcher: PhaseDispatcher,
    ops: SyncOp[],
    entry: PhaseInFlight,
    signal: AbortSignal,
  ): void {
    const o = this.#o;
    const applied =
      ops.length > 0
        ? dispatcher.run(ops, o.opsPerItem, o.itemTimeoutMs, signal)
        : Promise.resolve(undefined);
    void applied
      .then((outcome) => {
        // Requeued paths go back before the phase stops holding the checkpoint.
        if (outcome !== undefined) this.#fold(outcome, entry.minIndex);
      })
      .finally(() => this.#releasePhase(entry))
      .then(() => this.#advanceInOrder())
      .catch((err: unknown) => {
        if (!signal.aborted) this.#failure ??= err;
      })
      .finally(() => this.#wake?.());
  }

  /** Waits until every phase in flight has ended (and moved the checkpoint). */
  async #drain(): Promise<void> {
    while (this.#inFlight.size > 0) await new Promise((r) => setTimeout(r, 10));
    await this.#advancing.catch(() => undefined);
  }

  /** Moves the checkpoint; calls are queued so that two never interleave. */
  #advanceInOrder(): Promise<void> {
    const next = this.#advancing.then(() => this.#advance());
    this.#advancing = next.catch(() => undefined);
    return next;
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
    // Each waiting deletion is its own KV key: written together, not one round trip after another.
    const deletes: Promise<void>[] = [];
    for (const op of phase.ops) {
      switch (op.kind) {
        case "delete":
          if (!o.noDelete) deletes.push(o.state.addDelete(op.rel, op.isDir, now + o.removeDelayMs));
          break;
        case "reconcile":
          ops.push({ op: "reconcile", path: op.rel, keep: o.noDelete });
          break;
        default:
          ops.push({ op: op.kind, path: op.rel });
      }
    }
    await Promise.all(deletes);
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
    let oldest = this.#coalescer.oldestIndex();
    for (const p of this.#inFlight)
      if (p.minIndex !== undefined && (oldest === undefined || p.minIndex < oldest))
        oldest = p.minIndex;
    const upTo = oldest !== undefined ? oldest - 1n : this.#lastRead;
    if (upTo === undefined) return;
    let n = 0;
    while (n < this.#records.length && BigInt(this.#records[n]!.index) <= upTo) n++;
    const applied = this.#records.slice(0, n);
    this.#records = this.#records.slice(n);
    // In order, pipelined (one round trip per window, not per record); every one stored before the
    // checkpoint moves past it.
    const subject = changesSubject(o.name);
    await publishPipelined(
      o.nc,
      applied.map((r) => ({
        subject,
        data: encodeChangeRecord(r),
        msgId: `${o.name}.${r.source}.${r.index}`,
      })),
    );
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
