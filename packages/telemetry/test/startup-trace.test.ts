import { performance } from "node:perf_hooks";
import test from "ava";
import { markStartup, startupMarks } from "../src/index.js";

test("a startup phase is marked once per process, however often a long-running service passes it", (t) => {
  const count = () =>
    performance.getEntriesByType("mark").filter((m) => m.name === "hsmfleet:test-phase").length;
  markStartup("test-phase");
  const first = startupMarks()["test-phase"];
  for (let i = 0; i < 1000; i++) markStartup("test-phase");
  t.is(count(), 1);
  t.deepEqual(startupMarks()["test-phase"], first);
  markStartup("test-other-phase");
  t.truthy(startupMarks()["test-other-phase"]);
});
