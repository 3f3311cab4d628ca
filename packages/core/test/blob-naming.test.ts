import test from "ava";
import {
  BLOB_NAME_MAX_CHARS,
  BLOB_NAME_MAX_SEGMENTS,
  BlobNameError,
  UsageError,
  blobNameForPath,
  normalizePrefix,
  pathForBlobName,
} from "../src/index.js";

const b = (s: string): Buffer => Buffer.from(s, "utf8");
const bytes = (...parts: Array<string | number[]>): Buffer =>
  Buffer.concat(
    parts.map((p) => (typeof p === "string" ? Buffer.from(p, "utf8") : Buffer.from(p))),
  );

test("plain names are kept as-is, like AMLFS and azcopy write them", (t) => {
  for (const p of [
    "a",
    "dir/file.txt",
    "with space/100% done/#hash?q=1&x",
    "ünïcödé/日本語/emoji 🎉",
    "a.b/.hidden/..dots.x",
    "~tilde/[brackets]/{braces}/'quote\"",
  ]) {
    t.is(blobNameForPath(b(p)), p, p);
  }
  t.is(blobNameForPath(b("x/y"), "exports/run1"), "exports/run1/x/y");
  t.is(blobNameForPath(b("x/y"), "/exports/run1/"), "exports/run1/x/y");
  t.is(blobNameForPath(b("x/y"), ""), "x/y");
});

test("special bytes are written as U+EF00 + byte", (t) => {
  t.is(blobNameForPath(b("new\nline")), "new\uef0aline");
  t.is(blobNameForPath(b("tab\there/del\x7f")), "tab\uef09here/del\uef7f");
  t.is(blobNameForPath(b("back\\slash")), "back\uef5cslash");
  t.is(blobNameForPath(b("file.")), "file\uef2e");
  t.is(blobNameForPath(b("dir../x")), "dir.\uef2e/x");
  t.is(blobNameForPath(b("...")), "..\uef2e");
  t.is(blobNameForPath(bytes("bad", [0xff, 0xfe])), "bad\uefff\ueffe");
  // Overlong '/', a surrogate and a truncated sequence are invalid UTF-8: escaped byte by byte.
  t.is(blobNameForPath(bytes([0xc0, 0xaf])), "\uefc0\uefaf");
  t.is(blobNameForPath(bytes([0xed, 0xa0, 0x80])), "\uefed\uefa0\uef80");
  t.is(blobNameForPath(bytes("x", [0xe6, 0x97])), "x\uefe6\uef97");
  // A literal U+EF41 is escaped as its three UTF-8 bytes EE BD 81.
  t.is(blobNameForPath(b("pua\uef41")), "pua\uefee\uefbd\uef81");
  // Its neighbours just outside the range stay literal.
  t.is(blobNameForPath(b("\ueeff\uf000")), "\ueeff\uf000");
});

test("every path survives the round trip byte for byte", (t) => {
  const seg255 = "é".repeat(127) + "s"; // 255 bytes (NAME_MAX), multi-byte characters
  const paths: Buffer[] = [
    b("a"),
    b("dir/sub/file.txt"),
    b("with space/per%20cent/%/+plus"),
    b("ünï/日本/🎉/\u00a0nbsp"),
    bytes("latin1-", [0xe9, 0x74, 0xe9], "/x"),
    bytes([0x80], "/", [0xff, 0xff, 0xff], "/", [0xc3], "é"),
    b("new\nline/car\rreturn/\x01\x1f"),
    b("back\\slash/\\\\/\\"),
    b("trailing./dots../.../x."),
    b("pua\uef41/\uef00\uefff/\uee00"),
    b(".hidden/..x/x.."),
    b("s".repeat(255) + "/" + "t".repeat(255)),
    b(seg255),
    bytes([0xee, 0xbc], "/", [0xee, 0xbc, 0x80], "/", [0xee]),
    b("del\x7f/é."),
  ];
  for (let i = 0; i < 256; i++) {
    if (i === 0 || i === 0x2f) continue; // not allowed in POSIX names
    paths.push(bytes("byte", [i], "x"), bytes([i]));
  }
  for (const p of paths) {
    if ((p.length === 1 && p[0] === 0x2e) || p.equals(b(".."))) continue;
    const name = blobNameForPath(p);
    // eslint-disable-next-line no-control-regex
    t.false(/[\x00-\x1f\x7f\\]/.test(name), `no control or backslash in ${JSON.stringify(name)}`);
    t.false(/\.(\/|$)/.test(name), `no segment ends with '.' in ${JSON.stringify(name)}`);
    t.deepEqual(pathForBlobName(name), p, JSON.stringify(name));
    t.deepEqual(pathForBlobName(blobNameForPath(p, "pre/fix"), "pre/fix"), p);
  }
});

test("names of exactly 1024 characters and 254 segments are allowed; one more fails", (t) => {
  const ok = "x".repeat(BLOB_NAME_MAX_CHARS);
  t.is(blobNameForPath(b(ok)), ok);
  const tooLong = t.throws(() => blobNameForPath(b("x".repeat(BLOB_NAME_MAX_CHARS + 1))), {
    instanceOf: BlobNameError,
  });
  t.is(tooLong.reason, "too-long");
  t.regex(tooLong.message, /1025 characters; Azure allows at most 1024/);
  t.regex(tooLong.message, /^x{1025}:/);

  // The prefix counts: 1020 + "ab/" = 1023 + 1.
  t.is(blobNameForPath(b("x".repeat(1021)), "ab").length, 1024);
  t.throws(() => blobNameForPath(b("x".repeat(1022)), "ab"), { instanceOf: BlobNameError });

  // Escapes count as one character each (UTF-16 code units of the final name).
  t.is(blobNameForPath(b("x".repeat(1023) + "\n")).length, 1024);

  const segs = (n: number) => Array.from({ length: n }, () => "d").join("/");
  t.is(blobNameForPath(b(segs(BLOB_NAME_MAX_SEGMENTS))), segs(254));
  const tooDeep = t.throws(() => blobNameForPath(b(segs(255))), { instanceOf: BlobNameError });
  t.is(tooDeep.reason, "too-many-segments");
  t.regex(tooDeep.message, /255 path segments; Azure allows at most 254/);
  t.throws(() => blobNameForPath(b(segs(253)), "p/q"), { instanceOf: BlobNameError });
});

test("malformed relative paths are refused on export", (t) => {
  t.is(
    t.throws(() => blobNameForPath(Buffer.alloc(0)), { instanceOf: BlobNameError }).reason,
    "empty",
  );
  for (const p of ["/abs", "a//b", "a/", "a/./b", "a/../b", ".", ".."]) {
    const err = t.throws(() => blobNameForPath(b(p)), { instanceOf: BlobNameError }, p);
    t.is(err.reason, "unsafe");
  }
  t.throws(() => blobNameForPath(bytes([0xff], "//x")), { instanceOf: BlobNameError });
});

test("prefixes are normalized and checked", (t) => {
  t.is(normalizePrefix(undefined), "");
  t.is(normalizePrefix(""), "");
  t.is(normalizePrefix("/"), "");
  t.is(normalizePrefix("/a/b/"), "a/b");
  t.is(normalizePrefix("a/b"), "a/b");
  for (const p of ["a//b", "a/../b", "./a", "a./b", "a\\b", "a\nb"]) {
    t.throws(() => normalizePrefix(p), { instanceOf: UsageError }, p);
  }
});

test("import refuses names that would escape the target or are not plain relative paths", (t) => {
  const refuse = (name: string, prefix?: string) => {
    const err = t.throws(() => pathForBlobName(name, prefix), { instanceOf: BlobNameError }, name);
    t.is(err.reason, "unsafe", name);
    return err;
  };
  refuse("../x");
  refuse("a/../../x");
  refuse("/abs");
  refuse("a/./b");
  refuse("a//b");
  refuse("a/..");
  refuse("..\\x");
  refuse("a\\b");
  refuse("nul\uef00byte");
  refuse("\uef2e\uef2e/x"); // escape decoding to ".."
  refuse("a/\uef2e"); // "."
  refuse("a\uef2fb"); // an escaped '/'
  refuse("lone\ud800surrogate");
  refuse("other/x", "pre");
  refuse("prefix-not-a-dir/x", "prefix");
  t.regex(
    refuse("a/../../x").message,
    /blob "a\/..\/..\/x" cannot be imported: it has a '..' segment/,
  );
  t.is(t.throws(() => pathForBlobName(""), { instanceOf: BlobNameError }).reason, "empty");
  t.is(
    t.throws(() => pathForBlobName("pre/", "pre"), { instanceOf: BlobNameError }).reason,
    "empty",
  );
});

test("import accepts directory stubs, names from other tools and prefixes", (t) => {
  t.deepEqual(pathForBlobName("dir/"), b("dir"));
  t.deepEqual(pathForBlobName("a/b/"), b("a/b"));
  t.deepEqual(pathForBlobName("pre/fix/a/b", "/pre/fix/"), b("a/b"));
  t.deepEqual(pathForBlobName("pre/a/", "pre"), b("a"));
  // azcopy keeps control characters literally; they decode to themselves.
  t.deepEqual(pathForBlobName("line\nfeed"), b("line\nfeed"));
  t.deepEqual(pathForBlobName("日本/🎉"), b("日本/🎉"));
  t.deepEqual(pathForBlobName("x\uef5cy"), b("x\\y"));
  t.throws(() => pathForBlobName("a//"), { instanceOf: BlobNameError });
});

test("noncharacters U+FFFE and U+FFFF are escaped byte by byte and round-trip", (t) => {
  const raw = Buffer.from("a\uFFFEb\uFFFF", "utf8");
  const name = blobNameForPath(raw);
  t.is(name, "a\uEFEF\uEFBF\uEFBEb\uEFEF\uEFBF\uEFBF");
  t.deepEqual(pathForBlobName(name), raw);
});
