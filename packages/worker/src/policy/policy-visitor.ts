import { EntryType, HsmFlag, ReportBuilder, TopK, hsmStateName } from "@hsmfleet/core";
import type { PolicyEvaluation, PolicyEvaluator } from "@hsmfleet/core";
import { dataVersion } from "@hsmfleet/fs";
import type { DirEntry } from "@hsmfleet/fs";
import {
  candidateBefore,
  emptyExportCounters,
  emptyScanCounters,
  encodePolicyCandidates,
  policyCandidatesSubject,
} from "@hsmfleet/protocol";
import type { PolicyCandidate } from "@hsmfleet/protocol";
import { countEntry } from "../walk/scan-visitor.js";
import type { ShardScope, ShardVisitor } from "../walk/walk-shard.js";

/**
 * The flags the policy sees. On hsm-emulation nothing intercepts writes, so a file written since
 * it was archived is found by its data version (size and mtime) as the backend itself finds it:
 * such a file is dirty, never a release candidate.
 */
export const effectiveFlags = (e: DirEntry, emulation: boolean): number => {
  const flags = e.hsm?.flags ?? 0;
  const version = e.hsm?.archiveVersion ?? 0n;
  if (!emulation || version === 0n) return flags;
  if ((flags & HsmFlag.Archived) === 0 || (flags & HsmFlag.Dirty) !== 0) return flags;
  const now = dataVersion(
    BigInt(e.size),
    BigInt(e.mtimeSec) * 1_000_000_000n + BigInt(e.mtimeNsec),
  );
  return now === version ? flags : (flags | HsmFlag.Dirty) & ~HsmFlag.Released;
};

/** Candidates per message: ~200 bytes each as JSON, well under NATS's 1 MiB max_payload. */
export const CANDIDATES_PER_MESSAGE = 2000;

/**
 * Policy: counts like a scan, evaluates every regular file against the policy, and keeps the
 * shard's best K candidates in a bounded heap; at the end of the shard they go to the
 * coordinator (before the shard's result, so they are folded before the walk can end).
 */
export const policyVisitor =
  (evaluation: PolicyEvaluation, evaluator: PolicyEvaluator) =>
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
    return {
      scan,
      export: emptyExportCounters(),
      beginDirectory: (d) => {
        endDirectory();
        dir = { path: d.length === 0 ? "." : d.toString("utf8"), count: 0, bytes: 0 };
        return Promise.resolve();
      },
      entry: (path, e) => {
        countEntry(scan, e);
        if (e.type !== EntryType.File || e.error) return Promise.resolve();
        const facts = {
          path: path.toString("utf8"),
          size: e.size,
          uid: e.uid,
          gid: e.gid,
          mtimeMs: e.mtimeSec * 1000 + Math.floor(e.mtimeNsec / 1e6),
          atimeMs: (e.atimeSec ?? e.mtimeSec) * 1000,
          flags: effectiveFlags(e, emulation),
        };
        if (report) {
          dir.count++;
          dir.bytes += e.size;
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
        const verdict = evaluator.evaluate(facts);
        if (verdict) {
          eligible++;
          eligibleBytes += e.size;
          best.offer({ ...facts, path, key: verdict.key, rule: verdict.rule });
        }
        return Promise.resolve();
      },
      end: async () => {
        endDirectory();
        if (eligible === 0 && !report) return;
        // Several messages when the candidates are many (a message must stay under NATS's
        // max_payload): the first carries the counts and the report, every one its part of the
        // list; ids are deterministic, so a redelivered shard adds nothing.
        const all = best.sorted();
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
