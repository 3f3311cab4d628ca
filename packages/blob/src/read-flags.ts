import { constants } from "node:fs";

/**
 * Flags added to every open of a file whose data is read for an upload (export, archive): O_NOATIME
 * when running as root, so reading a file to archive it does not make it look recently used (a
 * release policy orders files by atime; Lustre's copytool opens with O_NOATIME too). Only the owner
 * or CAP_FOWNER may ask for it.
 */
export const READ_NOATIME: number =
  process.geteuid?.() === 0 ? ((constants as { O_NOATIME?: number }).O_NOATIME ?? 0) : 0;
