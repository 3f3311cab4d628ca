import { UsageError } from "@hsmfleet/core";

const UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/** `500ms`, `30s`, `5m`, `1h`, `2d` or plain seconds (`30`) → milliseconds. */
export const parseDuration = (text: string): number => {
  const m = /^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$/i.exec(text);
  if (!m) throw new UsageError(`"${text}" is not a duration (e.g. 500ms, 30s, 5m, 1h)`);
  return Math.round(Number(m[1]) * UNITS[(m[2] ?? "s").toLowerCase()]!);
};
