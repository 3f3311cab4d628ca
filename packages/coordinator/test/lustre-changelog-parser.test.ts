import test from "ava";
import { ChangelogParseError, parseChangelogLine } from "../src/index.js";

// Verbatim from the Lustre manual ("Monitoring File System Activity": lfs changelog).
const MANUAL = [
  "1 02MKDIR 15:15:21.977666834 2018.01.09 0x0 t=[0x200000402:0x1:0x0] j=mkdir.500 ef=0xf u=500:500 nid=10.128.11.159@tcp p=[0x200000007:0x1:0x0] pics",
  "2 01CREAT 15:15:36.687592024 2018.01.09 0x0 t=[0x200000402:0x2:0x0] j=cp.500 ef=0xf u=500:500 nid=10.128.11.159@tcp p=[0x200000402:0x1:0x0] chloe.jpg",
  "3 06UNLNK 15:15:41.305116815 2018.01.09 0x1 t=[0x200000402:0x2:0x0] j=rm.500 ef=0xf u=500:500 nid=10.128.11.159@tcp p=[0x200000402:0x1:0x0] chloe.jpg",
  "4 07RMDIR 15:15:46.468790091 2018.01.09 0x1 t=[0x200000402:0x1:0x0] j=rmdir.500 ef=0xf u=500:500 nid=10.128.11.159@tcp p=[0x200000007:0x1:0x0] pics",
];

test("lfs changelog: the manual's MKDIR, CREAT, UNLNK and RMDIR records", (t) => {
  const [mkdir, creat, unlnk, rmdir] = MANUAL.map((l) =>
    parseChangelogLine(l, "lustre:testfs-MDT0000"),
  );
  t.like(mkdir, {
    source: "lustre:testfs-MDT0000",
    index: "1",
    type: "MKDIR",
    flags: 0,
    target: "[0x200000402:0x1:0x0]",
    parent: "[0x200000007:0x1:0x0]",
    name: "pics",
  });
  t.is(mkdir!.time, new Date(2018, 0, 9, 15, 15, 21, 977).getTime());
  t.like(creat, { type: "CREAT", parent: "[0x200000402:0x1:0x0]", name: "chloe.jpg" });
  t.like(unlnk, { type: "UNLNK", flags: 1, lastLink: true, hsmExists: false, name: "chloe.jpg" });
  t.like(rmdir, { type: "RMDIR", name: "pics", target: "[0x200000402:0x1:0x0]" });
});

test("lfs changelog: a rename (s=/sp= then p=), names with spaces, records without a name, HSM-exists unlinks", (t) => {
  const renme = parseChangelogLine(
    "9 08RENME 20:07:21.386834234 2020.07.10 0x0 t=[0:0x0:0x0] j=mv.0 ef=0xf u=0:0 nid=0@lo s=[0x200000402:0x4:0x0] sp=[0x200000007:0x1:0x0] old name p=[0x200000402:0x1:0x0] new name.txt",
    "lustre:fs-MDT0000",
  );
  t.like(renme, {
    type: "RENME",
    target: "[0x200000402:0x4:0x0]",
    sourceParent: "[0x200000007:0x1:0x0]",
    sourceName: "old name",
    parent: "[0x200000402:0x1:0x0]",
    name: "new name.txt",
  });
  const sattr = parseChangelogLine(
    "10 14SATTR 08:55:52.053436377 2019.07.29 0x44 t=[0x200000401:0x2:0x0] j=chmod.0 ef=0xf u=0:0 nid=0@lo",
    "lustre:fs-MDT0000",
  );
  t.like(sattr, {
    type: "SATTR",
    flags: 0x44,
    parent: "",
    name: "",
    target: "[0x200000401:0x2:0x0]",
  });
  // Without jobid or extra fields (older servers, or a changelog mask without them), HSM padded.
  const hsm = parseChangelogLine(
    "11 16HSM   08:55:52.5 2019.07.29 0x280 t=[0x200000401:0x2:0x0]",
    "x",
  );
  t.like(hsm, { type: "HSM", flags: 0x280 });
  const unlnk = parseChangelogLine(
    "12 06UNLNK 08:55:52.053436377 2019.07.29 0x3 t=[0x200000401:0x2:0x0] p=[0x200000007:0x1:0x0] f",
    "x",
  );
  t.like(unlnk, { hsmExists: true, lastLink: true });
  t.throws(() => parseChangelogLine("garbage", "x"), { instanceOf: ChangelogParseError });
  t.throws(() => parseChangelogLine("13 99BOGUS 08:55:52.0 2019.07.29 0x0 t=[0x1:0x2:0x0]", "x"), {
    message: /unknown record type BOGUS/,
  });
});
