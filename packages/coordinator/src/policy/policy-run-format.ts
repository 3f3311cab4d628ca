import { formatBytes } from "@hsmfleet/protocol";
import type { PolicyRunSummary } from "./policy-run.js";
import { formatNumber } from "@hsmfleet/core";

/** `hsmfleet policy run` output. */
export const formatPolicyRun = (s: PolicyRunSummary): string => {
  const n = (v: number) => formatNumber(v);
  const lines = [
    `policy ${s.policy} (${s.action}, ${s.mode}): walked ${n(s.entries)} entries (${n(s.files)} files) in ${(s.evaluationMs / 1000).toFixed(1)} s [${s.evaluationJob}]`,
    ...(s.walkErrors > 0 || s.evaluationState !== "succeeded"
      ? [
          `  evaluation ${s.evaluationState} with ${n(s.walkErrors)} errors (hsmfleet status ${s.evaluationJob})`,
        ]
      : []),
    `  eligible: ${n(s.eligible)} files, ${formatBytes(s.eligibleBytes)}`,
    `  selected: ${n(s.selected)} files, ${formatBytes(s.selectedBytes)} (stopped by: ${s.stoppedBy})`,
  ];
  if (s.mode === "execute")
    lines.push(
      `  ${s.action}: ${n(s.done)} done, ${n(s.skipped)} skipped, ${n(s.failed)} failed, ${formatBytes(s.bytesDone)}, in ${(s.elapsedMs / 1000).toFixed(1)} s (${s.hsmJobs.length} HSM job${s.hsmJobs.length === 1 ? "" : "s"})`,
    );
  if (s.suspended) lines.push(`  SUSPENDED: ${s.suspendReason}`);
  if (s.mode === "dry-run")
    for (const c of s.sample.slice(0, 20))
      lines.push(`  would ${s.action} ${c.path} (${formatBytes(c.size)}, rule ${c.rule})`);
  if (s.mode === "dry-run" && s.selected > 20) lines.push(`  … ${n(s.selected - 20)} more`);
  return lines.join("\n");
};
