/**
 * Sizes and durations as admins type them, shared by the CLI's flags and the policy file.
 * K/M/G/T/P alone are binary (as `lfs find -size` and azcopy read them); KB/MB/… decimal and
 * KiB/MiB/… binary. A duration's bare number is seconds.
 */

/** Milliseconds per duration unit. */
export const DURATION_UNITS_MS: Readonly<Record<string, number>> = {
  ms: 1,
  s: 1000,
  sec: 1000,
  m: 60_000,
  min: 60_000,
  h: 3_600_000,
  d: 86_400_000,
  w: 7 * 86_400_000,
  y: 365 * 86_400_000,
};

/** Bytes per size unit (lower case). */
export const SIZE_UNITS: Readonly<Record<string, number>> = {
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

const NUMBER_AND_UNIT = /^\s*(\d+(?:\.\d+)?)\s*([a-z]*)\s*$/i;

/** `8MiB`, `256M`, `1.5GiB`, `4096` → bytes; undefined when it does not parse or is not safe. */
export const parseSizeText = (text: string): number | undefined => {
  const m = NUMBER_AND_UNIT.exec(text);
  const per = m ? SIZE_UNITS[m[2]!.toLowerCase()] : undefined;
  if (!m || per === undefined) return undefined;
  const n = Math.round(Number(m[1]) * per);
  return Number.isSafeInteger(n) ? n : undefined;
};

/** `500ms`, `30s`, `5m`, `30min`, `1h`, `2d`, `1w`, `1y`, or seconds (`30`) → milliseconds. */
export const parseDurationText = (text: string): number | undefined => {
  const m = NUMBER_AND_UNIT.exec(text);
  const per = m ? DURATION_UNITS_MS[m[2]!.toLowerCase() || "s"] : undefined;
  return m && per !== undefined ? Math.round(Number(m[1]) * per) : undefined;
};
