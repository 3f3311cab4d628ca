/** Units of the policy file: durations, sizes, percentages (docs/policies.md "Units"). */

const DURATION_MS: Record<string, number> = {
  ms: 1,
  s: 1000,
  sec: 1000,
  min: 60_000,
  m: 60_000,
  h: 3_600_000,
  d: 86_400_000,
  w: 7 * 86_400_000,
  y: 365 * 86_400_000,
};

const SIZE_BYTES: Record<string, number> = {
  "": 1,
  b: 1,
  k: 1024,
  kb: 1000,
  kib: 1024,
  m: 1024 ** 2,
  mb: 1000 ** 2,
  mib: 1024 ** 2,
  g: 1024 ** 3,
  gb: 1000 ** 3,
  gib: 1024 ** 3,
  t: 1024 ** 4,
  tb: 1000 ** 4,
  tib: 1024 ** 4,
  p: 1024 ** 5,
  pb: 1000 ** 5,
  pib: 1024 ** 5,
};

/** `30min`, `1d`, `10s`, `1y`; a bare number is seconds. Undefined when it does not parse. */
export const parseDuration = (v: unknown): number | undefined => {
  if (typeof v === "number") return Number.isFinite(v) && v >= 0 ? v * 1000 : undefined;
  if (typeof v !== "string") return undefined;
  const m = /^\s*(\d+(?:\.\d+)?)\s*([a-z]*)\s*$/i.exec(v);
  if (!m) return undefined;
  const unit = m[2]!.toLowerCase() || "s";
  const per = DURATION_MS[unit];
  return per === undefined ? undefined : Math.round(Number(m[1]) * per);
};

/** `1MiB`, `500 GB`, `4096`; K/M/G/T alone are binary (as `lfs find -size`). */
export const parseSize = (v: unknown): number | undefined => {
  if (typeof v === "number") return Number.isSafeInteger(v) && v >= 0 ? v : undefined;
  if (typeof v !== "string") return undefined;
  const m = /^\s*(\d+(?:\.\d+)?)\s*([a-z]*)\s*$/i.exec(v);
  if (!m) return undefined;
  const per = SIZE_BYTES[m[2]!.toLowerCase()];
  if (per === undefined) return undefined;
  const n = Math.round(Number(m[1]) * per);
  return Number.isSafeInteger(n) ? n : undefined;
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
    ["y", DURATION_MS.y!],
    ["d", DURATION_MS.d!],
    ["h", DURATION_MS.h!],
    ["min", DURATION_MS.min!],
    ["s", 1000],
  ] as const)
    if (ms >= per && ms % per === 0) return `${ms / per}${unit}`;
  return `${ms}ms`;
};
