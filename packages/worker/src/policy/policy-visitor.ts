import { EntryType, HsmFlag, ReportBuilder, TopK, hsmStateName } from "@hsmfleet/core";
import type { PolicyEvaluation, PolicyEvaluator, PolicyFileFacts } from "@hsmfleet/core";
import { dataVersionIs } from "@hsmfleet/fs";
import type { DirBatch, DirEntry } from "@hsmfleet/fs";
import {
  candidateBefore,
  emptyExportCounters,
  emptyScanCounters,
  encodePolicyCandidates,
  policyCandidatesSubject,
} from "@hsmfleet/protocol";
import type { PolicyCandidate } from "@hsmfleet/protocol";
import { countEntry, countRecord } from "../walk/scan-visitor.js";
import type { ShardScope, ShardVisitor } from "../walk/walk-shard.js";
import type { CandidateGate } from "./candidate-gate.js";

/**
 * The flags the policy sees. On hsm-emulation nothing intercepts writes, so a file written since
 * it was archived is found by its data version (size and mtime) as the backend itself finds it:
 * such a file is dirty, never a release candidate.
 */
export const effectiveFlags = (e: DirEntry, emulation: boolean): number => {
  const flags = e.hsm?.flags ?? 0;
  if (!emulation || !archivedClean(flags)) return flags;
  return versionChecked(flags, e.hsm?.archiveVersion ?? 0n, e.size, e.mtimeSec, e.mtimeNsec);
};

/** effectiveFlags of record `off` of a packed batch (its archive version read only if needed). */
const effectiveRecordFlags = (batch: DirBatch, off: number, emulation: boolean): number => {
  const flags = batch.hsmFlags(off);
  if (!emulation || !archivedClean(flags)) return flags;
  return versionChecked(
    flags,
    batch.hsmArchiveVersion(off),
    batch.size(off),
    batch.mtimeSec(off),
    batch.mtimeNsec(off),
  );
};

const archivedClean = (flags: number): boolean =>
  (flags & HsmFlag.Archived) !== 0 && (flags & HsmFlag.Dirty) === 0;

/** An archived clean file whose data changed since its archive (data version) is dirty. */
const versionChecked = (
  flags: number,
  version: bigint,
  size: number,
  mtimeSec: number,
  mtimeNsec: number,
): number => {
  if (version === 0n || dataVersionIs(size, mtimeSec, mtimeNsec, version)) return flags;
  return (flags | HsmFlag.Dirty) & ~HsmFlag.Released;
};

const EMPTY = Buffer.alloc(0);

/** Candidates per message: ~200 bytes each as JSON, well under NATS's 1 MiB max_payload. */
export const CANDIDATES_PER_MESSAGE = 2000;

/**
 * Policy: counts like a scan, evaluates every regular file against the policy, and keeps the
 * shard's best K candidates in a bounded heap — only files that also enter the worker's own top-K
 * of the job (`gate`, see candidate-gate.ts) — and at the end of the shard sends those still in
 * the gate to the coordinator (before the shard's result, so they are folded before the walk can
 * end). Per file: no allocation unless it enters the gate; the path is decoded only when a class
 * has globs or for a report.
 */
export const policyVisitor =
  (evaluation: PolicyEvaluation, evaluator: PolicyEvaluator, gate: CandidateGate) =>
  ({ shard, publisher }: ShardScope): ShardVisitor => {
    const scan = emptyScanCounters();
    const best = new TopK<PolicyCandidate>(evaluation.topK, candidateBefore);
    const emulation = evaluation.backend === "hsm-emulation";
    let eligible = 0;
    let eligibleBytes = 0;
    const report =
      evaluation.reportTop === undefined ? undefined : new ReportBuilder(evaluation.reportTop);
    // Report walks: the directory being read and its regular files (for the top directories).
    let dir = { path: "", count: 0, bytes: 0 };
    const endDirectory = () => report?.directory(dir);
    const wantPath = evaluator.usesPaths || report !== undefined;
    const ruleNames = evaluation.policy?.rules.map((r) => r.name) ?? [];
    // One facts record per shard, rewritten for each file (the evaluator reads it synchronously).
    const facts: PolicyFileFacts = {
      path: "",
      size: 0,
      uid: 0,
      gid: 0,
      mtimeMs: 0,
      atimeMs: 0,
      flags: 0,
    };
    /**
     * The file whose facts were just filled in: reported, judged by the rules, offered to the gate
     * and the shard's heap. `path` undefined: made from record `off` of `batch` only if needed.
     */
    const judge = (
      path: Buffer | undefined,
      batch: DirBatch | undefined,
      off: number,
      dirPath: Buffer,
    ): void => {
      if (report) {
        dir.count++;
        dir.bytes += facts.size;
        const state = hsmStateName({
          compat: 0,
          flags: facts.flags,
          archiveId: 0n,
          archiveVersion: 0n,
        });
        report.file(
          facts,
          state,
          evaluator.classesOf(facts).map((c) => c.name),
        );
      }
      const r = evaluator.ruleIndex(facts);
      if (r < 0) return;
      eligible++;
      eligibleBytes += facts.size;
      const key = evaluator.keyOf(facts);
      if (!gate.mayKeep(key)) return;
      path ??= batch!.path(off, dirPath);
      if (!gate.offer(key, path)) return;
      best.offer({
        path,
        size: facts.size,
        key,
        mtimeMs: facts.mtimeMs,
        atimeMs: facts.atimeMs,
        uid: facts.uid,
        gid: facts.gid,
        flags: facts.flags,
        rule: ruleNames[r]!,
      });
    };
    return {
      scan,
      export: emptyExportCounters(),
      // A report tallies every file's state; a policy needs it only where a rule can act.
      hsmSizes: report ? undefined : evaluator.hsmSizeRange(),
      beginDirectory: (d) => {
        endDirectory();
        dir = { path: d.length === 0 ? "." : d.toString("utf8"), count: 0, bytes: 0 };
        return Promise.resolve();
      },
      entry: (path, e) => {
        countEntry(scan, e);
        if (e.type !== EntryType.File || e.error) return;
        facts.path = wantPath ? path.toString("utf8") : "";
        facts.size = e.size;
        facts.uid = e.uid;
        facts.gid = e.gid;
        facts.mtimeMs = e.mtimeSec * 1000 + Math.floor(e.mtimeNsec / 1e6);
        facts.atimeMs = (e.atimeSec ?? e.mtimeSec) * 1000;
        facts.flags = effectiveFlags(e, emulation);
        judge(path, undefined, 0, EMPTY);
      },
      // The same from a packed batch: the path is made only for globs, a report, or a file that
      // may enter the gate.
      record: (batch, off, dirPath) => {
        countRecord(scan, batch, off);
        if (batch.type(off) !== EntryType.File) return;
        const path = wantPath ? batch.path(off, dirPath) : undefined;
        facts.path = path === undefined ? "" : path.toString("utf8");
        facts.size = batch.size(off);
        facts.uid = batch.uid(off);
        facts.gid = batch.gid(off);
        facts.mtimeMs = batch.mtimeSec(off) * 1000 + Math.floor(batch.mtimeNsec(off) / 1e6);
        facts.atimeMs = batch.atimeSec(off) * 1000;
        facts.flags = effectiveRecordFlags(batch, off, emulation);
        judge(path, batch, off, dirPath);
      },
      end: async () => {
        endDirectory();
        if (eligible === 0 && !report) return;
        // Several messages when the candidates are many (a message must stay under NATS's
        // max_payload): the first carries the counts and the report, every one its part of the
        // list; ids are deterministic, so a redelivered shard adds nothing.
        // Those pushed out of the gate since: K better files are known, none of the run's top-K.
        const all = best.sorted().filter((c) => gate.holds(c.path));
        for (let part = 0, from = 0; part === 0 || from < all.length; part++) {
          const candidates = all.slice(from, from + CANDIDATES_PER_MESSAGE);
          from += CANDIDATES_PER_MESSAGE;
          await publisher.publish(
            policyCandidatesSubject(shard.jobId),
            encodePolicyCandidates({
              jobId: shard.jobId,
              shardId: shard.shardId,
              eligible: part === 0 ? eligible : 0,
              eligibleBytes: part === 0 ? eligibleBytes : 0,
              candidates,
              ...(report && part === 0 ? { report: report.build() } : {}),
            }),
            `${shard.shardId}.c${part}`,
          );
        }
      },
    };
  };
