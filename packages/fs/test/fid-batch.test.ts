import { lstatSync, mkdirSync, symlinkSync, writeFileSync } from "node:fs";

import test from "ava";

import { FsOperationError, fidForInode, formatFid } from "@hsmfleet/core";

import {
  HsmEmulationBackend,
  JobRoot,
  UnsafePathError,
  fidBatch,
  hsmAtAbsolutePaths,
  setOpenat2Disabled,
} from "../src/index.js";
import { pathIn, tempDir } from "./helpers.js";

test("native FIDs are core's fidForInode of lstat, for files, directories and symlinks, in order", async (t) => {
  const dir = await tempDir(t, "hsmfleet-fidb-");
  const paths: Buffer[] = [];
  for (let i = 0; i < 5; i++) {
    const p = pathIn(dir, Buffer.from([0x66, 0xff, 0x30 + i])); // non-UTF-8 names
    writeFileSync(p, "x");
    paths.push(p);
  }
  mkdirSync(pathIn(dir, "sub"));
  paths.push(pathIn(dir, "sub"));
  symlinkSync(paths[0]!, pathIn(dir, "link"));
  paths.push(pathIn(dir, "link"));
  paths.push(pathIn(dir, "missing"));
  paths.push(Buffer.from(`${dir}/a\0b`));
  const root = await JobRoot.open(dir);
  t.teardown(() => root.close());
  const rels = paths.map((p) => p.subarray(Buffer.byteLength(dir) + 1));

  const fids = await fidBatch(root, rels, { chunkFiles: 2 });
  for (const [i, p] of paths.slice(0, 7).entries()) {
    const st = lstatSync(p, { bigint: true });
    t.is(fids[i], formatFid(fidForInode(st.dev, st.ino)), `path ${i}`);
  }
  t.not(fids[6], fids[0], "a symlink has its own FID, not its target's");
  t.like(fids[7], { operation: "path2fid", code: "ENOENT" });
  t.true(fids[7] instanceof FsOperationError);
  t.regex(
    (fids[7] as Error).message,
    /path2fid .*missing: ENOENT \(open: no such file or directory\)/,
  );
  t.true(fids[8] instanceof UnsafePathError, "a NUL byte is refused before anything runs");

  const hsm = hsmAtAbsolutePaths(new HsmEmulationBackend({ xattr: "user.hsm" }));
  t.is(await hsm.fid(paths[1]!), fids[1] as string);
  t.deepEqual(await hsm.fids(paths.slice(0, 7)), fids.slice(0, 7));
  t.deepEqual(await fidBatch(root, []), []);
});

test("FIDs are looked up beneath the root: a symlinked directory on the way is refused by name, a non-regular file with regularOnly", async (t) => {
  const dir = await tempDir(t, "hsmfleet-fidb-");
  mkdirSync(`${dir}/root/real`, { recursive: true });
  mkdirSync(`${dir}/outside`);
  writeFileSync(`${dir}/outside/f`, "outside");
  writeFileSync(`${dir}/root/real/f`, "inside");
  symlinkSync(`${dir}/outside`, `${dir}/root/d`);
  for (const fallback of [false, true]) {
    setOpenat2Disabled(fallback);
    t.teardown(() => setOpenat2Disabled(false));
    const root = await JobRoot.open(`${dir}/root`);
    const [viaLink, real, directory] = await fidBatch(
      root,
      [Buffer.from("d/f"), Buffer.from("real/f"), Buffer.from("real")],
      { regularOnly: true },
    );
    t.true(viaLink instanceof UnsafePathError, String(viaLink));
    t.regex(
      String((viaLink as Error).message),
      /root\/d: is a symlink \(not followed; path2fid .*root\/d\/f refused\)/,
    );
    const st = lstatSync(`${dir}/root/real/f`, { bigint: true });
    t.is(real, formatFid(fidForInode(st.dev, st.ino)));
    t.regex(
      String((directory as Error).message),
      /path2fid .*root\/real: EINVAL \(not a regular file\)/,
    );
    root.close();
  }
});
