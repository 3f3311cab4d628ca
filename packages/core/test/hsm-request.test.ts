import test from "ava";
import {
  FidParseError,
  HsmCopytoolAction,
  HsmFlag,
  HsmUserAction,
  canArchive,
  canRelease,
  canRemove,
  canRestore,
  archiveDone,
  copytoolActionForUser,
  copytoolActionName,
  fidForInode,
  formatFid,
  formatHsmFlags,
  parseFid,
  parseHsmRequestName,
  partitionForFid,
  transitionRefusal,
} from "../src/index.js";

const { Exists: E, Dirty: D, Released: R, Archived: A, NoRelease, NoArchive, Lost } = HsmFlag;

test("user requests and copytool actions carry lustre_user.h values", (t) => {
  t.deepEqual(HsmUserAction, { Archive: 10, Restore: 11, Release: 12, Remove: 13, Cancel: 14 });
  t.is(HsmCopytoolAction.Archive, 20);
  t.is(HsmCopytoolAction.Restore, 21);
  t.is(HsmCopytoolAction.Remove, 22);
  t.is(HsmCopytoolAction.Cancel, 23);
  t.is(copytoolActionForUser(HsmUserAction.Archive), HsmCopytoolAction.Archive);
  t.is(copytoolActionForUser(HsmUserAction.Release), HsmCopytoolAction.Release);
  t.is(copytoolActionName(21), "RESTORE");
  t.is(copytoolActionName(7), "ACTION_7");
  t.is(parseHsmRequestName("Archive"), "archive");
  t.throws(() => parseHsmRequestName("migrate"), { message: /unknown HSM request "migrate"/ });
});

test("FIDs print and parse in lfs path2fid form", (t) => {
  const fid = { seq: 0x200000401n, oid: 0x1a, ver: 0 };
  t.is(formatFid(fid), "[0x200000401:0x1a:0x0]");
  t.deepEqual(parseFid("[0x200000401:0x1a:0x0]"), fid);
  t.deepEqual(parseFid("0x200000401:0x1a:0x0"), fid);
  t.deepEqual(parseFid(" [0xffffffffffffffff:0xffffffff:0xffffffff]\n"), {
    seq: 0xffffffffffffffffn,
    oid: 0xffffffff,
    ver: 0xffffffff,
  });
  t.throws(() => parseFid("[0x1:0x2]"), { instanceOf: FidParseError });
  t.throws(() => parseFid("[0x1:0x100000000:0x0]"), { message: /object id exceeds 32 bits/ });
  t.throws(() => parseFid("[0x10000000000000000:0x1:0x0]"), { message: /sequence exceeds/ });
});

test("emulation FIDs are stable per (device, inode) and distinct across them", (t) => {
  const a = formatFid(fidForInode(2049n, 123456n));
  t.is(a, formatFid(fidForInode(2049n, 123456n)));
  t.not(a, formatFid(fidForInode(2049n, 123457n)));
  t.not(a, formatFid(fidForInode(2050n, 123456n)));
  t.not(formatFid(fidForInode(1n, 5n)), formatFid(fidForInode(1n, 5n + (1n << 32n))));
  t.true(fidForInode(0n, 1n).seq >= 0x200000400n);
});

test("partitions are stable, in range and spread", (t) => {
  const counts = new Array<number>(16).fill(0);
  for (let i = 1; i <= 1600; i++) {
    const fid = formatFid(fidForInode(2049n, BigInt(i)));
    const p = partitionForFid(fid, 16);
    t.true(p >= 0 && p < 16);
    t.is(partitionForFid(fid, 16), p);
    counts[p]!++;
  }
  t.true(counts.every((c) => c > 0));
  // A FID written without brackets lands on the same partition.
  t.is(partitionForFid("0x200000401:0x1:0x0", 16), partitionForFid("[0x200000401:0x1:0x0]", 16));
});

test("archive: new, exists-not-archived and dirty may archive; the rest is refused with why", (t) => {
  t.deepEqual(canArchive(0), { ok: true, flags: E });
  t.deepEqual(canArchive(E), { ok: true, flags: E });
  t.deepEqual(canArchive(E | A | D), { ok: true, flags: E | A | D });
  t.deepEqual(canArchive(E | NoRelease), { ok: true, flags: E | NoRelease });
  const refused = (flags: number) => {
    const r = canArchive(flags);
    return r.ok ? "ok" : r.reason;
  };
  t.regex(refused(E | A), /already archived and not dirty/);
  t.regex(refused(E | A | R), /released/);
  t.regex(refused(NoArchive), /never_archive/);
  t.regex(refused(E | Lost), /lost_from_hsm/);
  t.is(archiveDone(E | D | A | NoRelease), E | A | NoRelease);
  t.is(archiveDone(0), E | A);
});

test("release: only archived and clean; NORELEASE and LOST forbid it", (t) => {
  t.deepEqual(canRelease(E | A), { ok: true, flags: E | A | R });
  t.deepEqual(canRelease(E | A | R), { ok: true, flags: E | A | R });
  const r = canRelease(E | A | D);
  t.false(r.ok);
  t.is(
    transitionRefusal(
      "release",
      "/x",
      { compat: 1, flags: E | A | D, archiveId: 1n, archiveVersion: 0n },
      r.ok ? { reason: "" } : r,
    ),
    "release of /x refused: file is dirty (0xb exists dirty archived); archive it first",
  );
  for (const [flags, why] of [
    [0, /not archived/],
    [E, /not archived/],
    [E | A | NoRelease, /never_release/],
    [E | A | Lost, /lost_from_hsm/],
  ] as const) {
    const res = canRelease(flags);
    t.false(res.ok, formatHsmFlags(flags));
    if (!res.ok) t.regex(res.reason, why);
  }
});

test("restore clears RELEASED, is a no-op on resident files, refuses a lost copy", (t) => {
  t.deepEqual(canRestore(E | A | R), { ok: true, flags: E | A });
  t.deepEqual(canRestore(E | A | R | NoRelease), { ok: true, flags: E | A | NoRelease });
  t.deepEqual(canRestore(E | A), { ok: true, flags: E | A });
  t.deepEqual(canRestore(0), { ok: true, flags: 0 });
  const r = canRestore(E | A | R | Lost);
  t.false(r.ok);
});

test("remove clears the archive copy; a released file is refused", (t) => {
  t.deepEqual(canRemove(E | A), { ok: true, flags: E });
  t.deepEqual(canRemove(E | A | D | NoArchive), { ok: true, flags: E | NoArchive });
  t.deepEqual(canRemove(E | Lost), { ok: true, flags: E });
  t.deepEqual(canRemove(0), { ok: true, flags: 0 });
  const r = canRemove(E | A | R);
  t.false(r.ok);
  if (!r.ok) t.is(r.hint, "restore it first");
});

test("formatHsmFlags is short and names new", (t) => {
  t.is(formatHsmFlags(0), "0x0 new");
  t.is(formatHsmFlags(0xd), "0xd released exists archived");
});
