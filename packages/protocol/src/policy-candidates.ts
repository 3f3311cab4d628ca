/**
 * Policy candidates: the best files of one walk shard for a policy run (the shard's bounded
 * top-K), sent by the worker to the coordinator on the RESULTS stream before the shard's result,
 * and merged there into the run's own top-K. JSON; decoded as untrusted input.
 */

/** hsmfleet.result.<jobId>.candidates (RESULTS stream; purged when the job ends). */
export const policyCandidatesSubject = (jobId: string): string =>
  `hsmfleet.result.${jobId}.candidates`;

import type { ReportTally, Tally } from "@hsmfleet/core";

export interface PolicyCandidate {
  /** Path relative to the job root (raw bytes). */
  path: Buffer;
  size: number;
  /** The ordering key (archive: mtime ms; release: atime ms); smaller goes first. */
  key: number;
  mtimeMs: number;
  atimeMs: number;
  uid: number;
  gid: number;
  flags: number;
  rule: string;
}

export interface PolicyCandidateBatch {
  jobId: string;
  shardId: string;
  /** Every file of the shard the policy would act on, and their bytes (not only the top-K). */
  eligible: number;
  eligibleBytes: number;
  candidates: PolicyCandidate[];
  /** Report walks: the shard's tallies. */
  report?: ReportTally | undefined;
}

/** Sort order of candidates: key, then path bytes (the same answer on every process). */
export const candidateBefore = (a: PolicyCandidate, b: PolicyCandidate): boolean =>
  a.key < b.key || (a.key === b.key && Buffer.compare(a.path, b.path) < 0);

export const encodePolicyCandidates = (b: PolicyCandidateBatch): Uint8Array =>
  new TextEncoder().encode(
    JSON.stringify({
      ...b,
      candidates: b.candidates.map((c) => ({ ...c, path: c.path.toString("base64") })),
    }),
  );

const num = (v: unknown, field: string): number => {
  if (typeof v !== "number" || !Number.isFinite(v))
    throw new Error(`policy candidates: field ${field} is missing or not a number`);
  return v;
};
const str = (v: unknown, field: string): string => {
  if (typeof v !== "string") throw new Error(`policy candidates: field ${field} is not a string`);
  return v;
};

const tally = (v: unknown, field: string): Tally => {
  const t = v as Partial<Tally> | null;
  if (typeof t !== "object" || t === null)
    throw new Error(`policy candidates: ${field} is not a tally`);
  return { count: num(t.count, `${field}.count`), bytes: num(t.bytes, `${field}.bytes`) };
};
const tallies = (v: unknown, field: string): Record<string, Tally> => {
  if (typeof v !== "object" || v === null || Array.isArray(v))
    throw new Error(`policy candidates: ${field} is not a map`);
  const out: Record<string, Tally> = {};
  for (const [k, t] of Object.entries(v)) out[k] = tally(t, `${field}.${k}`);
  return out;
};
const list = (v: unknown, field: string): Record<string, unknown>[] => {
  if (!Array.isArray(v) || v.some((e) => typeof e !== "object" || e === null))
    throw new Error(`policy candidates: ${field} is not a list of objects`);
  return v as Record<string, unknown>[];
};

/** A shard's report tallies, checked field by field (untrusted input). */
const decodeReport = (v: unknown): ReportTally => {
  if (typeof v !== "object" || v === null)
    throw new Error("policy candidates: report is not an object");
  const r = v as Record<string, unknown>;
  return {
    files: tally(r.files, "report.files"),
    byState: tallies(r.byState, "report.byState"),
    byUid: tallies(r.byUid, "report.byUid"),
    byGid: tallies(r.byGid, "report.byGid"),
    residentByUid: tallies(r.residentByUid ?? {}, "report.residentByUid"),
    residentByGid: tallies(r.residentByGid ?? {}, "report.residentByGid"),
    byClass: tallies(r.byClass, "report.byClass"),
    sizeProfile: list(r.sizeProfile, "report.sizeProfile").map((t, i) =>
      tally(t, `report.sizeProfile[${i}]`),
    ),
    oldest: list(r.oldest, "report.oldest").map((f, i) => ({
      path: str(f.path, `report.oldest[${i}].path`),
      mtimeMs: num(f.mtimeMs, `report.oldest[${i}].mtimeMs`),
      size: num(f.size, `report.oldest[${i}].size`),
    })),
    topDirs: list(r.topDirs, "report.topDirs").map((d, i) => ({
      path: str(d.path, `report.topDirs[${i}].path`),
      count: num(d.count, `report.topDirs[${i}].count`),
      bytes: num(d.bytes, `report.topDirs[${i}].bytes`),
    })),
  };
};

export const decodePolicyCandidates = (data: Uint8Array): PolicyCandidateBatch => {
  const v = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(data)) as unknown;
  if (typeof v !== "object" || v === null) throw new Error("policy candidates: not an object");
  const o = v as Record<string, unknown>;
  if (!Array.isArray(o.candidates)) throw new Error("policy candidates: no candidates list");
  return {
    jobId: str(o.jobId, "jobId"),
    shardId: str(o.shardId, "shardId"),
    eligible: num(o.eligible, "eligible"),
    eligibleBytes: num(o.eligibleBytes, "eligibleBytes"),
    candidates: (o.candidates as unknown[]).map((c, i) => {
      if (typeof c !== "object" || c === null)
        throw new Error(`policy candidates: candidate ${i} is not an object`);
      const r = c as Record<string, unknown>;
      const path = Buffer.from(str(r.path, `candidates[${i}].path`), "base64");
      if (path.length === 0 || path[0] === 0x2f || path.includes(0))
        throw new Error(`policy candidates: candidate ${i} has no relative path`);
      return {
        path,
        size: num(r.size, `candidates[${i}].size`),
        key: num(r.key, `candidates[${i}].key`),
        mtimeMs: num(r.mtimeMs, `candidates[${i}].mtimeMs`),
        atimeMs: num(r.atimeMs, `candidates[${i}].atimeMs`),
        uid: num(r.uid, `candidates[${i}].uid`),
        gid: num(r.gid, `candidates[${i}].gid`),
        flags: num(r.flags, `candidates[${i}].flags`),
        rule: str(r.rule, `candidates[${i}].rule`),
      };
    }),
    ...(o.report === undefined ? {} : { report: decodeReport(o.report) }),
  };
};
