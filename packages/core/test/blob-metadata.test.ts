import test from "ava";
import {
  EntryType,
  HsmfleetError,
  attributesFromMetadata,
  formatModtime,
  isFolderStub,
  isSymlinkBlob,
  metadataForEntry,
  parseModtime,
} from "../src/index.js";

// 2024-05-30 18:36:00 UTC
const T = 1717094160;

test("writes exactly the AMLFS keys", (t) => {
  t.deepEqual(
    metadataForEntry({ type: EntryType.File, mode: 0o100644, uid: 1000, gid: 100, mtimeSec: T }),
    { owner: "1000", group: "100", permissions: "0644", modtime: "2024-05-30 18:36:00 +0000" },
  );
  t.deepEqual(
    metadataForEntry({ type: EntryType.Directory, mode: 0o41777, uid: 0, gid: 0, mtimeSec: T }),
    {
      owner: "0",
      group: "0",
      permissions: "1777",
      modtime: "2024-05-30 18:36:00 +0000",
      hdi_isfolder: "true",
    },
  );
  t.deepEqual(
    metadataForEntry({ type: EntryType.Symlink, mode: 0o120777, uid: 5, gid: 6, mtimeSec: 0 }),
    {
      owner: "5",
      group: "6",
      permissions: "0777",
      modtime: "1970-01-01 00:00:00 +0000",
      ftype: "LNK",
    },
  );
  // setuid/setgid dropped, sticky kept; uid/gid up to 2^32-1 as decimal.
  const m = metadataForEntry({
    type: EntryType.File,
    mode: 0o106755,
    uid: 4294967294,
    gid: 65534,
    mtimeSec: T + 0.9,
  });
  t.is(m.permissions, "0755");
  t.is(m.owner, "4294967294");
  t.is(m.modtime, "2024-05-30 18:36:00 +0000");
  t.is(
    metadataForEntry({ type: EntryType.File, mode: 0o1600, uid: 0, gid: 0, mtimeSec: T })
      .permissions,
    "1600",
  );
  t.throws(
    () => metadataForEntry({ type: EntryType.Other, mode: 0o10644, uid: 0, gid: 0, mtimeSec: T }),
    { instanceOf: HsmfleetError },
  );
});

test("modtime format and parse", (t) => {
  t.is(formatModtime(T), "2024-05-30 18:36:00 +0000");
  t.is(formatModtime(-1), "1969-12-31 23:59:59 +0000");
  t.is(formatModtime(253402300799), "9999-12-31 23:59:59 +0000");
  t.throws(() => formatModtime(Number.NaN), { instanceOf: RangeError });

  const same = [
    "2024-05-30 18:36:00 +0000",
    "2024-05-30 20:36:00 +0200",
    "2024-05-30 13:06:00 -0530",
    "2024-05-30 20:36:00 +02:00",
    "2024-05-30 20:36:00+02",
    "2024-05-30T18:36:00Z",
    "2024-05-30T18:36:00.999999999Z",
    "2024-05-30T20:36:00.5+02:00",
    "2024-05-30 18:36:00",
    "2024-05-30 18:36:00 +0000 UTC",
    "  2024-05-30 18:36:00 +0000\n",
    "Thu, 30 May 2024 18:36:00 GMT",
    String(T),
    String(T * 1000),
    String(T * 1_000_000),
    `${T}123456789`,
  ];
  for (const s of same) t.is(parseModtime(s), T, s);
  t.is(parseModtime("1969-12-31 23:59:59 +0000"), -1);
  for (const bad of [
    "",
    "yesterday",
    "2024-13-01 00:00:00 +0000",
    "2024-02-30 00:00:00 +0000",
    "2024-05-30 24:00:00 +0000",
    "2024-05-30 18:36 +0000",
    "2024-05-30 18:36:00 +2500",
    "30/05/2024 18:36:00",
    "-5",
    "1.5",
  ]) {
    t.is(parseModtime(bad), undefined, bad);
  }
});

test("reads what AMLFS writes", (t) => {
  const file = {
    owner: "1000",
    group: "100",
    permissions: "0640",
    modtime: "2024-05-30 18:36:00 +0000",
  };
  t.deepEqual(attributesFromMetadata(file, "file"), {
    mode: 0o640,
    uid: 1000,
    gid: 100,
    mtimeSec: T,
    warnings: [],
  });
  const dir = { ...file, permissions: "1777", hdi_isfolder: "true" };
  t.true(isFolderStub(dir));
  t.false(isSymlinkBlob(dir));
  t.is(attributesFromMetadata(dir, "directory").mode, 0o1777);
  const link = { ...file, permissions: "0777", ftype: "LNK" };
  t.true(isSymlinkBlob(link));
  t.false(isFolderStub(link));
  // Round trip of our own writer.
  for (const type of [EntryType.File, EntryType.Directory, EntryType.Symlink] as const) {
    const meta = metadataForEntry({ type, mode: 0o1751, uid: 7, gid: 8, mtimeSec: T });
    const kind =
      type === EntryType.File ? "file" : type === EntryType.Directory ? "directory" : "symlink";
    t.deepEqual(attributesFromMetadata(meta, kind), {
      mode: 0o1751,
      uid: 7,
      gid: 8,
      mtimeSec: T,
      warnings: [],
    });
    t.is(isFolderStub(meta), type === EntryType.Directory);
    t.is(isSymlinkBlob(meta), type === EntryType.Symlink);
  }
});

test("reads what lemur and older copytools wrote (mixed-case keys, names, symbolic modes)", (t) => {
  const lemur = {
    Owner: "root",
    Group: "wheel",
    Permissions: "rwxr-xr-x",
    ModTime: "2019-07-11 09:53:21 -0700",
  };
  t.deepEqual(attributesFromMetadata(lemur, "file"), {
    mode: 0o755,
    uid: 0,
    gid: 0,
    mtimeSec: Date.UTC(2019, 6, 11, 16, 53, 21) / 1000,
    warnings: [],
  });
  t.deepEqual(attributesFromMetadata({ uid: "42", gid: "43", perm: "0600" }, "file"), {
    mode: 0o600,
    uid: 42,
    gid: 43,
    mtimeSec: undefined,
    warnings: [],
  });
  t.deepEqual(
    attributesFromMetadata({ OWNER: "superuser", GROUP: "supergroup", PERMISSIONS: "750" }, "file"),
    { mode: 0o750, uid: 0, gid: 0, mtimeSec: undefined, warnings: [] },
  );
  const named = attributesFromMetadata({ Owner: "alice", Group: "staff" }, "file");
  t.is(named.uid, 0);
  t.is(named.gid, 0);
  t.deepEqual(named.warnings, [
    'owner "alice" is not a numeric owner id; using 0',
    'group "staff" is not a numeric group id; using 0',
  ]);
  // HDI_ISFOLDER / True, FType / lnk in any case.
  t.true(isFolderStub({ HDI_ISFOLDER: "True" }));
  t.true(isFolderStub({ Hdi_IsFolder: "TRUE" }));
  t.false(isFolderStub({ hdi_isfolder: "false" }));
  t.false(isFolderStub({ hdi_isfolder: undefined }));
  t.true(isSymlinkBlob({ FType: "lnk" }));
  t.false(isSymlinkBlob({ ftype: "REG" }));
});

test("symbolic permissions: 9 or 10 characters, sticky trailing or in place", (t) => {
  const mode = (p: string, kind: "file" | "directory" = "file") =>
    attributesFromMetadata({ permissions: p }, kind);
  const cases: Array<[string, number]> = [
    ["rwxr-xr-x", 0o755],
    ["rw-r-----", 0o640],
    ["---------", 0o000],
    ["drwxr-xr-x", 0o755],
    ["-rw-r--r--", 0o644],
    ["lrwxrwxrwx", 0o777],
    ["drwxrwxrwt", 0o1777],
    ["drwxrwx--T", 0o1770],
    ["rwxrwxrwxt", 0o1777],
    ["rwxrwxrwxT", 0o1777],
    ["rw-rw-r--t", 0o1664],
    ["rwxrwxrwt", 0o1777],
    ["rwsr-sr-x", 0o755],
    ["rwSr-Sr--", 0o644],
  ];
  for (const [text, expected] of cases) {
    const a = mode(text);
    t.is(a.mode, expected, text);
    t.deepEqual(a.warnings, [], text);
  }
  for (const bad of [
    "rwxr-xr-",
    "rwxr-xr-xx",
    "xwrr-xr-x",
    "rwtr-xr-x",
    "drwxr-xr-xt",
    "0999",
    "abc",
  ]) {
    const f = mode(bad);
    t.is(f.mode, 0o644, bad);
    t.is(f.warnings.length, 1, bad);
    t.regex(f.warnings[0]!, /is not a permission value; using 0644/);
    t.is(mode(bad, "directory").mode, 0o755, bad);
  }
});

test("reads what azcopy writes in both of its styles", (t) => {
  // Default style: posix_owner/posix_group, permissions = decimal st_mode, modtime = Unix ns.
  const plain = {
    posix_owner: "1000",
    posix_group: "1001",
    permissions: "33188", // 0o100644
    modtime: `${T}123456789`,
    posix_atime: `${T}000000000`,
    posix_nlink: "1",
  };
  t.deepEqual(attributesFromMetadata(plain, "file"), {
    mode: 0o644,
    uid: 1000,
    gid: 1001,
    mtimeSec: T,
    warnings: [],
  });
  const dir = { ...plain, permissions: "17407", hdi_isfolder: "true" }; // 0o41777
  t.true(isFolderStub(dir));
  t.is(attributesFromMetadata(dir, "directory").mode, 0o1777);
  const link = { ...plain, permissions: "41471", is_symlink: "true" }; // 0o120777
  t.true(isSymlinkBlob(link));
  t.is(attributesFromMetadata(link, "symlink").mode, 0o777);
  // AMLFS style.
  t.deepEqual(
    attributesFromMetadata(
      { owner: "1000", group: "1001", permissions: "0755", modtime: "2024-05-30 18:36:00 +0000" },
      "file",
    ),
    { mode: 0o755, uid: 1000, gid: 1001, mtimeSec: T, warnings: [] },
  );
  // Octal st_mode with the type bits (as some tools write) also works.
  t.is(attributesFromMetadata({ permissions: "100644" }, "file").mode, 0o644);
  t.is(attributesFromMetadata({ permissions: "0100644" }, "file").mode, 0o644);
});

test("missing attributes take the AMLFS defaults; a bad modtime is undefined with a warning", (t) => {
  t.deepEqual(attributesFromMetadata({}, "file"), {
    mode: 0o644,
    uid: 0,
    gid: 0,
    mtimeSec: undefined,
    warnings: [],
  });
  t.is(attributesFromMetadata({}, "directory").mode, 0o755);
  t.is(attributesFromMetadata({}, "symlink").mode, 0o777);
  const bad = attributesFromMetadata({ modtime: "sometime", owner: "99999999999" }, "file");
  t.is(bad.mtimeSec, undefined);
  t.is(bad.uid, 0);
  t.deepEqual(bad.warnings, [
    'owner "99999999999" is not a valid owner id; using 0',
    'modtime "sometime" is not a time; using the blob\'s Last-Modified',
  ]);
  // An exactly lower-case key wins over other spellings of the same key.
  t.is(attributesFromMetadata({ Owner: "1", owner: "2" }, "file").uid, 2);
  t.is(attributesFromMetadata({ owner: "2", OWNER: "1" }, "file").uid, 2);
  // mtime (rclone) is read when modtime is absent.
  t.is(attributesFromMetadata({ mtime: "2024-05-30T18:36:00.123456789Z" }, "file").mtimeSec, T);
});
