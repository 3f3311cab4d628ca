import { JobKind } from "@hsmfleet/protocol";
import type { JobReport } from "../job-report.js";
import { scanReportAs } from "../scan/scan-report.js";

/**
 * A policy run's evaluation walk shows what it walked (the scan counters); what the run did
 * (actions, bytes, suspension) is in the HSM jobs it started and in `policy run`'s summary.
 */
export const policyReport: JobReport = scanReportAs(JobKind.Policy, "policy");
