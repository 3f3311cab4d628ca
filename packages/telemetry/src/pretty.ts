/** pino's numeric levels, as words. */
const LEVELS: Record<number, string> = {
  10: "TRACE",
  20: "DEBUG",
  30: "INFO ",
  40: "WARN ",
  50: "ERROR",
  60: "FATAL",
};

const COLORS: Record<number, string> = { 40: "\x1b[33m", 50: "\x1b[31m", 60: "\x1b[31m" };
const DIM = "\x1b[2m";
const RESET = "\x1b[0m";

/** Fields every line has, not repeated after the message. */
const OMIT = new Set(["level", "time", "msg", "pid", "hostname", "role"]);

/**
 * One pino JSON line as a short human line: "12:03:04 WARN  worker: message key=value …"
 * (the JSON line when it cannot be parsed).
 */
export const prettyLine = (json: string, color = true): string => {
  let o: Record<string, unknown>;
  try {
    o = JSON.parse(json) as Record<string, unknown>;
  } catch {
    return json;
  }
  const level = Number(o["level"]);
  const time = new Date(Number(o["time"]) || Date.now()).toISOString().slice(11, 19);
  const extra = Object.entries(o)
    .filter(([k]) => !OMIT.has(k))
    .map(([k, v]) => `${k}=${typeof v === "string" ? v : JSON.stringify(v)}`)
    .join(" ");
  const name = LEVELS[level] ?? String(level);
  const tag = color && COLORS[level] ? `${COLORS[level]}${name}${RESET}` : name;
  const rest = extra ? ` ${color ? DIM : ""}${extra}${color ? RESET : ""}` : "";
  const text = (v: unknown): string =>
    typeof v === "string" ? v : v === undefined ? "" : JSON.stringify(v);
  return `${time} ${tag} ${text(o["role"])}: ${text(o["msg"])}${rest}\n`;
};

/** A pino destination writing pretty lines to a terminal. */
export const prettyDestination = (out: NodeJS.WriteStream): { write(s: string): void } => ({
  write: (s: string) => {
    out.write(prettyLine(s.trimEnd(), out.hasColors?.() ?? false));
  },
});
