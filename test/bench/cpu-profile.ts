/**
 * CPU profiles for benchmarks: record the main thread of this process with the inspector (only
 * around the code being measured), save a .cpuprofile (open it in Chrome DevTools), and boil it
 * down to where the time went: self time by function and by coarse category.
 */
import { writeFile } from "node:fs/promises";
import { Session } from "node:inspector/promises";
import type { Profiler, Runtime } from "node:inspector";

export class CpuProfiler {
  readonly #session = new Session();
  #started = false;

  async start(): Promise<void> {
    if (!this.#started) {
      this.#session.connect();
      await this.#session.post("Profiler.enable");
      await this.#session.post("Profiler.setSamplingInterval", { interval: 1000 });
      this.#started = true;
    }
    await this.#session.post("Profiler.start");
  }

  async stop(file: string): Promise<Profiler.Profile> {
    const { profile } = await this.#session.post("Profiler.stop");
    await writeFile(file, JSON.stringify(profile));
    return profile;
  }

  close(): void {
    if (this.#started) this.#session.disconnect();
  }
}

export interface ProfileLine {
  name: string;
  where: string;
  selfMs: number;
  share: number;
}

const frameWhere = (f: Runtime.CallFrame): string => {
  const url = f.url.replace(/^file:\/\//, "");
  const short = url
    .replace(/^.*\/node_modules\//, "")
    .replace(/^.*\/packages\/([^/]+)\/dist\//, "@hsmfleet/$1/");
  return short === "" ? "" : `${short}:${f.lineNumber + 1}`;
};

/** Coarse bucket of a frame, for "where does the time go". */
const categoryOf = (f: Runtime.CallFrame): string => {
  const u = f.url;
  if (f.functionName === "(idle)") return "idle (waiting for I/O)";
  if (f.functionName === "(garbage collector)") return "garbage collector";
  if (f.functionName === "(program)") return "native / V8 (program)";
  if (u.includes("/@azure/") || u.includes("/@typespec/")) return "Azure SDK";
  if (u.includes("/@opentelemetry/")) return "OpenTelemetry SDK / exporters";
  if (u.includes("/packages/telemetry/")) return "hsmfleet telemetry";
  if (u.includes("/@nats-io/") || u.includes("/packages/bus/") || u.includes("/packages/protocol/"))
    return "NATS / protocol";
  if (u.includes("/packages/")) return "hsmfleet";
  if (u.startsWith("node:")) {
    if (/crypto|hash/i.test(u)) return "node:crypto";
    if (/_http|http|net|stream|tls/.test(u)) return "node:http / net / streams";
    if (/fs/.test(u)) return "node:fs";
    return "node (other)";
  }
  if (u === "") {
    const n = f.functionName;
    if (/^(update|digest|Hash|Hmac|init)$/.test(n)) return "crypto (MD5, HMAC signing)";
    if (/^(open|openFileHandle|close|fstat|lstat|stat|read|readdir)$/.test(n))
      return "fs calls (event-loop side)";
    if (/^(writev|writeBuffer|writeUtf8String|writeLatin1String|writeAsciiString)$/.test(n))
      return "socket writes";
    if (/^(runMicrotasks|enqueueMicrotask)$/.test(n)) return "promise machinery";
    return "native / V8 (program)";
  }
  return "other JS";
};

export interface SelfTime {
  name: string;
  where: string;
  category: string;
  selfMs: number;
}

/** Self time of every function ("name where" → time) of a V8 CPU profile: to add profiles up. */
export const selfTimes = (profile: Profiler.Profile): Map<string, SelfTime> => {
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const counts = new Map<number, number>();
  for (const id of profile.samples ?? []) counts.set(id, (counts.get(id) ?? 0) + 1);
  const deltas = profile.timeDeltas ?? [];
  const totalUs = deltas.reduce((a, b) => a + b, 0) || profile.endTime - profile.startTime;
  const usPerSample = totalUs / ((profile.samples ?? []).length || 1);
  const out = new Map<string, SelfTime>();
  for (const [id, n] of counts) {
    const f = byId.get(id)?.callFrame;
    if (f === undefined) continue;
    const name = f.functionName || "(anonymous)";
    const where = frameWhere(f);
    const key = `${name} ${where}`;
    const line = out.get(key) ?? { name, where, category: categoryOf(f), selfMs: 0 };
    line.selfMs += (n * usPerSample) / 1000;
    out.set(key, line);
  }
  return out;
};

/** Self time per function (top `limit`) and per category, from a V8 CPU profile. */
export const summarizeProfile = (
  profile: Profiler.Profile,
  limit = 25,
): {
  totalMs: number;
  top: ProfileLine[];
  categories: Array<{ name: string; selfMs: number; share: number }>;
} => {
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const counts = new Map<number, number>();
  for (const id of profile.samples ?? []) counts.set(id, (counts.get(id) ?? 0) + 1);
  const deltas = profile.timeDeltas ?? [];
  const totalUs = deltas.reduce((a, b) => a + b, 0) || profile.endTime - profile.startTime;
  const samples = (profile.samples ?? []).length || 1;
  const usPerSample = totalUs / samples;
  const fns = new Map<string, ProfileLine>();
  const cats = new Map<string, number>();
  for (const [id, n] of counts) {
    const node = byId.get(id);
    if (node === undefined) continue;
    const f = node.callFrame;
    const where = frameWhere(f);
    const name = f.functionName || "(anonymous)";
    const key = `${name} ${where}`;
    const ms = (n * usPerSample) / 1000;
    const line = fns.get(key) ?? { name, where, selfMs: 0, share: 0 };
    line.selfMs += ms;
    fns.set(key, line);
    const cat = categoryOf(f);
    cats.set(cat, (cats.get(cat) ?? 0) + ms);
  }
  const totalMs = totalUs / 1000;
  const top = [...fns.values()]
    .sort((a, b) => b.selfMs - a.selfMs)
    .slice(0, limit)
    .map((l) => ({ ...l, share: l.selfMs / totalMs }));
  const categories = [...cats.entries()]
    .map(([name, selfMs]) => ({ name, selfMs, share: selfMs / totalMs }))
    .sort((a, b) => b.selfMs - a.selfMs);
  return { totalMs, top, categories };
};
