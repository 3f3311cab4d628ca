import test from "ava";
import type { ChangeType } from "@hsmfleet/protocol";
import { Coalescer } from "../src/index.js";
import type { SourceChange } from "../src/index.js";

let index = 0;
const change = (
  type: ChangeType,
  rel: string,
  extra: Partial<SourceChange> = {},
): SourceChange => ({
  record: {
    source: "posix",
    index: String(++index),
    type,
    time: 0,
    flags: 0,
    target: "",
    parent: "",
    name: "",
  },
  rel: Buffer.from(rel),
  isDir: type === "MKDIR" || type === "RMDIR",
  ...extra,
});
const kinds = (c: Coalescer, now: number, settle = 0) =>
  (c.takePhase(now, settle, 1000)?.ops ?? []).map((o) => `${o.kind}:${o.rel.toString()}`).sort();

test("coalesce: CLOSE/MTIME/TRUNC after CREAT are one upload; SATTRs merge; an upload absorbs a SATTR", (t) => {
  const c = new Coalescer();
  for (const type of ["CREAT", "MTIME", "CLOSE", "TRUNC", "SATTR"] as const)
    c.add(change(type, "f"), 0);
  c.add(change("SATTR", "g"), 0);
  c.add(change("SATTR", "g"), 0);
  t.is(c.size, 2);
  t.deepEqual(kinds(c, 1000), ["meta:g", "upload:f"]);
  t.is(c.size, 0);
});

test("coalesce: UNLNK cancels a pending CREAT, RMDIR a pending MKDIR; uploads wait to settle", (t) => {
  const c = new Coalescer();
  c.add(change("CREAT", "f"), 0);
  c.add(change("UNLNK", "f"), 0);
  c.add(change("MKDIR", "d"), 0);
  c.add(change("RMDIR", "d"), 0);
  c.add(change("CREAT", "late"), 900);
  t.deepEqual(kinds(c, 1000, 500), ["delete:d", "delete:f"]);
  t.is(c.takePhase(1000, 500, 1000), undefined);
  t.is(c.nextSettleMs(500), 1400);
  t.deepEqual(kinds(c, 1400, 500), ["upload:late"]);
});

test("coalesce: a rename takes what was pending along, goes out first and alone for a directory; the checkpoint waits for it", (t) => {
  const c = new Coalescer();
  c.add(change("CREAT", "dir/a"), 0);
  const first = BigInt(index);
  c.add(change("RENME", "new", { from: Buffer.from("dir"), isDir: true }), 0);
  c.add(change("RENME", "y", { from: Buffer.from("x") }), 0);
  t.is(c.oldestIndex(), first);
  const phase = c.takePhase(10, 0, 1000)!;
  t.deepEqual(phase.ops, []);
  t.deepEqual(
    phase.moves.map((m) => [m.from.toString(), m.to.toString()]),
    [["dir", "new"]],
  );
  t.deepEqual(
    c.takePhase(10, 0, 1000)!.moves.map((m) => m.to.toString()),
    ["y"],
  );
  t.deepEqual(kinds(c, 10), ["upload:new/a"]);
  t.is(c.oldestIndex(), undefined);
});
