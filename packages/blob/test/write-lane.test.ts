import { open, writeFile } from "node:fs/promises";
import { join } from "node:path";
import test from "ava";
import { tempDir } from "@hsmfleet/testkit";
import { WriteLane, fileWriteLane, openWriteLanes } from "../src/write-lane.js";

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
  const next = lane.run(() => Promise.resolve("written"));
  await t.throwsAsync(failed, { message: "EIO: write failed" });
  t.is(await next, "written");
  // A job that throws before its first await too.
  await t.throwsAsync(
    lane.run(() => {
      throw new Error("sync");
    }),
    { message: "sync" },
  );
  t.is(await lane.run(() => Promise.resolve(1)), 1);
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

test("downloads of the same file share its lane through any descriptor; another file has its own; released lanes are dropped", async (t) => {
  const tmp = await tempDir("hsmfleet-lane-");
  try {
    const a = join(tmp.path, "a");
    const b = join(tmp.path, "b");
    await writeFile(a, "");
    await writeFile(b, "");
    const before = openWriteLanes();
    const fh1 = await open(a, "r+");
    const fh2 = await open(a, "r+"); // another chunk of the same file
    const fh3 = await open(b, "r+");
    try {
      const l1 = await fileWriteLane(fh1);
      const l2 = await fileWriteLane(fh2);
      const l3 = await fileWriteLane(fh3);
      t.is(l1.lane, l2.lane);
      t.not(l1.lane, l3.lane);
      t.is(openWriteLanes(), before + 2);
      l1.release();
      l1.release(); // idempotent: l2 still holds the lane
      t.is(openWriteLanes(), before + 2);
      const again = await fileWriteLane(fh1);
      t.is(again.lane, l2.lane);
      l2.release();
      l3.release();
      t.is(openWriteLanes(), before + 1); // `again` holds a's lane
      again.release();
      t.is(openWriteLanes(), before);
    } finally {
      await Promise.all([fh1.close(), fh2.close(), fh3.close()]);
    }
  } finally {
    await tmp.cleanup();
  }
});
