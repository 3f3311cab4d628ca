import { mkdirSync, symlinkSync, writeFileSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { join } from "node:path";
import { Readable } from "node:stream";

import test from "ava";

import { expandOperands, readPathList } from "../src/path-list.js";

const collect = async (it: AsyncIterable<Buffer>): Promise<string[]> => {
  const out: string[] = [];
  for await (const b of it) out.push(b.toString("latin1"));
  return out;
};

const chunks = (...parts: (string | Buffer)[]) =>
  Readable.from(parts.map((p) => (typeof p === "string" ? Buffer.from(p, "latin1") : p)));

test("newline lists: CRLF, blank lines and a missing final newline", async (t) => {
  t.deepEqual(await collect(readPathList(chunks("a\r\nb\n\nc/d", "e\nf"))), [
    "a",
    "b",
    "c/de",
    "f",
  ]);
});

test("NUL lists are detected, keep newlines inside names, and split across chunks", async (t) => {
  t.deepEqual(await collect(readPathList(chunks("x\ny\0z", "z\0\xff\0"))), ["x\ny", "zz", "\xff"]);
  t.deepEqual(await collect(readPathList(chunks("a\nb"), "nul")), ["a\nb"]);
});

test("-r walks directories (regular files only, symlinks not followed); files pass as is", async (t) => {
  const dir = await mkdtemp("/tmp/hsmfleet-pl-");
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  mkdirSync(join(dir, "a/b"), { recursive: true });
  writeFileSync(join(dir, "a/f1"), "");
  writeFileSync(join(dir, "a/b/f2"), "");
  symlinkSync(join(dir, "a/f1"), join(dir, "a/link"));
  const walked = (await collect(expandOperands([Buffer.from(join(dir, "a"))], true))).sort();
  t.deepEqual(walked, [join(dir, "a/b/f2"), join(dir, "a/f1")]);
  t.deepEqual(await collect(expandOperands([Buffer.from(join(dir, "a"))], false)), [
    join(dir, "a"),
  ]);
  await t.throwsAsync(collect(expandOperands([Buffer.from(join(dir, "nope"))], true)), {
    message: /lstat .*nope: ENOENT/,
  });
});
