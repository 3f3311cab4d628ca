import test from "ava";
import {
  HSM_ATTRS_SIZE,
  HsmAttrsDecodeError,
  HsmFlag,
  decodeHsmAttrs,
  encodeHsmAttrs,
  formatHsmState,
  hsmStateName,
} from "../src/index.js";

test("hsm_attrs is 24 little-endian bytes: compat, flags, archive id, archive version", (t) => {
  const attrs = { compat: 1, flags: 0xd, archiveId: 1n, archiveVersion: 2n ** 64n - 1n };
  const bytes = encodeHsmAttrs(attrs);
  t.is(bytes.length, HSM_ATTRS_SIZE);
  t.is(bytes.toString("hex"), "010000000d0000000100000000000000ffffffffffffffff");
  t.deepEqual(decodeHsmAttrs(bytes), attrs);
});

test("a short trusted.hsm value is refused with its length", (t) => {
  const err = t.throws(() => decodeHsmAttrs(Buffer.alloc(12)), { instanceOf: HsmAttrsDecodeError });
  t.regex(err.message, /12 bytes; struct hsm_attrs needs 24/);
});

test("lfs hsm_state format for the states AMLFS documents", (t) => {
  const s = (flags: number, archiveId = 1n) => ({
    compat: 1,
    flags,
    archiveId,
    archiveVersion: 0n,
  });
  t.is(formatHsmState("f", undefined), "f: (0x00000000)");
  t.is(formatHsmState("f", s(0x1)), "f: (0x00000001) exists, archive_id:1");
  t.is(formatHsmState("f", s(0x9)), "f: (0x00000009) exists archived, archive_id:1");
  t.is(formatHsmState("f", s(0xb)), "f: (0x0000000b) exists dirty archived, archive_id:1");
  t.is(formatHsmState("f", s(0xd)), "f: (0x0000000d) released exists archived, archive_id:1");
  t.is(
    formatHsmState(
      "f",
      s(HsmFlag.Exists | HsmFlag.NoRelease | HsmFlag.NoArchive | HsmFlag.Lost, 0n),
    ),
    "f: (0x00000071) exists never_release never_archive lost_from_hsm",
  );
});

test("one state name per file, most significant flag first", (t) => {
  const s = (flags: number) => ({ compat: 1, flags, archiveId: 1n, archiveVersion: 0n });
  t.is(hsmStateName(undefined), "new");
  t.is(hsmStateName(s(0)), "new");
  t.is(hsmStateName(s(0x1)), "exists");
  t.is(hsmStateName(s(0x9)), "archived");
  t.is(hsmStateName(s(0xb)), "dirty");
  t.is(hsmStateName(s(0xd)), "released");
  t.is(hsmStateName(s(0x4d)), "lost");
});
