import { lstatSync, mkdirSync, symlinkSync, writeFileSync } from "node:fs";

import test from "ava";

import { FsOperationError, fidForInode, formatFid } from "@hsmfleet/core";

import { HsmEmulationBackend, fidBatch } from "../src/index.js";
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

  const fids = await fidBatch(paths, 2);
  for (const [i, p] of paths.slice(0, 7).entries()) {
    const st = lstatSync(p, { bigint: true });
    t.is(fids[i], formatFid(fidForInode(st.dev, st.ino)), `path ${i}`);
  }
  t.not(fids[6], fids[0], "a symlink has its own FID, not its target's");
  t.like(fids[7], { operation: "path2fid", code: "ENOENT" });
  t.true(fids[7] instanceof FsOperationError);
  t.regex((fids[7] as Error).message, /path2fid .*missing: ENOENT \(no such file or directory\)/);
  t.like(fids[8], { operation: "path2fid", code: "EINVAL" });

  const hsm = new HsmEmulationBackend({ xattr: "user.hsm" });
  t.is(await hsm.fid(paths[1]!), fids[1] as string);
  t.deepEqual(await hsm.fids(paths.slice(0, 7)), fids.slice(0, 7));
  t.deepEqual(await fidBatch([]), []);
});
