import test from "ava";
import { displayPath, joinPathBytes, resolveUnderRoot } from "../src/index.js";

test("joins raw names without decoding them", (t) => {
  const name = Buffer.from([0x66, 0xff, 0x0a]);
  t.deepEqual(joinPathBytes(Buffer.alloc(0), name), name);
  t.deepEqual(joinPathBytes(Buffer.from("a/b"), name), Buffer.concat([Buffer.from("a/b/"), name]));
  t.deepEqual(resolveUnderRoot(Buffer.from("/mnt/fs"), Buffer.alloc(0)), Buffer.from("/mnt/fs"));
  t.deepEqual(resolveUnderRoot(Buffer.from("/mnt/fs"), Buffer.from("x")), Buffer.from("/mnt/fs/x"));
});

test("display form escapes invalid UTF-8, control characters and backslashes, keeps unicode", (t) => {
  t.is(displayPath(Buffer.from("dir/ünï 日本 %20")), "dir/ünï 日本 %20");
  t.is(displayPath(Buffer.from([0x62, 0x61, 0x64, 0xff, 0xfe])), "bad\\xff\\xfe");
  t.is(displayPath(Buffer.from("new\nline\ttab")), "new\\x0aline\\x09tab");
  t.is(displayPath(Buffer.from("back\\slash")), "back\\\\slash");
  // Mixed: valid multi-byte sequences survive next to invalid bytes.
  t.is(
    displayPath(Buffer.concat([Buffer.from("é"), Buffer.from([0xc3]), Buffer.from("\n")])),
    "é\\xc3\\x0a",
  );
});
