import test from "ava";
import { WriteLane } from "../src/write-lane.js";

/** A job that records when it starts and ends, and finishes when `release` is called. */
const gated = (log: string[], name: string) => {
  let release!: () => void;
  const gate = new Promise<void>((resolve) => (release = resolve));
  const job = async (): Promise<string> => {
    log.push(`start ${name}`);
    await gate;
    log.push(`end ${name}`);
    return name;
  };
  return { job, release: () => release() };
};

const tick = () => new Promise<void>((resolve) => setImmediate(resolve));

test("a lane of width 1 runs one job at a time, in arrival order, and passes each result back", async (t) => {
  const lane = new WriteLane(1);
  const log: string[] = [];
  const a = gated(log, "a");
  const b = gated(log, "b");
  const c = gated(log, "c");
  const results = [lane.run(a.job), lane.run(b.job), lane.run(c.job)];
  await tick();
  t.deepEqual(log, ["start a"]);
  c.release(); // c may not start before a and b end
  b.release();
  await tick();
  t.deepEqual(log, ["start a"]);
  a.release();
  t.deepEqual(await Promise.all(results), ["a", "b", "c"]);
  t.deepEqual(log, ["start a", "end a", "start b", "end b", "start c", "end c"]);
});

test("a failed job rejects its own run only and hands its slot on", async (t) => {
  const lane = new WriteLane(1);
  const failed = lane.run(async () => {
    await tick();
    throw new Error("EIO: write failed");
  });
  const next = lane.run(async () => "written");
  await t.throwsAsync(failed, { message: "EIO: write failed" });
  t.is(await next, "written");
  // A job that throws before its first await too.
  await t.throwsAsync(
    lane.run(() => {
      throw new Error("sync");
    }),
    { message: "sync" },
  );
  t.is(await lane.run(async () => 1), 1);
});

test("width 2 runs two at once; width 0 puts no limit", async (t) => {
  for (const [width, expected] of [
    [2, 2],
    [0, 4],
  ] as const) {
    const lane = new WriteLane(width);
    const log: string[] = [];
    const jobs = ["a", "b", "c", "d"].map((n) => gated(log, n));
    const results = jobs.map((j) => lane.run(j.job));
    await tick();
    t.is(log.length, expected, `width ${width}: ${log.join(", ")}`);
    for (const j of jobs) j.release();
    t.deepEqual(await Promise.all(results), ["a", "b", "c", "d"]);
  }
});
