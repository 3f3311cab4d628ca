import { autoImportKind } from "./autoimport/autoimport-kind.js";
import { exportKind } from "./export/export-kind.js";
import { hsmKind } from "./hsm/hsm-kind.js";
import { importKind } from "./import/import-kind.js";
import { policyKind } from "./policy/policy-kind.js";
import { restoreKind } from "./restore/restore-kind.js";
import { syncKind } from "./sync/sync-kind.js";
import type { WorkerJobKind } from "./runtime/job-kind.js";
import { verifyKind } from "./verify/verify-kind.js";
import { scanKind } from "./walk/scan-kind.js";

/**
 * Every job kind this worker runs, each from its own folder: its handlers for the shared work
 * items (work-consumers.ts) and its own pull loops. A new kind adds one line here.
 */
export const WORKER_JOB_KINDS: readonly WorkerJobKind[] = [
  scanKind,
  exportKind,
  importKind,
  restoreKind,
  verifyKind,
  hsmKind,
  syncKind,
  policyKind,
  autoImportKind,
];
