import test from "ava";
import { HsmFlag, PolicyEvaluator, TopK } from "@hsmfleet/core";
import type { PolicyFileFacts } from "@hsmfleet/core";
import { PolicyFileError, formatPolicyFile, parsePolicyText } from "../src/index.js";

const DAY = 86_400_000;
const NOW = Date.UTC(2026, 11, 6);

const LFSAZSYNC = `
settings:
  backend: hsm-emulation
fileclasses:
  small:
    size_max: 1MiB
  large:
    size_min: 1MiB
    exclude: ["keep/**"]
  pinned:
    path: ["*.pin", "projects/*/final/**"]
    no_release: true
  scratch:
    path: "scratch/**"
    no_archive: true
policies:
  archive-new:
    action: archive
    root: /mnt/fs
    rules:
      - name: default
        last_mod: 30min
    limits:
      rate: { count: 1000, period: 10s }
  release-lru:
    action: release
    root: /mnt/fs
    rules:
      - { name: small, classes: [small], last_access: 1y }
      - { name: large, classes: [large], last_access: 1d }
    triggers:
      usage: { of: ost, high: 85%, low: 80% }
      check_every: 1min
  remove-deleted:
    action: remove
    delay: 5min
`;

const facts = (over: Partial<PolicyFileFacts>): PolicyFileFacts => ({
  path: "a/f",
  size: 100,
  uid: 1000,
  gid: 1000,
  mtimeMs: NOW - 2 * DAY,
  atimeMs: NOW - 2 * DAY,
  flags: HsmFlag.Exists | HsmFlag.Archived,
  ...over,
});

const evaluator = (name: string) => {
  const f = parsePolicyText(LFSAZSYNC);
  const policy = f.policies.find((p) => p.name === name)!;
  return new PolicyEvaluator({
    policy,
    classes: f.classes,
    nowMs: NOW,
    topK: 10,
    backend: "hsm-emulation",
  });
};

test("lfsazsync's defaults parse and print as resolved policies", (t) => {
  const f = parsePolicyText(LFSAZSYNC);
  t.deepEqual(
    f.policies.map((p) => [p.name, p.action]),
    [
      ["archive-new", "archive"],
      ["release-lru", "release"],
      ["remove-deleted", "remove"],
    ],
  );
  const rel = f.policies[1]!;
  t.deepEqual(rel.triggers.usage, { of: "ost", highPercent: 85, lowPercent: 80 });
  t.is(rel.rules[0]!.lastAccessOlderMs, 365 * DAY);
  t.is(rel.rules[1]!.lastAccessOlderMs, DAY);
  t.deepEqual(f.policies[0]!.limits.rate, { count: 1000, bytes: 0, periodMs: 10_000 });
  t.is(f.policies[2]!.removeDelayMs, 300_000);
  const text = formatPolicyFile(f);
  t.regex(text, /rule small: small when last_access > 1y/);
  t.regex(text, /at most 1,000 actions per 10s/);
  t.regex(text, /any OST above 85% used, until 80%/);
});

test("every error names its line and key, and all of them are reported", (t) => {
  const bad = [
    "policies:", // 1
    "  p1:", // 2
    "    action: release", // 3
    "    root: /mnt/fs", // 4
    "    rules:", // 5
    "      - last_acess: 1d", // 6  typo
    "      - last_access: tomorrow", // 7  bad duration
    "      - classes: [nosuch]", // 8  unknown class
    "        last_access: 1d", // 9
    "    triggers:", // 10
    "      usage: { high: 80%, low: 85% }", // 11 low above high
  ].join("\n");
  const err = t.throws(() => parsePolicyText(bad, "p.yaml"), { instanceOf: PolicyFileError });
  const where = err.problems.map((p) => `${p.line} ${p.key}`);
  t.true(where.includes("6 policies.p1.rules[0].last_acess"), where.join("; "));
  t.true(where.includes("7 policies.p1.rules[1].last_access"), where.join("; "));
  t.true(where.includes("8 policies.p1.rules[2].classes"), where.join("; "));
  t.true(where.includes("11 policies.p1.triggers.usage.low"), where.join("; "));
  t.regex(
    err.message,
    /p\.yaml:7:\d+: policies\.p1\.rules\[1\]\.last_access: "tomorrow" is not a duration/,
  );
  t.regex(err.message, /unknown key; expected one of name, classes, last_mod, last_access/);
});

test("YAML syntax errors and a missing policies mapping are named with their line", (t) => {
  const err = t.throws(() => parsePolicyText("fileclasses:\n  a: [\n", "s.yaml"), {
    instanceOf: PolicyFileError,
  });
  t.true(
    err.problems.some((p) => p.key === "(syntax)" && p.line >= 2),
    err.message,
  );
  const none = t.throws(() => parsePolicyText("settings: {}\n"), { instanceOf: PolicyFileError });
  t.regex(none.message, /needs a `policies` mapping/);
});

test("classes: path globs, size ranges, owners, HSM state and exclusions", (t) => {
  const f = parsePolicyText(`
fileclasses:
  logs: { path: "*.log" }
  deep: { path: "projects/**/out/*" }
  mid: { size_min: 1KiB, size_max: 1MiB }
  alice: { owner: [1001], group: ["0"] }
  arch: { hsm_state: [archived, released] }
  young: { last_mod_younger: 1h }
  old: { last_access_older: 30d }
  notkeep: { path: "**", exclude: ["keep/**"] }
policies:
  p: { action: archive, root: /r, rules: [{ last_mod: 0s }] }
`);
  const e = new PolicyEvaluator({
    policy: f.policies[0]!,
    classes: f.classes,
    nowMs: NOW,
    topK: 1,
    backend: "hsm-emulation",
  });
  const names = (o: Partial<PolicyFileFacts>) => e.classesOf(facts(o)).map((c) => c.name);
  t.true(names({ path: "x/y/z.log" }).includes("logs"));
  t.false(names({ path: "x/y/z.logs" }).includes("logs"));
  t.true(names({ path: "projects/a/b/out/f" }).includes("deep"));
  t.true(names({ path: "projects/out/f" }).includes("deep"));
  t.false(names({ path: "projects/a/out/sub/f" }).includes("deep"));
  t.true(names({ size: 1024 }).includes("mid"));
  t.true(names({ size: 1024 * 1024 }).includes("mid"));
  t.false(names({ size: 1023 }).includes("mid"));
  t.false(names({ size: 1024 * 1024 + 1 }).includes("mid"));
  t.true(names({ uid: 1001, gid: 0 }).includes("alice"));
  t.false(names({ uid: 1001, gid: 5 }).includes("alice"));
  t.true(names({ flags: HsmFlag.Exists | HsmFlag.Archived }).includes("arch"));
  t.false(names({ flags: 0 }).includes("arch"));
  t.true(names({ mtimeMs: NOW - 59 * 60_000 }).includes("young"));
  t.false(names({ mtimeMs: NOW - 61 * 60_000 }).includes("young"));
  t.true(names({ atimeMs: NOW - 31 * DAY }).includes("old"));
  t.false(names({ atimeMs: NOW - 29 * DAY }).includes("old"));
  t.true(names({ path: "a/b" }).includes("notkeep"));
  t.false(names({ path: "keep/b" }).includes("notkeep"));
  t.false(names({ path: "keep" }).includes("notkeep"));
});

test("archive: new or dirty files whose last_mod is older than the rule, never no_archive", (t) => {
  const e = evaluator("archive-new");
  const min = 60_000;
  t.truthy(e.evaluate(facts({ flags: 0, mtimeMs: NOW - 31 * min })));
  t.is(e.evaluate(facts({ flags: 0, mtimeMs: NOW - 29 * min })), undefined, "too young");
  t.truthy(e.evaluate(facts({ flags: HsmFlag.Exists | HsmFlag.Archived | HsmFlag.Dirty })));
  t.is(e.evaluate(facts({ flags: HsmFlag.Exists | HsmFlag.Archived })), undefined, "clean");
  t.is(e.evaluate(facts({ flags: HsmFlag.NoArchive })), undefined, "NOARCHIVE");
  t.is(e.evaluate(facts({ flags: 0, path: "scratch/x" })), undefined, "class no_archive");
  t.is(e.evaluate(facts({ flags: 0, mtimeMs: NOW - 31 * min }))!.key, NOW - 31 * min);
});

test("release: archived clean files past their class's last_access; no_release and NORELEASE never", (t) => {
  const e = evaluator("release-lru");
  const archived = HsmFlag.Exists | HsmFlag.Archived;
  // small files: a year; large: a day.
  t.is(e.evaluate(facts({ size: 100, atimeMs: NOW - 300 * DAY })), undefined);
  t.is(e.evaluate(facts({ size: 100, atimeMs: NOW - 366 * DAY }))!.rule, "small");
  t.is(e.evaluate(facts({ size: 2 << 20, atimeMs: NOW - 2 * DAY }))!.rule, "large");
  t.is(e.evaluate(facts({ size: 2 << 20, atimeMs: NOW - DAY / 2 })), undefined);
  t.is(e.evaluate(facts({ size: 2 << 20, path: "keep/f" })), undefined, "excluded from large");
  t.is(e.evaluate(facts({ size: 2 << 20, flags: archived | HsmFlag.Dirty })), undefined, "dirty");
  t.is(e.evaluate(facts({ size: 2 << 20, flags: archived | HsmFlag.NoRelease })), undefined);
  t.is(e.evaluate(facts({ size: 2 << 20, flags: archived | HsmFlag.Released })), undefined);
  t.is(e.evaluate(facts({ size: 2 << 20, flags: 0 })), undefined, "not archived");
  t.is(e.evaluate(facts({ size: 2 << 20, path: "x/a.pin" })), undefined, "class no_release");
  t.is(e.evaluate(facts({ size: 2 << 20, atimeMs: NOW - 5 * DAY }))!.key, NOW - 5 * DAY);
});

test("hsmSizeRange: the sizes at which a policy can act, so the walk reads no HSM state elsewhere — never a verdict lost", (t) => {
  // lfsazsync's defaults: archive names no class, release covers every size: no range.
  t.is(evaluator("archive-new").hsmSizeRange(), undefined);
  t.is(evaluator("release-lru").hsmSizeRange(), undefined);
  const f = parsePolicyText(`
fileclasses:
  small: { size_max: 1KiB }
  mid: { size_min: 4KiB, size_max: 1MiB }
  big: { size_min: 1GiB }
policies:
  a: { action: archive, root: /r, rules: [{ classes: [small], last_mod: 0s }] }
  b:
    action: archive
    root: /r
    rules: [{ classes: [mid], last_mod: 0s }, { classes: [small], last_mod: 1d }]
  c: { action: archive, root: /r, rules: [{ classes: [big], last_mod: 0s }] }
  d: { action: archive, root: /r, rules: [{ classes: [big], last_mod: 0s }, { last_mod: 1d }] }
`);
  const of = (name: string) =>
    new PolicyEvaluator({
      policy: f.policies.find((p) => p.name === name)!,
      classes: f.classes,
      nowMs: NOW,
      topK: 10,
      backend: "hsm-emulation",
    });
  t.deepEqual(of("a").hsmSizeRange(), { min: 0, max: 1024 });
  t.deepEqual(of("b").hsmSizeRange(), { min: 0, max: 1 << 20 });
  t.deepEqual(of("c").hsmSizeRange(), { min: 1 << 30, max: Infinity });
  t.is(of("d").hsmSizeRange(), undefined, "a rule without classes: any size");
  // Exact: outside the range no file is acted on, whatever its HSM state, age or owner.
  for (const name of ["a", "b", "c"]) {
    const e = of(name);
    const range = e.hsmSizeRange()!;
    for (const size of [0, 1, 1024, 1025, 4096, 1 << 20, (1 << 20) + 1, 1 << 30, 2 ** 40])
      for (const flags of [0, HsmFlag.Exists | HsmFlag.Archived | HsmFlag.Dirty])
        if (size < range.min || size > range.max)
          t.is(
            e.ruleIndex(facts({ size, flags, mtimeMs: NOW - 400 * DAY })),
            -1,
            `${name} ${size}`,
          );
    t.true(
      [0, 1024, 4096, 1 << 30].some(
        (size) => e.ruleIndex(facts({ size, flags: 0, mtimeMs: NOW - 400 * DAY })) >= 0,
      ),
      `${name} acts on some file in its range`,
    );
  }
});

test("top-k keeps the K smallest keys in bounded memory", (t) => {
  const k = new TopK<number>(5, (a, b) => a < b);
  const values = Array.from({ length: 10_000 }, (_, i) => (i * 7919) % 10_000);
  for (const v of values) k.offer(v);
  t.is(k.size, 5);
  t.deepEqual(k.sorted(), [0, 1, 2, 3, 4]);
});

test("docs/policy.schema.json names exactly the keys the parser knows", async (t) => {
  const { readFile } = await import("node:fs/promises");
  const { POLICY_FILE_KEYS } = await import("../src/index.js");
  const schema = JSON.parse(
    await readFile(new URL("../../../../docs/policy.schema.json", import.meta.url), "utf8"),
  ) as { properties: Record<string, { properties?: object; additionalProperties?: unknown }> };
  type Obj = { properties: Record<string, Obj>; additionalProperties: Obj };
  const keys = (o: Obj) => Object.keys(o.properties).sort();
  const root = schema as unknown as Obj;
  const policy = root.properties.policies!.additionalProperties;
  const sorted = (k: readonly string[]) => [...k].sort();
  t.deepEqual(keys(root), sorted(POLICY_FILE_KEYS.top));
  t.deepEqual(keys(root.properties.settings!), sorted(POLICY_FILE_KEYS.settings));
  t.deepEqual(
    keys(root.properties.fileclasses!.additionalProperties),
    sorted(POLICY_FILE_KEYS.fileclass),
  );
  t.deepEqual(keys(policy), sorted(POLICY_FILE_KEYS.policy));
  t.deepEqual(
    keys((policy.properties.rules as unknown as { items: Obj }).items),
    sorted(POLICY_FILE_KEYS.rule),
  );
  t.deepEqual(keys(policy.properties.limits!), sorted(POLICY_FILE_KEYS.limits));
  t.deepEqual(keys(policy.properties.limits!.properties.rate!), sorted(POLICY_FILE_KEYS.rate));
  t.deepEqual(keys(policy.properties.triggers!), sorted(POLICY_FILE_KEYS.triggers));
  t.deepEqual(keys(policy.properties.triggers!.properties.usage!), sorted(POLICY_FILE_KEYS.usage));
  t.deepEqual(
    keys(policy.properties.triggers!.properties.user_usage!),
    sorted(POLICY_FILE_KEYS.ownerUsage),
  );
});
