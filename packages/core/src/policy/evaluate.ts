import { HsmFlag, hsmStateName } from "../hsm-state.js";
import { compileGlob } from "./glob.js";
import type {
  ClassMatch,
  FileClass,
  PolicyEvaluation,
  PolicyHsmState,
  PolicyRule,
} from "./policy-model.js";

/** What the evaluation needs of one regular file (from the walk: lstat and trusted.hsm). */
export interface PolicyFileFacts {
  /** Path relative to the policy root, '/'-separated (names decoded as UTF-8 for the globs). */
  path: string;
  size: number;
  uid: number;
  gid: number;
  mtimeMs: number;
  atimeMs: number;
  /** HSM flags as the backend sees them (the emulation's write detection applied). */
  flags: number;
}

/** A file a policy would act on, with the key it is ordered by (smaller first). */
export interface PolicyVerdict {
  rule: string;
  /** The classes the file belongs to (every class, in file order). */
  classes: string[];
  /** archive: mtime; release: atime (oldest first). */
  key: number;
}

interface CompiledClass {
  cls: FileClass;
  paths: RegExp[] | undefined;
  exclude: RegExp[];
}

const stateOf = (flags: number): PolicyHsmState =>
  hsmStateName({ compat: 0, flags, archiveId: 0n, archiveVersion: 0n });

const matches = (m: ClassMatch, paths: RegExp[] | undefined, f: PolicyFileFacts, now: number) => {
  if (paths && !paths.some((re) => re.test(f.path))) return false;
  if (m.minSize !== undefined && f.size < m.minSize) return false;
  if (m.maxSize !== undefined && f.size > m.maxSize) return false;
  if (m.uids && !m.uids.includes(f.uid)) return false;
  if (m.gids && !m.gids.includes(f.gid)) return false;
  if (m.lastModOlderMs !== undefined && now - f.mtimeMs < m.lastModOlderMs) return false;
  if (m.lastModYoungerMs !== undefined && now - f.mtimeMs >= m.lastModYoungerMs) return false;
  if (m.lastAccessOlderMs !== undefined && now - f.atimeMs < m.lastAccessOlderMs) return false;
  if (m.lastAccessYoungerMs !== undefined && now - f.atimeMs >= m.lastAccessYoungerMs) return false;
  if (m.hsmStates && !m.hsmStates.includes(stateOf(f.flags))) return false;
  return true;
};

/** What an HSM state allows a policy to do (the same rules as hsm-transition.ts). */
export const archivable = (flags: number): boolean =>
  (flags & (HsmFlag.NoArchive | HsmFlag.Lost | HsmFlag.Released)) === 0 &&
  ((flags & HsmFlag.Archived) === 0 || (flags & HsmFlag.Dirty) !== 0);

export const releasable = (flags: number): boolean =>
  (flags & HsmFlag.Archived) !== 0 &&
  (flags & (HsmFlag.Dirty | HsmFlag.NoRelease | HsmFlag.Lost | HsmFlag.Released)) === 0;

/**
 * A compiled policy: `classesOf(file)` names a file's classes; `evaluate(file)` says whether the
 * policy acts on it and under which rule, or returns undefined; `ruleIndex(file)` answers the same
 * without allocating (the walk calls it for every regular file). Pure: the same facts and `nowMs`
 * give the same answer on every worker.
 */
export class PolicyEvaluator {
  readonly #classes: CompiledClass[];
  readonly #e: PolicyEvaluation;
  /** Per class: a file in it is never acted on by this policy (no_archive, no_release, ignored). */
  readonly #blocks: boolean[];
  /** Per rule: the indexes of the classes it names (null: every file). */
  readonly #ruleClasses: (number[] | null)[];
  /** Scratch membership of the file being evaluated (one evaluation at a time: JS is single-threaded). */
  readonly #member: Uint8Array;
  /** Whether any class looks at the path: when false, `facts.path` is never read. */
  readonly usesPaths: boolean;

  constructor(e: PolicyEvaluation) {
    this.#e = e;
    this.#classes = e.classes.map((cls) => ({
      cls,
      paths: cls.match.paths?.map(compileGlob),
      exclude: cls.exclude.map(compileGlob),
    }));
    this.usesPaths = this.#classes.some((c) => c.paths !== undefined || c.exclude.length > 0);
    this.#member = new Uint8Array(this.#classes.length);
    const p = e.policy;
    this.#blocks = e.classes.map(
      (c) =>
        p !== undefined &&
        ((p.action === "archive" && c.noArchive) ||
          (p.action === "release" && c.noRelease) ||
          p.ignoreClasses.includes(c.name)),
    );
    this.#ruleClasses = (p?.rules ?? []).map((r) =>
      r.classes.length === 0
        ? null
        : e.classes.flatMap((c, i) => (r.classes.includes(c.name) ? [i] : [])),
    );
  }

  #holds(i: number, f: PolicyFileFacts, now: number): boolean {
    const c = this.#classes[i]!;
    for (const re of c.exclude) if (re.test(f.path)) return false;
    return matches(c.cls.match, c.paths, f, now);
  }

  classesOf(f: PolicyFileFacts): FileClass[] {
    const now = this.#e.nowMs;
    const out: FileClass[] = [];
    for (let i = 0; i < this.#classes.length; i++)
      if (this.#holds(i, f, now)) out.push(this.#classes[i]!.cls);
    return out;
  }

  /**
   * The index (in `policy.rules`) of the rule under which the policy acts on `f`, or -1: the
   * same answer as `evaluate`, without building the verdict.
   */
  ruleIndex(f: PolicyFileFacts): number {
    const { policy, nowMs, onlyUids, onlyGids } = this.#e;
    if (!policy) return -1;
    if (onlyUids?.length && !onlyUids.includes(f.uid)) return -1;
    if (onlyGids?.length && !onlyGids.includes(f.gid)) return -1;
    const action = policy.action;
    if (action === "archive" && !archivable(f.flags)) return -1;
    if (action === "release" && !releasable(f.flags)) return -1;
    if (action === "remove") return -1; // removals come from the change stream
    const m = this.#member;
    for (let i = 0; i < m.length; i++) {
      const holds = this.#holds(i, f, nowMs);
      if (holds && this.#blocks[i]) return -1;
      m[i] = holds ? 1 : 0;
    }
    const rules = this.#ruleClasses;
    for (let r = 0; r < rules.length; r++) {
      const idx = rules[r]!;
      let applies = idx === null;
      if (idx !== null) for (let j = 0; j < idx.length && !applies; j++) applies = m[idx[j]!] === 1;
      if (applies) return ruleHolds(policy.rules[r]!, f, nowMs) ? r : -1;
    }
    return -1;
  }

  /**
   * The sizes at which the policy can act on a file at all: the smallest range holding every size
   * range of the classes its rules name; undefined when some rule names no class or a class
   * without a size bound (any size), or there is no policy. A file outside it gets -1 from
   * ruleIndex whatever its HSM state (no rule's class holds it), so the walk need not read its
   * state (fs DirReadOptions.hsmSizes).
   */
  hsmSizeRange(): { min: number; max: number } | undefined {
    const p = this.#e.policy;
    if (!p || this.#ruleClasses.length === 0) return undefined;
    let min = Infinity;
    let max = 0;
    for (const idx of this.#ruleClasses) {
      if (idx === null) return undefined;
      for (const i of idx) {
        const m = this.#classes[i]!.cls.match;
        min = Math.min(min, m.minSize ?? 0);
        max = Math.max(max, m.maxSize ?? Infinity);
      }
    }
    if (min === 0 && max === Infinity) return undefined;
    // A rule naming only classes that do not exist selects nothing: an empty range reads nothing.
    return min <= max ? { min, max } : { min: 0, max: 0 };
  }

  /** The ordering key of a file the policy acts on (archive: mtime; release: atime). */
  keyOf(f: PolicyFileFacts): number {
    return this.#e.policy?.action === "archive" ? f.mtimeMs : f.atimeMs;
  }

  evaluate(f: PolicyFileFacts): PolicyVerdict | undefined {
    const r = this.ruleIndex(f);
    if (r < 0) return undefined;
    return {
      rule: this.#e.policy!.rules[r]!.name,
      classes: this.classesOf(f).map((c) => c.name),
      key: this.keyOf(f),
    };
  }
}

const ruleHolds = (r: PolicyRule, f: PolicyFileFacts, now: number): boolean =>
  (r.lastModOlderMs === undefined || now - f.mtimeMs >= r.lastModOlderMs) &&
  (r.lastAccessOlderMs === undefined || now - f.atimeMs >= r.lastAccessOlderMs);
