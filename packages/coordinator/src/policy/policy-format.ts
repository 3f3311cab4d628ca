import type { FileClass, PolicyFile, ResolvedPolicy } from "@hsmfleet/core";
import { formatBytes } from "@hsmfleet/protocol";
import { formatDuration } from "./policy-units.js";
import { formatNumber } from "@hsmfleet/core";

const classLine = (c: FileClass): string => {
  const m = c.match;
  const parts: string[] = [];
  if (m.paths) parts.push(`path ${m.paths.join(" | ")}`);
  if (c.exclude.length > 0) parts.push(`not ${c.exclude.join(" | ")}`);
  if (m.minSize !== undefined) parts.push(`size >= ${formatBytes(m.minSize)}`);
  if (m.maxSize !== undefined) parts.push(`size <= ${formatBytes(m.maxSize)}`);
  if (m.uids) parts.push(`uid ${m.uids.join(",")}`);
  if (m.gids) parts.push(`gid ${m.gids.join(",")}`);
  if (m.lastModOlderMs !== undefined) parts.push(`last_mod > ${formatDuration(m.lastModOlderMs)}`);
  if (m.lastModYoungerMs !== undefined)
    parts.push(`last_mod < ${formatDuration(m.lastModYoungerMs)}`);
  if (m.lastAccessOlderMs !== undefined)
    parts.push(`last_access > ${formatDuration(m.lastAccessOlderMs)}`);
  if (m.lastAccessYoungerMs !== undefined)
    parts.push(`last_access < ${formatDuration(m.lastAccessYoungerMs)}`);
  if (m.hsmStates) parts.push(`hsm ${m.hsmStates.join("|")}`);
  if (c.noArchive) parts.push("no_archive");
  if (c.noRelease) parts.push("no_release");
  return `  ${c.name}: ${parts.length > 0 ? parts.join(", ") : "every file"}`;
};

const policyLines = (p: ResolvedPolicy): string[] => {
  const out = [`  ${p.name}: ${p.action}${p.root ? ` under ${p.root}` : ""}`];
  for (const r of p.rules) {
    const cond = [
      r.lastModOlderMs !== undefined ? `last_mod > ${formatDuration(r.lastModOlderMs)}` : "",
      r.lastAccessOlderMs !== undefined
        ? `last_access > ${formatDuration(r.lastAccessOlderMs)}`
        : "",
    ].filter((s) => s !== "");
    out.push(
      `    rule ${r.name}: ${r.classes.length > 0 ? r.classes.join(", ") : "every file"} when ${cond.join(" and ")}`,
    );
  }
  if (p.action === "archive") out.push("    order: oldest modification first");
  if (p.action === "release") out.push("    order: least recently accessed first");
  if (p.action === "remove")
    out.push(
      `    delete the archive copy ${formatDuration(p.removeDelayMs)} after the file is deleted (changes of ${p.changesFrom === "*" ? "every sync" : `sync ${p.changesFrom}`})`,
    );
  if (p.ignoreClasses.length > 0) out.push(`    ignore: ${p.ignoreClasses.join(", ")}`);
  const l = p.limits;
  const limits = [`max ${formatNumber(l.maxActions)} actions`];
  if (l.maxBytes > 0) limits.push(`max ${formatBytes(l.maxBytes)}`);
  if (l.rate) {
    const r = [
      l.rate.count > 0 ? `${formatNumber(l.rate.count)} actions` : "",
      l.rate.bytes > 0 ? formatBytes(l.rate.bytes) : "",
    ].filter((s) => s !== "");
    limits.push(`at most ${r.join(" and ")} per ${formatDuration(l.rate.periodMs)}`);
  }
  limits.push(
    `suspend above ${Math.round(l.suspendErrorRate * 100)}% errors (after ${l.suspendMinActions})`,
  );
  if (p.action !== "remove") out.push(`    limits: ${limits.join(", ")}`);
  const t = p.triggers;
  const trig: string[] = [];
  if (t.periodicMs > 0) trig.push(`every ${formatDuration(t.periodicMs)}`);
  if (t.usage)
    trig.push(
      `${t.usage.of === "ost" ? "any OST" : "file system"} above ${t.usage.highPercent}% used, until ${t.usage.lowPercent}%`,
    );
  if (t.ownerUsage)
    trig.push(
      `a ${t.ownerUsage.by} above ${formatBytes(t.ownerUsage.highBytes)}, until ${formatBytes(t.ownerUsage.lowBytes)}`,
    );
  if (p.action !== "remove")
    out.push(`    triggers: ${trig.length > 0 ? trig.join("; ") : "none (policy run only)"}`);
  return out;
};

/** `hsmfleet policy check` output: the policies as they were understood, defaults filled in. */
export const formatPolicyFile = (f: PolicyFile): string => {
  const s = f.settings;
  return [
    `settings: backend ${s.backend}, xattr ${s.hsmXattr}, archive id ${s.archiveId}, container ${s.container}${s.prefix ? `, prefix ${s.prefix}` : ""}${s.backend === "lustre" ? `, lfs ${s.lfsPath}` : ""}`,
    `file classes (${f.classes.length}):`,
    ...f.classes.map(classLine),
    `policies (${f.policies.length}):`,
    ...f.policies.flatMap(policyLines),
  ].join("\n");
};
