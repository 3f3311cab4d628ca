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
 * policy acts on it and under which rule, or returns undefined. Pure: the same facts and `nowMs`
 * give the same answer on every worker.
 */
export class PolicyEvaluator {
  readonly #classes: CompiledClass[];
  readonly #e: PolicyEvaluation;

  constructor(e: PolicyEvaluation) {
    this.#e = e;
    this.#classes = e.classes.map((cls) => ({
      cls,
      paths: cls.match.paths?.map(compileGlob),
      exclude: cls.exclude.map(compileGlob),
    }));
  }

  classesOf(f: PolicyFileFacts): FileClass[] {
    const now = this.#e.nowMs;
    return this.#classes
      .filter(
        (c) => !c.exclude.some((re) => re.test(f.path)) && matches(c.cls.match, c.paths, f, now),
      )
      .map((c) => c.cls);
  }

  evaluate(f: PolicyFileFacts): PolicyVerdict | undefined {
    const { policy, nowMs, onlyUids, onlyGids } = this.#e;
    if (!policy) return undefined;
    if (onlyUids?.length && !onlyUids.includes(f.uid)) return undefined;
    if (onlyGids?.length && !onlyGids.includes(f.gid)) return undefined;
    const action = policy.action;
    if (action === "archive" && !archivable(f.flags)) return undefined;
    if (action === "release" && !releasable(f.flags)) return undefined;
    if (action === "remove") return undefined; // removals come from the change stream
    const classes = this.classesOf(f);
    const names = classes.map((c) => c.name);
    if (action === "archive" && classes.some((c) => c.noArchive)) return undefined;
    if (action === "release" && classes.some((c) => c.noRelease)) return undefined;
    if (names.some((n) => policy.ignoreClasses.includes(n))) return undefined;
    const rule = policy.rules.find(
      (r) => r.classes.length === 0 || r.classes.some((c) => names.includes(c)),
    );
    if (!rule || !ruleHolds(rule, f, nowMs)) return undefined;
    return { rule: rule.name, classes: names, key: action === "archive" ? f.mtimeMs : f.atimeMs };
  }
}

const ruleHolds = (r: PolicyRule, f: PolicyFileFacts, now: number): boolean =>
  (r.lastModOlderMs === undefined || now - f.mtimeMs >= r.lastModOlderMs) &&
  (r.lastAccessOlderMs === undefined || now - f.atimeMs >= r.lastAccessOlderMs);
