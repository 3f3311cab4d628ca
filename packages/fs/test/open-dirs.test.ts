import { mkdirSync, symlinkSync, writeFileSync } from "node:fs";

import test from "ava";

import { HSM_COMPAT, encodeHsmAttrs } from "@hsmfleet/core";

import type { DirEntry, DirReader, OpenedDir } from "../src/index.js";
import { jobRootFor, openDir, openDirsBeneath, setXattr } from "../src/index.js";
import { pathIn, tempDir } from "./helpers.js";

const XATTR = "user.hsm";

/** Every entry of a reader, read to its end and closed. */
const readAll = async (reader: DirReader): Promise<DirEntry[]> => {
  const out: DirEntry[] = [];
  try {
    for (let b = await reader.read(); b !== null; b = await reader.read()) out.push(...b);
  } finally {
    await reader.close();
  }
  return out;
};

/** Every entry of one directory of openDirsBeneath: its first batch, then the rest. */
const readOpened = async (o: OpenedDir): Promise<DirEntry[]> => [
  ...(o.first?.entries() ?? []),
  ...(o.rest ? await readAll(o.rest) : []),
];

/** openDir of `rel` beneath `root`, as the walk calls it: its entries, or its rejection. */
const openDirOf = async (
  root: string,
  rel: string,
  batchSize: number,
): Promise<DirEntry[] | Error> => {
  const rootFd = (await jobRootFor(root)).fd;
  try {
    const reader = await openDir(pathIn(root, rel), {
      hsmXattr: XATTR,
      batchSize,
      beneath: { rootFd, rel: Buffer.from(rel) },
    });
    return await readAll(reader);
  } catch (err) {
    return err as Error;
  }
};

const tree = async (root: string): Promise<void> => {
  mkdirSync(`${root}/small`);
  for (let i = 0; i < 5; i++) {
    writeFileSync(`${root}/small/f${i}`, "x".repeat(i * 10));
    if (i % 2 === 0)
      await setXattr(
        pathIn(root, `small/f${i}`),
        XATTR,
        encodeHsmAttrs({ compat: HSM_COMPAT, flags: 0x9, archiveId: 1n, archiveVersion: 0n }),
      );
  }
  mkdirSync(`${root}/small/sub`);
  symlinkSync("f0", `${root}/small/link`);
  mkdirSync(`${root}/empty`);
  mkdirSync(`${root}/big`);
  for (let i = 0; i < 2500; i++) writeFileSync(`${root}/big/n${i}`, "");
  mkdirSync(`${root}/after`);
  writeFileSync(`${root}/after/one`, "1");
  writeFileSync(`${root}/file`, "not a directory");
  symlinkSync("small", `${root}/link-to-dir`);
};

test("openDirsBeneath reads each directory as openDir does, and fails each as openDir does", async (t) => {
  const root = await tempDir(t);
  await tree(root);
  const rels = ["small", "empty", "nope", "file", "link-to-dir", "small/sub", "", "../x"];
  // A directory's first read sets its atime (relatime), which its parent's listing shows: read
  // each once before comparing.
  for (const rel of rels) await openDirOf(root, rel, 4096);
  const rootFd = (await jobRootFor(root)).fd;
  const got = await openDirsBeneath(
    rootFd,
    rels.map((r) => Buffer.from(r)),
    rels.map((r) => (r === "" ? Buffer.from(root) : pathIn(root, r))),
    { hsmXattr: XATTR, batchSize: 4096 },
  );
  t.is(got.length, rels.length);
  for (let i = 0; i < rels.length; i++) {
    const rel = rels[i]!;
    const want = await openDirOf(root, rel, 4096);
    const g = got[i];
    if (want instanceof Error) {
      t.true(g instanceof Error, rel);
      const e = g as Error & { code?: string; operation?: string };
      const w = want as Error & { code?: string; operation?: string };
      t.is(e.constructor, w.constructor, rel);
      t.is(e.message, w.message, rel);
      t.is(e.code, w.code, rel);
      t.is(e.operation, w.operation, rel);
    } else {
      t.false(g === undefined || g instanceof Error, rel);
      const entries = await readOpened(g as OpenedDir);
      t.deepEqual(entries, want, rel);
      t.is((g as OpenedDir).rest, undefined, `${rel} is read whole in the job`);
    }
  }
  // The errors are the ones openDir gives: ENOENT, ENOTDIR and the refused symlink.
  t.is((got[2] as Error & { code?: string }).code, "ENOENT");
  t.is((got[3] as Error & { code?: string }).code, "ENOTDIR");
});

test("openDirsBeneath stops after about one batch of entries: a big directory's rest comes from its reader, later ones are left undefined", async (t) => {
  const root = await tempDir(t);
  await tree(root);
  const rels = ["small", "big", "after", "empty"];
  const rootFd = (await jobRootFor(root)).fd;
  const got = await openDirsBeneath(
    rootFd,
    rels.map((r) => Buffer.from(r)),
    rels.map((r) => pathIn(root, r)),
    { hsmXattr: XATTR, batchSize: 1000 },
  );
  const small = got[0] as OpenedDir;
  t.deepEqual(await readOpened(small), await openDirOf(root, "small", 1000));
  const big = got[1] as OpenedDir;
  t.is(big.first?.count, 1000);
  t.not(big.rest, undefined);
  const bigEntries = await readOpened(big);
  t.is(bigEntries.length, 2500);
  t.deepEqual(bigEntries, await openDirOf(root, "big", 1000));
  // 7 + 1000 entries read: the job stopped there.
  t.is(got[2], undefined);
  t.is(got[3], undefined);
});

test("openDirsBeneath of no directories, and of directories refused before the native call only", async (t) => {
  const root = await tempDir(t);
  const rootFd = (await jobRootFor(root)).fd;
  t.deepEqual(await openDirsBeneath(rootFd, [], []), []);
  const got = await openDirsBeneath(
    rootFd,
    [Buffer.from("/abs"), Buffer.from("a//b")],
    [Buffer.from("/abs"), pathIn(root, "a//b")],
  );
  t.true(got.every((g) => g instanceof Error));
});
