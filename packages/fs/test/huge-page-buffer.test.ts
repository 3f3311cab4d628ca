import { randomBytes } from "node:crypto";
import {
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  statSync,
  utimesSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

import test from "ava";

import { HUGE_PAGE_BUFFER_MIN_BYTES, allocLargeBuffer } from "../src/huge-page-buffer.js";
import { loadNative } from "../src/native.js";

/** The process's anonymous memory on transparent huge pages, in KiB (smaps_rollup). */
const anonHugeKiB = (): number => {
  const m = /^AnonHugePages:\s+(\d+) kB$/m.exec(readFileSync("/proc/self/smaps_rollup", "utf8"));
  if (m === null) throw new Error("no AnonHugePages line in /proc/self/smaps_rollup");
  return Number(m[1]);
};

/** The kernel's THP mode: the bracketed word of .../transparent_hugepage/enabled. */
const thpMode = (): string => {
  try {
    const text = readFileSync("/sys/kernel/mm/transparent_hugepage/enabled", "utf8");
    return /\[(\w+)\]/.exec(text)?.[1] ?? "never";
  } catch {
    return "never";
  }
};

test("a large buffer holds what is written to it, at every offset, and has the length asked for", (t) => {
  const n = 8 * 1024 * 1024 + 12_345; // not a multiple of the 2 MiB huge page
  const buf = allocLargeBuffer(n);
  t.is(buf.length, n);
  const data = randomBytes(n);
  data.copy(buf);
  t.true(buf.equals(data));
  // the last byte, past the last whole huge page
  buf[n - 1] = 0xa5;
  t.is(buf[n - 1], 0xa5);
  // slices are views of the same memory, as the range buffer pool cuts them
  const slice = buf.subarray(4 * 1024 * 1024, 4 * 1024 * 1024 + 16);
  slice.fill(7);
  t.is(buf[4 * 1024 * 1024 + 15], 7);
});

test("the native mapping is zeroed, rejects sizes that are not 1 byte to 4 GiB, and small buffers are ordinary memory", (t) => {
  const native = loadNative();
  const buf = native.hugePageBuffer(3 * 1024 * 1024);
  t.truthy(buf);
  t.is(buf?.length, 3 * 1024 * 1024);
  t.true(buf?.every((b) => b === 0));
  for (const bad of [0, -1, 1.5, Number.NaN, 2 ** 33]) {
    t.throws(() => native.hugePageBuffer(bad), { instanceOf: RangeError }, String(bad));
  }
  const small = allocLargeBuffer(HUGE_PAGE_BUFFER_MIN_BYTES - 1);
  t.is(small.length, HUGE_PAGE_BUFFER_MIN_BYTES - 1);
});

test("touching a large buffer maps huge pages where the kernel offers them (THP enabled: always or madvise)", (t) => {
  const mode = thpMode();
  const n = 64 * 1024 * 1024;
  const before = anonHugeKiB();
  const buf = loadNative().hugePageBuffer(n);
  if (buf === null) return t.fail("the 64 MiB mapping failed");
  for (let i = 0; i < n; i += 4096) buf[i] = 1;
  const after = anonHugeKiB();
  if (mode === "never") {
    t.log("transparent huge pages are off on this kernel: the buffer is ordinary memory");
    t.is(buf.length, n);
    return;
  }
  // Huge pages may be short when memory is fragmented; most of 64 MiB must be on them.
  t.true(after - before >= 32 * 1024, `AnonHugePages grew by ${after - before} KiB (THP ${mode})`);
});

test("readFileHuge and readAsciiExternal read a whole file as readFileSync does, and answer null where the caller must read it the ordinary way", (t) => {
  const native = loadNative();
  const dir = mkdtempSync(join(tmpdir(), "hsmfleet-hugeread-"));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  // ASCII over several huge pages, not a multiple of one
  const ascii = join(dir, "bundle.cjs");
  const text = `${"const x = 1; // ascii only\n".repeat(200_000)}tail`;
  writeFileSync(ascii, text);
  const s = native.readAsciiExternal(ascii);
  t.is(typeof s, "string");
  t.true(s === text, "the external string equals the file's text");
  const b = native.readFileHuge(ascii);
  t.true(b !== null && b.equals(readFileSync(ascii)));
  // one byte that is not ASCII: no string (a one-byte string would misread UTF-8), the bytes yes
  const utf8 = join(dir, "utf8.cjs");
  writeFileSync(utf8, "const unit = /(ns|µs)/;\n");
  t.is(native.readAsciiExternal(utf8), null);
  t.true(native.readFileHuge(utf8)?.equals(readFileSync(utf8)) ?? false);
  // missing, a directory, an empty file, a device: null
  const empty = join(dir, "empty");
  writeFileSync(empty, "");
  for (const p of [join(dir, "missing"), dir, empty, "/dev/null"]) {
    t.is(native.readFileHuge(p), null, p);
    t.is(native.readAsciiExternal(p), null, p);
  }
});

test("newestMtimeMs gives the newest mtime of files under a directory, and -1 when one is missing", (t) => {
  const native = loadNative();
  const dir = mkdtempSync(join(tmpdir(), "hsmfleet-mtimes-"));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  mkdirSync(join(dir, "a"));
  writeFileSync(join(dir, "a", "x.js"), "");
  writeFileSync(join(dir, "y.js"), "");
  utimesSync(join(dir, "a", "x.js"), 1_000, 1_000);
  utimesSync(join(dir, "y.js"), 2_000, 2_000.25);
  t.is(native.newestMtimeMs(dir, ["a/x.js", "y.js"]), statSync(join(dir, "y.js")).mtimeMs);
  t.is(native.newestMtimeMs(dir, ["a/x.js"]), 1_000_000);
  t.is(native.newestMtimeMs(dir, []), 0);
  t.is(native.newestMtimeMs(dir, ["a/x.js", "gone.js"]), -1);
  t.is(native.newestMtimeMs(join(dir, "missing"), ["y.js"]), -1);
  t.throws(() => native.newestMtimeMs(dir, "y.js" as unknown as string[]), {
    instanceOf: TypeError,
  });
});
