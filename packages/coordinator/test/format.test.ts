import test from "ava";
import { EntryType } from "@hsmfleet/core";
import { JobKind, JobState, emptyScanCounters, newJobSpec, newJobStatus } from "@hsmfleet/protocol";
import {
  buildExportSummary,
  buildScanSummary,
  entryToNdjson,
  formatExportSummary,
  formatScanSummary,
  newJobId,
} from "../src/index.js";

test("--list lines carry path, type, size, mtime, mode, owner and HSM flags", (t) => {
  const line = entryToNdjson({
    path: Buffer.from([0x64, 0x2f, 0x62, 0xff]),
    type: EntryType.File,
    size: 42,
    mtimeSec: 1_700_000_000,
    mtimeNsec: 5,
    mode: 0o101755,
    uid: 1000,
    gid: 100,
    ino: 2n ** 60n,
    nlink: 1,
    hsm: { compat: 1, flags: 0xd, archiveId: 1n, archiveVersion: 0n },
  });
  const parsed = JSON.parse(line) as Record<string, unknown>;
  t.like(parsed, {
    path: "d/b\\xff",
    pathBase64: Buffer.from([0x64, 0x2f, 0x62, 0xff]).toString("base64"),
    type: "file",
    size: 42,
    mode: "1755",
    uid: 1000,
    gid: 100,
    hsm: { flags: "0x0000000d", states: ["released", "exists", "archived"], archiveId: 1 },
  });
  t.regex(line, /"mtime":1700000000\.000000005,/);
  t.regex(line, /"ino":1152921504606846976,/, "64-bit inode numbers are written exactly");
  t.false(
    "pathBase64" in
      (JSON.parse(entryToNdjson({ ...baseEntry(), path: Buffer.from("plain/ü") })) as object),
  );
});

const baseEntry = () => ({
  path: Buffer.from("x"),
  type: EntryType.Directory,
  size: 0,
  mtimeSec: 0,
  mtimeNsec: 0,
  mode: 0o40755,
  uid: 0,
  gid: 0,
  ino: 1n,
  nlink: 2,
});

test("job ids sort by time and are safe subject tokens", (t) => {
  const id = newJobId("scan", new Date("2026-11-21T13:15:00.000Z"));
  t.regex(id, /^scan-20261121-131500-[0-9a-f]{4}$/);
});

test("the human summary shows counts, the size histogram, HSM states and problems", (t) => {
  const scan = {
    ...emptyScanCounters(),
    files: 3,
    directories: 2,
    bytes: 5000,
    errors: 1,
    sizeHistogram: [1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2],
    hsmStates: { released: 2, new: 1 },
  };
  const text = formatScanSummary(
    buildScanSummary(
      newJobStatus(
        newJobSpec({ jobId: "scan-x", kind: JobKind.Scan, root: Buffer.from("/mnt/fs") }),
        {
          state: JobState.Succeeded,
          scan,
          published: 2,
          completed: 2,
          startedAtMs: 1000,
          updatedAtMs: 3000,
          finishedAtMs: 3000,
          errorLog: "/var/log/e.ndjson",
          errorSamples: [
            {
              path: Buffer.from("locked"),
              operation: "opendir",
              code: "EACCES",
              message: "permission denied",
              retryable: false,
            },
          ],
        },
      ),
    ),
  );
  t.regex(text, /scan scan-x of \/mnt\/fs: succeeded in 2\.0 s/);
  t.regex(text, /files\s+3/);
  t.regex(text, /0 B\s+1/);
  t.regex(text, /\[4 KiB, 8 KiB\)\s+2/);
  t.regex(text, /released\s+2/);
  t.regex(text, /opendir locked: EACCES permission denied/);
});

test("an error line of a summary names its path once", (t) => {
  const status = newJobStatus(
    newJobSpec({ jobId: "export-x", kind: JobKind.Export, root: Buffer.from("/data/tree") }),
  );
  status.state = JobState.Succeeded;
  status.export.errors = 3;
  const long = "d/".repeat(10) + "f";
  status.errorSamples = [
    // A name error: the message starts with the path (BlobNameError).
    {
      path: Buffer.from(long),
      operation: "name",
      code: "InvalidBlobName",
      message: `${long}: blob name would be 1100 characters; Azure allows at most 1024`,
      retryable: false,
    },
    // A file-system error: the message names the absolute path (FsOperationError).
    {
      path: Buffer.from("sub/gone"),
      operation: "transfer",
      code: "ENOENT",
      message: "open /data/tree/sub/gone: ENOENT: no such file or directory",
      retryable: false,
    },
    // A message that names no path stays as it is.
    {
      path: Buffer.from("sub/big"),
      operation: "transfer",
      code: "EIO",
      message: "read failed at byte 4096",
      retryable: false,
    },
  ];
  const text = formatExportSummary(buildExportSummary(status));
  const lines = text.split("\n").filter((l) => /^ {4}\S/.test(l));
  t.is(lines.length, 3, text);
  t.is(lines[0]!.split(long).length - 1, 1, lines[0]);
  t.is(
    lines[0],
    `    name ${long}: InvalidBlobName blob name would be 1100 characters; Azure allows at most 1024`,
  );
  t.is(lines[1], "    transfer sub/gone: ENOENT open: ENOENT: no such file or directory");
  t.is(lines[2], "    transfer sub/big: EIO read failed at byte 4096");
});
