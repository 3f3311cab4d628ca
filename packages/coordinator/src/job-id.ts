import { randomBytes } from "node:crypto";

/** `scan-20261121-131500-3fa2`: kind, UTC start time, random suffix. Sorts by time; safe as a subject token. */
export const newJobId = (kind: string, now = new Date()): string => {
  const iso = now.toISOString(); // 2026-11-21T13:15:00.000Z
  const stamp = `${iso.slice(0, 10).replaceAll("-", "")}-${iso.slice(11, 19).replaceAll(":", "")}`;
  return `${kind}-${stamp}-${randomBytes(2).toString("hex")}`;
};
