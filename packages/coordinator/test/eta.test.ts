import test from "ava";
import { JobKind, newJobSpec, newJobStatus } from "@hsmfleet/protocol";
import { restoreProgress } from "../src/index.js";

const MiB = 2 ** 20;

const restoreAfter = (elapsedSeconds: number, done: { files: number; bytes: number }) => {
  const s = newJobStatus(
    newJobSpec({ jobId: "restore-eta", kind: JobKind.Restore, root: Buffer.from("/r") }),
    { published: 10, completed: 10, startedAtMs: Date.now() - elapsedSeconds * 1000 },
  );
  s.scan.directories = 1;
  // 2,000 small files (4 KiB) and 128 × 16 MiB: 2.0 GiB in 2,128 files.
  s.restore.filesFound = 2128;
  s.restore.bytesFound = 2000 * 4096 + 128 * 16 * MiB;
  s.restore.filesRestored = done.files;
  s.restore.bytesRestored = done.bytes;
  return restoreProgress(s, 1);
};

// Issue 16 item 9: small files first made the ETA 801:26:00 (bytes left at the small files' byte
// rate). The ETA weighs the share of files done and the share of bytes done equally.
test("restore ETA when the small files went first is of the order of the time spent, not hundreds of hours", (t) => {
  const p = restoreAfter(40, { files: 2000, bytes: 2000 * 4096 });
  t.log(`ETA ${p.etaSeconds} s after 40 s`);
  t.truthy(p.etaSeconds);
  t.true(p.etaSeconds! >= 10 && p.etaSeconds! <= 120, `ETA ${p.etaSeconds} s`);
});

test("restore ETA when the large files went first counts the many small files left", (t) => {
  const p = restoreAfter(20, { files: 128, bytes: 128 * 16 * MiB });
  t.log(`ETA ${p.etaSeconds} s after 20 s`);
  t.true(p.etaSeconds! >= 5 && p.etaSeconds! <= 120, `ETA ${p.etaSeconds} s`);
});

test("restore ETA for an even mix is the plain rate estimate; none before anything moved; 0 at the end", (t) => {
  const half = restoreAfter(30, { files: 1064, bytes: (2000 * 4096 + 128 * 16 * MiB) / 2 });
  t.true(Math.abs(half.etaSeconds! - 30) < 1, `ETA ${half.etaSeconds}`);
  t.is(restoreAfter(5, { files: 0, bytes: 0 }).etaSeconds, undefined);
  t.is(restoreAfter(50, { files: 2128, bytes: 2000 * 4096 + 128 * 16 * MiB }).etaSeconds, 0);
});
