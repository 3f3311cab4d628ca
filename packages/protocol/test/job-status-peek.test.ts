import test from "ava";
import {
  JobKind,
  JobState,
  decodeJobStatus,
  encodeJobStatus,
  newJobSpec,
  newJobStatus,
  peekJobStatus,
} from "../src/index.js";

test("peekJobStatus reads the kind and state of every kind and state as a full decode does", (t) => {
  for (const kind of Object.values(JobKind)) {
    for (const state of Object.values(JobState)) {
      const status = newJobStatus(
        newJobSpec({ jobId: `job-${kind}-${state}`, kind, root: Buffer.from("/mnt/fs") }),
        {
          state,
          published: 12,
          outstanding: ["a", "b"],
          reason: "because",
          errorLog: "/var/log/x.ndjson",
        },
      );
      const data = encodeJobStatus(status);
      const decoded = decodeJobStatus(data);
      t.deepEqual(peekJobStatus(data), { kind: decoded.spec.kind, state: decoded.state });
    }
  }
});

test("peekJobStatus reads absent fields as 0 and refuses a truncated record", (t) => {
  t.deepEqual(peekJobStatus(new Uint8Array()), { kind: 0, state: 0 });
  const data = encodeJobStatus(
    newJobStatus(newJobSpec({ jobId: "j", kind: JobKind.Restore, root: Buffer.from("/") })),
  );
  t.throws(() => peekJobStatus(data.subarray(0, 3)));
});
