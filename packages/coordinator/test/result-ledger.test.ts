import test from "ava";
import { newItemResult } from "@hsmfleet/protocol";
import type { ItemKind } from "@hsmfleet/protocol";
import { ResultLedger, ledgerDigest, ledgerPageOf } from "../src/result-ledger.js";

const result = (itemId: string, childIds: string[] = [], kind: ItemKind = "walk", parentId = "") =>
  newItemResult({ jobId: "j", itemId, kind, children: childIds.length, childIds, parentId });

test("a job ends when every id it published has reported, not when counts meet", (t) => {
  const ledger = new ResultLedger(["root"], { published: 1, completed: 0 });
  t.deepEqual(ledger.accept(result("root", ["a", "b"])), { counted: true });
  // Forged results of ids nobody published change nothing, however many.
  for (let i = 0; i < 10; i++)
    t.deepEqual(ledger.accept(result(`forged-${i}`)), { counted: false, why: "not-outstanding" });
  t.false(ledger.done);
  t.deepEqual(ledger.accept(result("a")), { counted: true });
  // A duplicate of a completed item is not counted twice.
  t.deepEqual(ledger.accept(result("a")), { counted: false, why: "not-outstanding" });
  t.false(ledger.done);
  t.deepEqual(ledger.accept(result("b")), { counted: true });
  t.true(ledger.done);
  t.is(ledger.published, 3);
  t.is(ledger.completed, 3);
});

test("spawn notices add children of an outstanding parent; the parent stays outstanding", (t) => {
  const ledger = new ResultLedger(["root"], { published: 1, completed: 0 });
  t.deepEqual(ledger.accept(result("root.s0", ["c1", "c2"], "spawn", "root")), { counted: true });
  t.true(["c1", "c2", "root"].every((id) => ledger.has(id)));
  t.is(ledger.size, 3);
  t.deepEqual(ledger.accept(result("x.s0", ["c3"], "spawn", "x")), {
    counted: false,
    why: "not-outstanding",
  });
  t.is(ledger.completed, 0);
});

test("inconsistent results are refused whole", (t) => {
  const ledger = new ResultLedger(["root"], { published: 1, completed: 0 });
  const lying = { ...result("root", ["a"]), children: 5 };
  t.deepEqual(ledger.accept(lying), { counted: false, why: "inconsistent-children" });
  t.deepEqual(ledger.accept(result("root", ["a", "a"])), {
    counted: false,
    why: "duplicate-child",
  });
  t.deepEqual(ledger.accept(result("root", ["root"])), { counted: false, why: "duplicate-child" });
  t.deepEqual(ledger.accept(result("root", [""])), { counted: false, why: "bad-child-id" });
  t.true(ledger.has("root") && ledger.size === 1, "nothing changed");
});

test("a resumed ledger continues from the checkpointed frontier", (t) => {
  const first = new ResultLedger(["root"], { published: 1, completed: 0 });
  first.accept(result("root", ["a", "b"]));
  first.accept(result("a"));
  const resumed = ResultLedger.fromDigests(first.digests(), first);
  t.is(resumed.size, 1);
  t.deepEqual(resumed.accept(result("a")), { counted: false, why: "not-outstanding" });
  t.deepEqual(resumed.accept(result("b")), { counted: true });
  t.true(resumed.done);
});

test("only the pages an id went into or out of are reported changed", (t) => {
  const ledger = new ResultLedger(["root"], { published: 1, completed: 0 });
  t.deepEqual(ledger.takeChanged(), [ledgerPageOf(ledgerDigest("root"))]);
  t.deepEqual(ledger.takeChanged(), [], "taken");
  ledger.accept(result("root", ["a"]));
  t.deepEqual(
    ledger.takeChanged().sort((x, y) => x - y),
    [...new Set([ledgerDigest("root"), ledgerDigest("a")].map(ledgerPageOf))].sort((x, y) => x - y),
  );
  t.is(ledgerDigest("a").length, 16);
});
