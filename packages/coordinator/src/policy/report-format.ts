import { formatNumber, SIZE_PROFILE } from "@hsmfleet/core";
import type { Tally } from "@hsmfleet/core";
import { formatBytes } from "@hsmfleet/protocol";
import type { FleetReport } from "./report-job.js";

const n = (v: number) => formatNumber(v);

const table = (title: string, head: string, rows: [string, Tally][], total: Tally): string[] => {
  const width = Math.max(head.length, ...rows.map(([k]) => k.length));
  const out = [
    `${title}:`,
    `  ${head.padEnd(width)}  ${"files".padStart(12)}  ${"bytes".padStart(10)}  ${"%bytes".padStart(6)}`,
  ];
  for (const [k, t] of rows)
    out.push(
      `  ${k.padEnd(width)}  ${n(t.count).padStart(12)}  ${formatBytes(t.bytes).padStart(10)}  ${(total.bytes > 0 ? (t.bytes * 100) / total.bytes : 0).toFixed(1).padStart(6)}`,
    );
  return out;
};

const byBytes = (m: Record<string, Tally>, names?: (k: string) => string): [string, Tally][] =>
  Object.entries(m)
    .sort((a, b) => b[1].bytes - a[1].bytes || a[0].localeCompare(b[0]))
    .map(([k, t]) => [names ? names(k) : k, t]);

/** `hsmfleet report` as tables, in the spirit of rbh-report and rbh-du. */
export const formatReport = (
  r: FleetReport,
  names?: { user?: (uid: string) => string; group?: (gid: string) => string },
): string => {
  const total = r.files;
  const lines = [
    `report ${r.jobId} of ${r.root}: ${r.state}, ${n(r.entries)} entries, ${n(total.count)} files, ${formatBytes(total.bytes)}, in ${(r.elapsedMs / 1000).toFixed(1)} s${r.errors > 0 ? `, ${n(r.errors)} errors` : ""}`,
    ...table("by HSM state", "state", byBytes(r.byState), total),
    ...table("by owner", "user", byBytes(r.byUid, names?.user), total),
    ...table("by group", "group", byBytes(r.byGid, names?.group), total),
    ...table("by file class", "class", byBytes(r.byClass), total),
    ...table(
      "size profile",
      "size",
      r.sizeProfile.map((t, i) => [SIZE_PROFILE[i]?.label ?? String(i), t] as [string, Tally]),
      total,
    ),
    "oldest files (last modification):",
    ...r.oldest.map(
      (f) =>
        `  ${new Date(f.mtimeMs).toISOString()}  ${formatBytes(f.size).padStart(10)}  ${f.path}`,
    ),
    "top directories (bytes of the files directly in them):",
    ...r.topDirs.map(
      (d) => `  ${formatBytes(d.bytes).padStart(10)}  ${n(d.count).padStart(10)} files  ${d.path}`,
    ),
  ];
  return lines.join("\n");
};
