import test from "ava";
import {
  attemptScope,
  decodeParkedChildren,
  encodeParkedChildren,
  jobIdOfSubject,
  spawnNoticeId,
  subjects,
  walkResultId,
} from "../src/index.js";

test("parked children round-trip with their kinds, ids and bytes", (t) => {
  const children = [
    { kind: "walk" as const, id: "job.s1", data: new Uint8Array([1, 2, 3]) },
    { kind: "xfer" as const, id: "job.s1.a2.b0", data: new Uint8Array(0) },
    { kind: "chunk" as const, id: "é.k0.3", data: new Uint8Array(70_000).fill(7) },
    { kind: "restore" as const, id: "r", data: new Uint8Array([9]) },
  ];
  const back = decodeParkedChildren(encodeParkedChildren({ part: 1, parts: 2, children }));
  t.deepEqual(back, { part: 1, parts: 2, children });
});

test("a damaged or hostile parked-children message is refused with a RangeError", (t) => {
  const good = encodeParkedChildren({
    part: 0,
    parts: 1,
    children: [{ kind: "xfer", id: "a.b0", data: new Uint8Array([1, 2]) }],
  });
  const variants: Array<[string, Uint8Array]> = [
    ["empty", new Uint8Array(0)],
    ["cut short", good.subarray(0, good.length - 1)],
    ["trailing bytes", new Uint8Array([...good, 0])],
    ["bad magic", Uint8Array.from(good, (b, i) => (i === 0 ? 0 : b))],
    ["part ≥ parts", Uint8Array.from(good, (b, i) => (i === 7 ? 5 : b))],
    ["unknown kind", Uint8Array.from(good, (b, i) => (i === 16 ? 9 : b))],
    ["id of length 0", Uint8Array.from(good, (b, i) => (i === 17 || i === 18 ? 0 : b))],
    ["count too large", Uint8Array.from(good, (b, i) => (i === 12 ? 1 : b))],
  ];
  for (const [what, data] of variants)
    t.throws(() => decodeParkedChildren(data), { instanceOf: RangeError }, what);
});

test("walk declaration ids: the first delivery's are the historical ones, later ones are scoped", (t) => {
  t.is(attemptScope(1), "");
  t.is(walkResultId("j.x", 1), "j.x.r");
  t.is(walkResultId("j.x", 3), "j.x.a3.r");
  t.is(spawnNoticeId("j.x", 1, 0), "j.x.s0");
  t.is(spawnNoticeId("j.x", 2, 4), "j.x.a2.s4");
  // Parked children are sealed like every work item of the job.
  t.is(jobIdOfSubject(subjects.park("job1")), "job1");
});
