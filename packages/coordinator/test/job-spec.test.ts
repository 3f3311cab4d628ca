import { readFile } from "node:fs/promises";
import test from "ava";
import {
  JOB_SPEC_SCHEMA,
  JobLifecycle,
  JobSpecError,
  amlfsStateOf,
  validateJobSpec,
} from "../src/index.js";
import type { LifecycleEvent } from "../src/index.js";

test("docs/job-spec.schema.json is the schema the validator implements", async (t) => {
  const file = JSON.parse(
    await readFile(new URL("../../../../docs/job-spec.schema.json", import.meta.url), "utf8"),
  ) as unknown;
  t.deepEqual(file, JSON.parse(JSON.stringify(JOB_SPEC_SCHEMA)));
});

test("valid specs of every kind, from objects, JSON text or bytes", (t) => {
  t.like(
    validateJobSpec({
      kind: "import",
      path: "/t",
      container: "data",
      prefixes: ["a/"],
      mode: "full",
      conflict: "overwrite-dirty",
      maxErrors: -1,
    }),
    {
      kind: "import",
      mode: "full",
      conflict: "overwrite-dirty",
      maxErrors: -1,
    },
  );
  t.is(validateJobSpec('{"kind":"restore","path":"/lustre/p"}').kind, "restore");
  t.is(
    validateJobSpec(Buffer.from('{"kind":"export","path":"/p","container":"c-1"}')).container,
    "c-1",
  );
  for (const kind of ["archive", "release"] as const)
    t.is(validateJobSpec({ kind, path: "/p" }).kind, kind);
});

test("invalid specs name the field; nothing else is accepted", (t) => {
  const bad = (v: unknown, re: RegExp) =>
    t.throws(() => validateJobSpec(v), { instanceOf: JobSpecError, message: re });
  bad("{", /not JSON/);
  bad([], /not a JSON object/);
  bad({ kind: "copy", path: "/p" }, /field kind must be one of/);
  bad({ kind: "restore" }, /field path/);
  bad({ kind: "restore", path: "p" }, /absolute/);
  bad({ kind: "restore", path: "/a/../b" }, /'\.\.'/);
  bad({ kind: "import", path: "/p" }, /container is required/);
  bad({ kind: "import", path: "/p", container: "Bad_Name" }, /not a container name/);
  bad({ kind: "import", path: "/p", container: "ok1", conflict: "merge" }, /field conflict/);
  bad({ kind: "restore", path: "/p", maxErrors: 1.5 }, /maxErrors/);
  bad(
    { kind: "restore", path: "/p", storage: "DefaultEndpointsProtocol=..." },
    /unknown field storage/,
  );
});

test("lifecycle: AMLFS states, progress at most once per interval, events in order", async (t) => {
  t.is(amlfsStateOf("succeeded", 0), "Completed");
  t.is(amlfsStateOf("succeeded", 2), "CompletedPartial");
  t.is(amlfsStateOf("failed", 0), "Failed");
  t.is(amlfsStateOf("cancelled", 0), "Canceled");
  const sent: LifecycleEvent[] = [];
  const life = new JobLifecycle(
    (e) => {
      sent.push(e);
      return Promise.resolve();
    },
    { kind: "restore", path: "/p" },
    "n",
    60_000,
  );
  await life.started();
  life.progress({ filesRestored: 1 }, "restore-1");
  life.progress({ filesRestored: 2 });
  await life.ended({ state: "succeeded", jobId: "restore-1" }, 1);
  t.deepEqual(
    sent.map((e) => [e.eventType, e.state, e.jobId]),
    [
      ["started", "InProgress", ""],
      ["progress", "InProgress", "restore-1"],
      ["completed", "CompletedPartial", "restore-1"],
    ],
  );
  t.truthy(sent[2]!.endTimeUTC);
});
