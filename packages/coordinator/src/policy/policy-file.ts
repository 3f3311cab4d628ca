import { readFile } from "node:fs/promises";
import { isAbsolute } from "node:path";
import { DEFAULT_HSM_XATTR, GlobSyntaxError, POLICY_HSM_STATES, compileGlob } from "@hsmfleet/core";
import type {
  ClassMatch,
  FileClass,
  PolicyAction,
  PolicyFile,
  PolicyHsmState,
  PolicyLimits,
  PolicyRule,
  PolicySettings,
  PolicyTriggers,
  ResolvedPolicy,
} from "@hsmfleet/core";
import { resolveGroup, resolveUser } from "./owner-names.js";
import { parseDuration, parsePercent, parseSize } from "./policy-units.js";
import { PolicyFileError, YamlReader } from "./yaml-reader.js";
import type { At } from "./yaml-reader.js";

/** Defaults of every optional key (docs/policies.md; the JSON schema in docs/policy.schema.json). */
export const POLICY_DEFAULTS = {
  backend: "hsm-emulation",
  hsmXattr: DEFAULT_HSM_XATTR,
  lfsPath: "lfs",
  archiveId: 1,
  container: "hsmfleet-archive",
  prefix: "",
  partitions: 16,
  maxActions: 10_000,
  maxBytes: 0,
  suspendErrorRate: 0.5,
  suspendMinActions: 20,
  checkEveryMs: 60_000,
  removeDelayMs: 5 * 60_000,
} as const;

const TOP_KEYS = ["settings", "fileclasses", "policies"] as const;
const SETTINGS_KEYS = [
  "backend",
  "hsm_xattr",
  "lfs",
  "archive_id",
  "container",
  "prefix",
  "partitions",
] as const;
const CLASS_KEYS = [
  "path",
  "exclude",
  "size_min",
  "size_max",
  "owner",
  "group",
  "last_mod_older",
  "last_mod_younger",
  "last_access_older",
  "last_access_younger",
  "hsm_state",
  "no_archive",
  "no_release",
] as const;
const POLICY_KEYS = [
  "action",
  "root",
  "rules",
  "ignore_classes",
  "limits",
  "triggers",
  "delay",
  "changes_from",
] as const;
const RULE_KEYS = ["name", "classes", "last_mod", "last_access"] as const;
const LIMIT_KEYS = [
  "rate",
  "max_actions",
  "max_bytes",
  "suspend_error_rate",
  "suspend_min_actions",
] as const;
const RATE_KEYS = ["count", "bytes", "period"] as const;
const TRIGGER_KEYS = ["periodic", "usage", "user_usage", "group_usage", "check_every"] as const;
const USAGE_KEYS = ["of", "high", "low"] as const;
const OWNER_USAGE_KEYS = ["high", "low"] as const;
const ACTIONS: readonly PolicyAction[] = ["archive", "release", "remove"];

/** Every key the parser knows, by place (docs/policy.schema.json lists the same; tested). */
export const POLICY_FILE_KEYS = {
  top: TOP_KEYS,
  settings: SETTINGS_KEYS,
  fileclass: CLASS_KEYS,
  policy: POLICY_KEYS,
  rule: RULE_KEYS,
  limits: LIMIT_KEYS,
  rate: RATE_KEYS,
  triggers: TRIGGER_KEYS,
  usage: USAGE_KEYS,
  ownerUsage: OWNER_USAGE_KEYS,
} as const;

const DURATION = "a duration (e.g. 30s, 30min, 2h, 1d, 1y)";
const SIZE = "a size (e.g. 4096, 1MiB, 500GB)";

/** Parses and validates a policy file's text; throws PolicyFileError listing every problem. */
export const parsePolicyText = (text: string, file = "policies"): PolicyFile => {
  const y = new YamlReader(text);
  const top = new Map(y.entries(y.root, TOP_KEYS));
  const settings = readSettings(y, top.get("settings"));
  const classes: FileClass[] = [];
  for (const [name, at] of y.entries(top.get("fileclasses") ?? { node: null, key: "" }))
    classes.push(readClass(y, name, at));
  const policies: ResolvedPolicy[] = [];
  const policiesAt = top.get("policies");
  if (!policiesAt || !y.present(policiesAt))
    y.problem(policiesAt ?? y.root, "a policy file needs a `policies` mapping");
  for (const [name, at] of y.entries(policiesAt ?? { node: null, key: "" })) {
    const p = readPolicy(y, name, at, new Set(classes.map((c) => c.name)));
    if (p) policies.push(p);
  }
  if (y.problems.length > 0) throw new PolicyFileError(file, y.problems);
  return { settings, classes, policies };
};

/** Reads and parses a policy file (`--policies FILE`). */
export const loadPolicyFile = async (path: string): Promise<PolicyFile> => {
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch (err) {
    throw new Error(`policy file ${path} cannot be read: ${(err as Error).message}`, {
      cause: err,
    });
  }
  return parsePolicyText(text, path);
};

const sub = (at: At, key: string): At => ({ node: undefined, key: `${at.key}.${key}` });

const readSettings = (y: YamlReader, at: At | undefined): PolicySettings => {
  const f = new Map(y.entries(at ?? { node: null, key: "settings" }, SETTINGS_KEYS));
  const get = (k: string): At => f.get(k) ?? sub(at ?? { node: null, key: "settings" }, k);
  const backend = y.string(get("backend")) ?? POLICY_DEFAULTS.backend;
  if (backend !== "hsm-emulation" && backend !== "lustre")
    y.problem(get("backend"), `${JSON.stringify(backend)} is not hsm-emulation or lustre`);
  const archiveId =
    y.parsed(
      get("archive_id"),
      (v) => (Number.isInteger(v) && (v as number) > 0 ? (v as number) : undefined),
      "a positive integer",
    ) ?? POLICY_DEFAULTS.archiveId;
  return {
    backend: backend === "lustre" ? "lustre" : "hsm-emulation",
    hsmXattr: y.string(get("hsm_xattr")) ?? POLICY_DEFAULTS.hsmXattr,
    lfsPath: y.string(get("lfs")) ?? POLICY_DEFAULTS.lfsPath,
    archiveId,
    container: y.string(get("container")) ?? POLICY_DEFAULTS.container,
    prefix: y.string(get("prefix")) ?? POLICY_DEFAULTS.prefix,
    partitions:
      y.parsed(
        get("partitions"),
        (v) =>
          Number.isInteger(v) && (v as number) > 0 && (v as number) <= 4096
            ? (v as number)
            : undefined,
        "an integer from 1 to 4096",
      ) ?? POLICY_DEFAULTS.partitions,
  };
};

const globs = (y: YamlReader, at: At): string[] | undefined => {
  const list = y.strings(at);
  for (const g of list ?? []) {
    try {
      compileGlob(g);
    } catch (err) {
      if (err instanceof GlobSyntaxError) y.problem(at, err.message);
      else throw err;
    }
  }
  return list;
};

const ids = (
  y: YamlReader,
  at: At,
  resolve: (name: string) => number | undefined,
  what: string,
) => {
  const list = y.strings(at);
  if (!list) return undefined;
  const out: number[] = [];
  for (const n of list) {
    const id = /^\d+$/.test(n) ? Number(n) : resolve(n);
    if (id === undefined) y.problem(at, `no ${what} named ${JSON.stringify(n)} on this machine`);
    else out.push(id);
  }
  return out;
};

const readClass = (y: YamlReader, name: string, at: At): FileClass => {
  const f = new Map(y.entries(at, CLASS_KEYS));
  const get = (k: string): At => f.get(k) ?? sub(at, k);
  const states = y.strings(get("hsm_state"));
  for (const s of states ?? [])
    if (!(POLICY_HSM_STATES as readonly string[]).includes(s))
      y.problem(
        get("hsm_state"),
        `${JSON.stringify(s)} is not one of ${POLICY_HSM_STATES.join(", ")}`,
      );
  const match: ClassMatch = {
    paths: globs(y, get("path")),
    minSize: y.parsed(get("size_min"), parseSize, SIZE),
    maxSize: y.parsed(get("size_max"), parseSize, SIZE),
    uids: ids(y, get("owner"), resolveUser, "user"),
    gids: ids(y, get("group"), resolveGroup, "group"),
    lastModOlderMs: y.parsed(get("last_mod_older"), parseDuration, DURATION),
    lastModYoungerMs: y.parsed(get("last_mod_younger"), parseDuration, DURATION),
    lastAccessOlderMs: y.parsed(get("last_access_older"), parseDuration, DURATION),
    lastAccessYoungerMs: y.parsed(get("last_access_younger"), parseDuration, DURATION),
    hsmStates: states as PolicyHsmState[] | undefined,
  };
  if (match.minSize !== undefined && match.maxSize !== undefined && match.minSize > match.maxSize)
    y.problem(get("size_min"), "size_min is larger than size_max");
  for (const k of Object.keys(match) as (keyof ClassMatch)[])
    if (match[k] === undefined) delete match[k];
  return {
    name,
    match,
    exclude: globs(y, get("exclude")) ?? [],
    noArchive: y.boolean(get("no_archive")) ?? false,
    noRelease: y.boolean(get("no_release")) ?? false,
  };
};

const readPolicy = (
  y: YamlReader,
  name: string,
  at: At,
  classNames: Set<string>,
): ResolvedPolicy | undefined => {
  if (!/^[A-Za-z0-9_-]+$/.test(name))
    y.problem(at, `policy name ${JSON.stringify(name)} may only hold letters, digits, - and _`);
  const f = new Map(y.entries(at, POLICY_KEYS));
  const get = (k: string): At => f.get(k) ?? sub(at, k);
  const action = y.string(get("action"));
  if (action === undefined) return y.problem(get("action"), "missing: archive, release or remove");
  if (!(ACTIONS as readonly string[]).includes(action))
    return y.problem(get("action"), `${JSON.stringify(action)} is not archive, release or remove`);
  const act = action as PolicyAction;
  const root = y.string(get("root")) ?? "";
  if (act !== "remove" && root === "") y.problem(get("root"), "missing: the tree's absolute root");
  else if (root !== "" && !isAbsolute(root)) y.problem(get("root"), `${root} is not absolute`);
  const checkClass = (c: string, where: At) => {
    if (!classNames.has(c)) y.problem(where, `no file class named ${JSON.stringify(c)}`);
  };
  const rules: PolicyRule[] = y
    .items(get("rules"))
    .map((r, i) => readRule(y, r, i, act, checkClass));
  if (act !== "remove" && rules.length === 0)
    y.problem(get("rules"), "a policy needs at least one rule");
  const ignoreClasses = y.strings(get("ignore_classes")) ?? [];
  for (const c of ignoreClasses) checkClass(c, get("ignore_classes"));
  return {
    name,
    action: act,
    root,
    rules,
    ignoreClasses,
    limits: readLimits(y, get("limits")),
    triggers: readTriggers(y, get("triggers"), act),
    removeDelayMs: y.parsed(get("delay"), parseDuration, DURATION) ?? POLICY_DEFAULTS.removeDelayMs,
    changesFrom: y.string(get("changes_from")) ?? "*",
  };
};

const readRule = (
  y: YamlReader,
  at: At,
  index: number,
  action: PolicyAction,
  checkClass: (c: string, where: At) => void,
): PolicyRule => {
  const f = new Map(y.entries(at, RULE_KEYS));
  const get = (k: string): At => f.get(k) ?? sub(at, k);
  const classes = y.strings(get("classes")) ?? [];
  for (const c of classes) checkClass(c, get("classes"));
  const rule: PolicyRule = {
    name: y.string(get("name")) ?? `rule${index + 1}`,
    classes,
    lastModOlderMs: y.parsed(get("last_mod"), parseDuration, DURATION),
    lastAccessOlderMs: y.parsed(get("last_access"), parseDuration, DURATION),
  };
  if (
    action === "release" &&
    rule.lastModOlderMs === undefined &&
    rule.lastAccessOlderMs === undefined
  )
    y.problem(at, "a release rule needs last_access (or last_mod)");
  if (
    action === "archive" &&
    rule.lastModOlderMs === undefined &&
    rule.lastAccessOlderMs === undefined
  )
    y.problem(at, "an archive rule needs last_mod (or last_access)");
  if (rule.lastModOlderMs === undefined) delete rule.lastModOlderMs;
  if (rule.lastAccessOlderMs === undefined) delete rule.lastAccessOlderMs;
  return rule;
};

const readLimits = (y: YamlReader, at: At): PolicyLimits => {
  const f = new Map(y.entries(at, LIMIT_KEYS));
  const get = (k: string): At => f.get(k) ?? sub(at, k);
  const count = (a: At) =>
    y.parsed(
      a,
      (v) => (Number.isSafeInteger(v) && (v as number) >= 0 ? (v as number) : undefined),
      "an integer >= 0",
    );
  const limits: PolicyLimits = {
    maxActions: count(get("max_actions")) ?? POLICY_DEFAULTS.maxActions,
    maxBytes: y.parsed(get("max_bytes"), parseSize, SIZE) ?? POLICY_DEFAULTS.maxBytes,
    suspendErrorRate:
      y.parsed(
        get("suspend_error_rate"),
        (v) => (typeof v === "number" && v >= 0 && v <= 1 ? v : undefined),
        "a fraction between 0 and 1",
      ) ?? POLICY_DEFAULTS.suspendErrorRate,
    suspendMinActions: count(get("suspend_min_actions")) ?? POLICY_DEFAULTS.suspendMinActions,
  };
  if (limits.maxActions === 0) y.problem(get("max_actions"), "must be at least 1");
  const rateAt = get("rate");
  if (y.present(rateAt)) {
    const r = new Map(y.entries(rateAt, RATE_KEYS));
    const rget = (k: string): At => r.get(k) ?? sub(rateAt, k);
    const rate = {
      count: count(rget("count")) ?? 0,
      bytes: y.parsed(rget("bytes"), parseSize, SIZE) ?? 0,
      periodMs: y.parsed(rget("period"), parseDuration, DURATION) ?? 0,
    };
    if (rate.periodMs <= 0) y.problem(rget("period"), "missing or 0: the rate's period");
    if (rate.count === 0 && rate.bytes === 0) y.problem(rateAt, "a rate needs count or bytes");
    limits.rate = rate;
  }
  return limits;
};

const readTriggers = (y: YamlReader, at: At, action: PolicyAction): PolicyTriggers => {
  const f = new Map(y.entries(at, TRIGGER_KEYS));
  const get = (k: string): At => f.get(k) ?? sub(at, k);
  const triggers: PolicyTriggers = {
    periodicMs: y.parsed(get("periodic"), parseDuration, DURATION) ?? 0,
    checkEveryMs:
      y.parsed(get("check_every"), parseDuration, DURATION) ?? POLICY_DEFAULTS.checkEveryMs,
  };
  const usageAt = get("usage");
  if (y.present(usageAt)) {
    const u = new Map(y.entries(usageAt, USAGE_KEYS));
    const uget = (k: string): At => u.get(k) ?? sub(usageAt, k);
    const of = y.string(uget("of")) ?? "filesystem";
    if (of !== "filesystem" && of !== "ost")
      y.problem(uget("of"), `${JSON.stringify(of)} is not filesystem or ost`);
    const high = y.parsed(uget("high"), parsePercent, "a percentage (e.g. 85%)");
    const low = y.parsed(uget("low"), parsePercent, "a percentage (e.g. 80%)");
    if (high === undefined) y.problem(uget("high"), "missing: the high watermark");
    if (low === undefined) y.problem(uget("low"), "missing: the low watermark");
    if (high !== undefined && low !== undefined && low >= high)
      y.problem(uget("low"), "must be below high");
    if (action !== "release") y.problem(usageAt, "usage watermarks only drive release policies");
    triggers.usage = {
      of: of === "ost" ? "ost" : "filesystem",
      highPercent: high ?? 100,
      lowPercent: low ?? 0,
    };
  }
  for (const by of ["user", "group"] as const) {
    const oat = get(`${by}_usage`);
    if (!y.present(oat)) continue;
    const o = new Map(y.entries(oat, OWNER_USAGE_KEYS));
    const oget = (k: string): At => o.get(k) ?? sub(oat, k);
    const high = y.parsed(oget("high"), parseSize, SIZE);
    const low = y.parsed(oget("low"), parseSize, SIZE);
    if (high === undefined) y.problem(oget("high"), "missing: bytes above which a run starts");
    if (low === undefined) y.problem(oget("low"), "missing: bytes at which the run stops");
    if (high !== undefined && low !== undefined && low >= high)
      y.problem(oget("low"), "must be below high");
    if (triggers.ownerUsage) y.problem(oat, "give user_usage or group_usage, not both");
    triggers.ownerUsage = { by, highBytes: high ?? 0, lowBytes: low ?? 0 };
  }
  return triggers;
};
