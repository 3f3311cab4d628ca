/** Units of the policy file: durations, sizes, percentages (docs/policies.md "Units"). */
import { DURATION_UNITS_MS, parseDurationText, parseSizeText } from "@hsmfleet/core";

/** `30min`, `1d`, `10s`, `1y`; a bare number is seconds. Undefined when it does not parse. */
export const parseDuration = (v: unknown): number | undefined => {
  if (typeof v === "number") return Number.isFinite(v) && v >= 0 ? v * 1000 : undefined;
  return typeof v === "string" ? parseDurationText(v) : undefined;
};

/** `1MiB`, `500 GB`, `4096`; K/M/G/T alone are binary (as `lfs find -size`). */
export const parseSize = (v: unknown): number | undefined => {
  if (typeof v === "number") return Number.isSafeInteger(v) && v >= 0 ? v : undefined;
  return typeof v === "string" ? parseSizeText(v) : undefined;
};

/** `85%` or `85` (0..100). */
export const parsePercent = (v: unknown): number | undefined => {
  const n =
    typeof v === "number"
      ? v
      : typeof v === "string" && /^\s*\d+(?:\.\d+)?\s*%?\s*$/.test(v)
        ? Number(v.replace("%", ""))
        : NaN;
  return Number.isFinite(n) && n >= 0 && n <= 100 ? n : undefined;
};

/** Short human form of a duration for `policy check` (`30min`, `1d`, `1y`). */
export const formatDuration = (ms: number): string => {
  for (const [unit, per] of [
    ["y", DURATION_UNITS_MS.y!],
    ["d", DURATION_UNITS_MS.d!],
    ["h", DURATION_UNITS_MS.h!],
    ["min", DURATION_UNITS_MS.min!],
    ["s", 1000],
  ] as const)
    if (ms >= per && ms % per === 0) return `${ms / per}${unit}`;
  return `${ms}ms`;
};
