/**
 * Numbers as `Number.prototype.toLocaleString("en-US", { maximumFractionDigits })` writes them
 * (comma thousands separators, at most that many fraction digits, trailing zeros dropped, the
 * shortest decimal form of the number rounded half away from zero), without ICU: the first
 * toLocaleString of a process loads ICU's locale data, 21–31 ms of a command on the development VM
 * (issue 17: every job summary and progress line formats numbers; docs/benchmarks.md "The bundle
 * read into huge pages"). `maximumFractionDigits` (0–20) defaults to 3, as toLocaleString's does.
 */
export const formatNumber = (v: number, maximumFractionDigits = 3): string => {
  if (!Number.isFinite(v)) return Number.isNaN(v) ? "NaN" : v > 0 ? "∞" : "-∞";
  const abs = Math.abs(v);
  // Exponent forms (below 1e-6 or from 1e21): toLocaleString itself, rarely met.
  if (abs !== 0 && (abs < 1e-6 || abs >= 1e21))
    return v.toLocaleString("en-US", { maximumFractionDigits });
  const d = maximumFractionDigits;
  const s = String(abs);
  const dot = s.indexOf(".");
  let whole = dot < 0 ? s : s.slice(0, dot);
  let fraction = dot < 0 ? "" : s.slice(dot + 1);
  if (fraction.length > d) {
    const up = fraction.charCodeAt(d) >= 53; // "5"…"9": away from zero
    fraction = fraction.slice(0, d);
    if (up) {
      const digits = (BigInt(whole + fraction) + 1n).toString().padStart(d + 1, "0");
      whole = digits.slice(0, digits.length - d);
      fraction = digits.slice(digits.length - d);
    }
  }
  fraction = fraction.replace(/0+$/, "");
  const grouped = whole.replace(/\B(?=(\d{3})+$)/g, ",");
  const text = fraction === "" ? grouped : `${grouped}.${fraction}`;
  return v < 0 || Object.is(v, -0) ? `-${text}` : text;
};
