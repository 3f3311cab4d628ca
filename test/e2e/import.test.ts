import { createHash } from "node:crypto";
import {
  lstat,
  mkdir,
  readFile,
  readdir,
  readlink,
  stat,
  symlink,
  utimes,
  writeFile,
} from "node:fs/promises";
import { join } from "node:path";
import test from "ava";
import type { ExecutionContext } from "ava";
import { BlobServiceClient } from "@azure/storage-blob";
import type { ContainerClient } from "@azure/storage-blob";
import { parseStorageTarget } from "@hsmfleet/blob";
import type { StorageTarget } from "@hsmfleet/blob";
import { HSM_COMPAT, HsmFlag, decodeHsmAttrs, encodeHsmAttrs } from "@hsmfleet/core";
import { runExportJob, runImportJob, runRestoreJob } from "@hsmfleet/coordinator";
import type { ImportSummary } from "@hsmfleet/coordinator";
import { getXattr, setXattr } from "@hsmfleet/fs";
import type { NatsConnection } from "@hsmfleet/bus";
import { contentOf, generateTree, tempDir } from "@hsmfleet/testkit";
import { runCli, startBus, startStorage, startWorkers } from "./helpers.js";

const md5 = (b: Buffer) => createHash("md5").update(b).digest("hex");
const SLASH = Buffer.from("/");

interface Env {
  nc: NatsConnection;
  storage: StorageTarget;
  service: BlobServiceClient;
  dir: string;
}

const setup = async (t: ExecutionContext, workers = 2): Promise<Env> => {
  const tmp = await tempDir();
  t.teardown(() => tmp.cleanup());
  const azurite = await startStorage(t);
  const storage = parseStorageTarget(azurite.connectionString)!;
  const { server, nc } = await startBus(t);
  await startWorkers(t, server.url, workers, undefined, { storage });
  return {
    nc,
    storage,
    service: BlobServiceClient.fromConnectionString(azurite.connectionString),
    dir: tmp.path,
  };
};

interface Seen {
  type: "file" | "directory" | "symlink" | "other";
  mode: number;
  uid: number;
  gid: number;
  mtimeSec: number;
  size: number;
  md5?: string;
  target?: string;
}

/** Every entry under `root` (raw names, base64 keys) with what a round trip must keep. */
const snapshot = async (root: string, withData = true): Promise<Map<string, Seen>> => {
  const out = new Map<string, Seen>();
  const walk = async (rel: Buffer) => {
    const abs = rel.length ? Buffer.concat([Buffer.from(root), SLASH, rel]) : Buffer.from(root);
    for (const name of await readdir(abs, { encoding: "buffer" })) {
      const childRel = rel.length ? Buffer.concat([rel, SLASH, name]) : name;
      const childAbs = Buffer.concat([abs, SLASH, name]);
      if (name.toString().startsWith("IMPORT_")) continue;
      const st = await lstat(childAbs);
      const seen: Seen = {
        type: st.isFile()
          ? "file"
          : st.isDirectory()
            ? "directory"
            : st.isSymbolicLink()
              ? "symlink"
              : "other",
        mode: st.isSymbolicLink() ? 0 : st.mode & 0o1777,
        uid: st.uid,
        gid: st.gid,
        mtimeSec: Math.floor(st.mtimeMs / 1000),
        size: st.isDirectory() ? 0 : st.size,
      };
      if (st.isFile() && withData) seen.md5 = md5(await readFile(childAbs));
      if (st.isSymbolicLink())
        seen.target = (await readlink(childAbs, { encoding: "buffer" })).toString("base64");
      out.set(childRel.toString("base64"), seen);
      if (st.isDirectory()) await walk(childRel);
    }
  };
  await walk(Buffer.alloc(0));
  return out;
};

const hsmFlags = async (path: string): Promise<number | undefined> => {
  const v = await getXattr(Buffer.from(path), "trusted.hsm");
  return v ? decodeHsmAttrs(v).flags : undefined;
};

const makeTree = async (root: string) => {
  const manifest = await generateTree(root, {
    depth: 2,
    fanout: 2,
    filesPerDir: 3,
    symlinksPerDir: 1,
    oddNames: true,
    sizes: [0, 1, 4096, 300_000],
    modes: [0o644, 0o600, 0o1777, 0o755],
    owners: [
      { uid: 0, gid: 0 },
      { uid: 1234, gid: 5678 },
    ],
  });
  await writeFile(join(root, "big.bin"), contentOf(3, Buffer.from("big"), 20 * 1024 * 1024 + 123));
  for (const d of ["dir-0", "dir-1/dir-0", "."])
    await utimes(join(root, d), new Date("2020-01-02T03:04:05Z"), new Date("2020-01-02T03:04:05Z"));
  return manifest;
};

test("round trip: export, then import --mode full into an empty directory gives the same tree (names, contents, modes, owners, mtimes, symlinks)", async (t) => {
  const env = await setup(t);
  const src = join(env.dir, "src");
  await makeTree(src);
  const exported = await runExportJob({
    nc: env.nc,
    root: src,
    container: "roundtrip-imp",
    storage: env.storage,
  });
  t.is(exported.state, "succeeded");
  const dst = join(env.dir, "dst");
  await mkdir(dst);
  const summary = await runImportJob({
    nc: env.nc,
    target: dst,
    container: "roundtrip-imp",
    mode: "full",
    storage: env.storage,
  });
  t.like(summary, {
    state: "succeeded",
    totalErrors: 0,
    totalConflicts: 0,
    importedFiles: exported.filesExported,
    importedDirectories: exported.directoriesExported,
    importedSymlinks: exported.symlinksExported,
    preexistingFiles: 0,
  });
  t.is(summary.bytesImported, exported.bytes);
  t.is(
    summary.totalBlobsWalked,
    exported.filesExported + exported.directoriesExported + exported.symlinksExported,
  );
  const before = await snapshot(src);
  const after = await snapshot(dst);
  t.deepEqual([...after.keys()].sort(), [...before.keys()].sort(), "same names, byte for byte");
  for (const [key, want] of before)
    t.deepEqual(after.get(key), want, Buffer.from(key, "base64").toString());
  t.is(
    await hsmFlags(join(dst, "big.bin")),
    HsmFlag.Exists | HsmFlag.Archived,
    "exists archived (0x9)",
  );
  const entries = await readdir(dst);
  t.false(
    entries.some((n) => n.startsWith("IMPORT_")),
    "the state file is removed after success",
  );
});

test("--mode namespace makes released stubs of the right size; restore then brings the data back", async (t) => {
  const env = await setup(t);
  const src = join(env.dir, "src");
  await makeTree(src);
  await runExportJob({ nc: env.nc, root: src, container: "ns-import", storage: env.storage });
  const dst = join(env.dir, "dst");
  await mkdir(dst);
  const summary = await runImportJob({
    nc: env.nc,
    target: dst,
    container: "ns-import",
    storage: env.storage,
  });
  t.like(summary, { state: "succeeded", mode: "namespace", totalErrors: 0 });
  const before = await snapshot(src);
  const stubs = await snapshot(dst, false);
  for (const [key, want] of before) {
    const got = stubs.get(key);
    t.truthy(got, Buffer.from(key, "base64").toString());
    t.deepEqual({ ...got, md5: undefined }, { ...want, md5: undefined });
  }
  const big = await lstat(join(dst, "big.bin"));
  t.is(big.size, 20 * 1024 * 1024 + 123);
  t.true(big.blocks * 512 < 64 * 1024, "no data on disk (blocks hold the xattrs at most)");
  t.is(await hsmFlags(join(dst, "big.bin")), 0xd, "released exists archived");

  const restored = await runRestoreJob({ nc: env.nc, path: dst, maxInflight: 7 });
  t.like(restored, { state: "succeeded", errors: 0, filesRestored: summary.importedFiles });
  t.deepEqual(await snapshot(dst), before);
  t.is(await hsmFlags(join(dst, "big.bin")), 0x9);
  const again = await runRestoreJob({ nc: env.nc, path: dst });
  t.like(again, { filesFound: 0, filesRestored: 0, notReleased: summary.importedFiles });
});

const putBlob = async (
  c: ContainerClient,
  name: string,
  body: string,
  metadata: Record<string, string> = {},
) => {
  await c.getBlockBlobClient(name).upload(body, Buffer.byteLength(body), { metadata });
};

test("blob names that try to leave the target and symlinks in the target never create anything outside it", async (t) => {
  const env = await setup(t);
  const c = env.service.getContainerClient("evil");
  await c.create();
  // Literal "..", "/abs" names cannot be sent through the SDK (URLs are normalized); core's
  // pathForBlobName tests refuse them. These are the forms a container can really hold.
  await putBlob(c, "nul\uEF00byte", "escaped NUL");
  await putBlob(c, "back\\slash/..\\x", "backslash separator attempt");
  await putBlob(c, "dotdot/\uEF2E\uEF2E/y", "escaped ..");
  await putBlob(c, "link/inside", "through a symlink");
  await putBlob(c, "ok/file", "fine");
  await putBlob(c, "ok/out", "/etc/passwd", { ftype: "LNK" });
  const outside = join(env.dir, "outside");
  await mkdir(outside);
  const dst = join(env.dir, "target");
  await mkdir(dst);
  await symlink(outside, join(dst, "link"));
  const summary = await runImportJob({
    nc: env.nc,
    target: dst,
    container: "evil",
    mode: "full",
    storage: env.storage,
    maxErrors: -1,
    conflict: "skip",
  });
  t.is(summary.state, "completed-with-errors");
  t.true(summary.totalErrors >= 3, `errors: ${JSON.stringify(summary.errorSamples)}`);
  t.deepEqual(await readdir(outside), [], "nothing created through the symlink");
  t.deepEqual((await readdir(env.dir)).sort(), ["outside", "target"], "nothing next to the target");
  t.is(await readFile(join(dst, "ok/file"), "utf8"), "fine");
  t.is(
    await readlink(join(dst, "ok/out")),
    "/etc/passwd",
    "a symlink blob is data: created as a symlink",
  );
  t.true((await lstat(join(dst, "link"))).isSymbolicLink(), "the target's symlink is left alone");
  const codes = summary.errorSamples.map((e) => e.code);
  t.true(codes.includes("UnsafeBlobName"));
});

test("a container written the way AMLFS, lemur and azcopy write it imports with the right attributes", async (t) => {
  const env = await setup(t);
  const c = env.service.getContainerClient("legacy");
  await c.create();
  await putBlob(c, "proj", "", {
    hdi_isfolder: "true",
    Owner: "1001",
    Group: "wheel",
    Permissions: "rwxr-x---",
    ModTime: "2021-06-01 10:00:00 +0200",
  });
  await putBlob(c, "proj/a.txt", "alpha", {
    owner: "root",
    group: "supergroup",
    permissions: "rw-r--r--",
    modtime: "2022-01-01 00:00:00 +0000",
  });
  await putBlob(c, "proj/b.txt", "bravo", { uid: "42", gid: "43", perm: "0640" });
  await putBlob(c, "proj/az.txt", "azcopy", {
    posix_owner: "7",
    posix_group: "8",
    permissions: "33261",
  });
  await putBlob(c, "proj/sub/", "", {
    hdi_isfolder: "True",
    permissions: "1777",
    modtime: "2019-05-05 05:05:05 +0000",
  });
  await putBlob(c, "proj/sub/c.txt", "charlie");
  await putBlob(c, "proj/lnk", "a.txt", { is_symlink: "true" });
  await putBlob(c, "virtual/d.txt", "delta");
  const dst = join(env.dir, "t");
  await mkdir(dst);
  const s = await runImportJob({
    nc: env.nc,
    target: dst,
    container: "legacy",
    mode: "full",
    storage: env.storage,
  });
  t.like(s, {
    state: "succeeded",
    totalErrors: 0,
    importedFiles: 5,
    importedSymlinks: 1,
    importedDirectories: 3,
  });
  const st = async (p: string) => lstat(join(dst, p));
  t.like(await st("proj"), { uid: 1001, gid: 0, mode: 0o40750 });
  t.is((await st("proj")).mtime.toISOString(), "2021-06-01T08:00:00.000Z");
  t.like(await st("proj/a.txt"), { uid: 0, gid: 0, mode: 0o100644, size: 5 });
  t.is((await st("proj/a.txt")).mtime.toISOString(), "2022-01-01T00:00:00.000Z");
  t.like(await st("proj/b.txt"), { uid: 42, gid: 43, mode: 0o100640 });
  t.like(await st("proj/az.txt"), { uid: 7, gid: 8, mode: 0o100755 });
  t.like(await st("proj/sub"), { mode: 0o41777 });
  t.is((await st("proj/sub")).mtime.toISOString(), "2019-05-05T05:05:05.000Z");
  t.like(await st("proj/sub/c.txt"), { uid: 0, gid: 0, mode: 0o100644 });
  t.is(await readlink(join(dst, "proj/lnk")), "a.txt");
  t.is(await readFile(join(dst, "virtual/d.txt"), "utf8"), "delta");
  // An implicit directory (no stub) is 0755: never world-writable unless metadata says so (issue 14).
  t.like(await st("virtual"), { mode: 0o40755 });
});

const setHsm = (path: string, flags: number) =>
  setXattr(
    Buffer.from(path),
    "trusted.hsm",
    encodeHsmAttrs({ compat: HSM_COMPAT, flags, archiveId: 1n, archiveVersion: 0n }),
  );

test("conflict modes against pre-existing clean, dirty and new files", async (t) => {
  const env = await setup(t);
  const c = env.service.getContainerClient("conf");
  await c.create();
  for (const n of ["clean", "dirty", "new", "fresh"])
    await putBlob(c, n, `blob-${n}`, {
      owner: "5",
      group: "6",
      permissions: "0600",
      modtime: "2023-03-03 03:03:03 +0000",
    });
  const prepare = async (name: string) => {
    const dst = join(env.dir, name);
    await mkdir(dst);
    await writeFile(join(dst, "clean"), "local-clean"); // same size as "blob-clean"? no: 11 vs 10
    await writeFile(join(dst, "dirty"), "local-dirt"); // 10 bytes = "blob-dirty"
    await writeFile(join(dst, "new"), "local-new");
    await setHsm(join(dst, "dirty"), 0xb);
    // A clean file whose size matches its blob (its archive copy).
    await writeFile(join(dst, "clean"), "blob-clean");
    await setHsm(join(dst, "clean"), 0x9);
    return dst;
  };
  const run = async (
    conflict: "fail" | "skip" | "overwrite-dirty" | "overwrite-always",
    mode: "namespace" | "full" = "namespace",
  ): Promise<[string, ImportSummary]> => {
    const dst = await prepare(`${conflict}-${mode}`);
    const s = await runImportJob({
      nc: env.nc,
      target: dst,
      container: "conf",
      storage: env.storage,
      conflict,
      mode,
      maxErrors: -1,
    });
    return [dst, s];
  };

  const [failDir, fail] = await run("fail");
  t.like(fail, { totalConflicts: 3, totalErrors: 3, preexistingFiles: 3, importedFiles: 1 });
  t.is(await readFile(join(failDir, "new"), "utf8"), "local-new", "fail leaves the entry alone");
  const logs = env.service.getContainerClient("conf-logs");
  const conflicts = (await logs.getBlobClient(`${fail.jobId}/conflicts.ndjson`).downloadToBuffer())
    .toString()
    .trim()
    .split("\n");
  t.is(conflicts.length, 3);
  t.like(JSON.parse(conflicts.find((l) => l.includes('"dirty"'))!), {
    path: "dirty",
    resolution: "failed",
  });

  const [skipDir, skip] = await run("skip");
  t.like(skip, { totalConflicts: 3, totalErrors: 0, importedFiles: 1 });
  t.is(await readFile(join(skipDir, "dirty"), "utf8"), "local-dirt");
  t.is(await hsmFlags(join(skipDir, "fresh")), 0xd);

  const [odDir, od] = await run("overwrite-dirty");
  t.like(od, { totalConflicts: 3, totalErrors: 0, state: "succeeded" });
  t.is(await readFile(join(odDir, "clean"), "utf8"), "blob-clean", "clean: data kept");
  t.is(await hsmFlags(join(odDir, "clean")), 0x9, "clean: state kept");
  t.like(
    await lstat(join(odDir, "clean")),
    { uid: 5, gid: 6, mode: 0o100600 },
    "clean: attributes updated",
  );
  t.is(await hsmFlags(join(odDir, "dirty")), 0xd, "dirty: deleted and re-imported as a stub");
  t.is(await hsmFlags(join(odDir, "new")), 0xd, "new (never archived): re-imported");

  const [oaDir, oa] = await run("overwrite-always");
  t.like(oa, { totalConflicts: 3, totalErrors: 0 });
  t.is(await hsmFlags(join(oaDir, "clean")), 0xd, "clean: released");
  t.is((await lstat(join(oaDir, "clean"))).blocks, 0);
  t.is((await lstat(join(oaDir, "clean"))).size, 10);
  t.is(await hsmFlags(join(oaDir, "dirty")), 0xd);

  const [fullDir] = await run("overwrite-always", "full");
  t.is(await readFile(join(fullDir, "dirty"), "utf8"), "blob-dirty", "full mode re-downloads");
  t.is(await hsmFlags(join(fullDir, "clean")), 0x9);
});

test("prefixes: only that part is imported; overlapping prefixes are refused before anything starts; a failed import leaves IMPORT_FAILED", async (t) => {
  const env = await setup(t, 1);
  const c = env.service.getContainerClient("pre");
  await c.create();
  await putBlob(c, "a/1", "one");
  await putBlob(c, "a/b/2", "two");
  await putBlob(c, "c/3", "three");
  const dst = join(env.dir, "p");
  await mkdir(dst);
  await t.throwsAsync(
    runImportJob({
      nc: env.nc,
      target: dst,
      container: "pre",
      prefixes: ["/a", "/a/b"],
      storage: env.storage,
    }),
    { message: /overlap/ },
  );
  await t.throwsAsync(
    runImportJob({
      nc: env.nc,
      target: dst,
      container: "pre",
      prefixes: ["/", "/c"],
      storage: env.storage,
    }),
    { message: /overlap/ },
  );
  t.deepEqual(await readdir(dst), []);
  const s = await runImportJob({
    nc: env.nc,
    target: dst,
    container: "pre",
    prefixes: ["/a/b", "c"],
    storage: env.storage,
    mode: "full",
  });
  t.like(s, { state: "succeeded", importedFiles: 2 });
  t.is(await readFile(join(dst, "a/b/2"), "utf8"), "two");
  t.is(await readFile(join(dst, "c/3"), "utf8"), "three");
  await t.throwsAsync(lstat(join(dst, "a/1")));

  // Written to locally: no longer the import's own copy of the blob, so a conflict.
  await writeFile(join(dst, "c/3"), "local");
  const again = await runImportJob({
    nc: env.nc,
    target: dst,
    container: "pre",
    prefixes: ["c"],
    storage: env.storage,
  });
  t.like(again, { state: "failed", totalConflicts: 1 });
  t.true(
    (await readdir(dst)).some((n) => n.startsWith("IMPORT_FAILED.")),
    "state file says how it ended",
  );
});

test("the CLI: import --json prints AMLFS's counters, status shows the job, restore --json restores, bad arguments exit 2", async (t) => {
  const tmp = await tempDir();
  t.teardown(() => tmp.cleanup());
  const azurite = await startStorage(t);
  const { server } = await startBus(t);
  const service = BlobServiceClient.fromConnectionString(azurite.connectionString);
  const c = service.getContainerClient("cli-import");
  await c.create();
  await putBlob(c, "d", "", { hdi_isfolder: "true", permissions: "0750" });
  await putBlob(c, "d/f.txt", "hello", { permissions: "0640" });
  const target = join(tmp.path, "t");
  await mkdir(target);
  const base = ["--nats", server.url, "--storage", azurite.connectionString, "--workers", "1"];
  const imported = await runCli([...base, "import", target, "--container", "cli-import", "--json"]);
  t.is(imported.code, 0, imported.stderr);
  const summary = JSON.parse(imported.stdout) as ImportSummary;
  t.like(summary, {
    state: "succeeded",
    mode: "namespace",
    totalBlobsWalked: 2,
    totalBlobsImported: 2,
    importedFiles: 1,
    importedDirectories: 1,
    importedSymlinks: 0,
    preexistingFiles: 0,
    preexistingDirectories: 0,
    preexistingSymlinks: 0,
    totalErrors: 0,
    totalConflicts: 0,
  });
  t.true("blobsWalkedPerSecond" in summary);
  const status = await runCli(["--nats", server.url, "status", summary.jobId, "--json"]);
  t.like(JSON.parse(status.stdout), { kind: "import", importedFiles: 1, outstanding: 0 });
  const restored = await runCli([...base, "restore", target, "--max-inflight", "10", "--json"]);
  t.is(restored.code, 0, restored.stderr);
  t.like(JSON.parse(restored.stdout), { state: "succeeded", filesRestored: 1, bytesRestored: 5 });
  t.is(await readFile(join(target, "d/f.txt"), "utf8"), "hello");
  const overlap = await runCli([
    ...base,
    "import",
    target,
    "--container",
    "cli-import",
    "--prefix",
    "/d",
    "--prefix",
    "/d/e",
  ]);
  t.is(overlap.code, 2);
  t.regex(overlap.stderr, /prefixes overlap/);
  const badMode = await runCli([
    ...base,
    "import",
    target,
    "--container",
    "cli-import",
    "--mode",
    "fast",
  ]);
  t.is(badMode.code, 2);
  t.regex(badMode.stderr, /--mode/);
});

test("--mode full splits a large blob into chunks that several workers download into one file; the file is byte-identical", async (t) => {
  const env = await setup(t, 2);
  const src = join(env.dir, "src");
  await mkdir(src);
  const data = contentOf(11, Buffer.from("large"), 5 * 1024 * 1024 + 4321);
  await writeFile(join(src, "large.bin"), data);
  await writeFile(join(src, "small.bin"), "small");
  await runExportJob({ nc: env.nc, root: src, container: "chunked", storage: env.storage });
  const dst = join(env.dir, "dst");
  await mkdir(dst);
  const summary = await runImportJob({
    nc: env.nc,
    target: dst,
    container: "chunked",
    mode: "full",
    storage: env.storage,
    chunkSizeBytes: 1024 * 1024,
  });
  t.deepEqual(summary.errorSamples, []);
  t.like(summary, { state: "succeeded", totalErrors: 0, importedFiles: 2 });
  t.is(summary.bytesImported, data.length + 5);
  t.is(md5(await readFile(join(dst, "large.bin"))), md5(data));
  t.is(await hsmFlags(join(dst, "large.bin")), 0x9);
  const srcSt = await lstat(join(src, "large.bin"));
  const dstSt = await lstat(join(dst, "large.bin"));
  t.is(Math.floor(dstSt.mtimeMs / 1000), Math.floor(srcSt.mtimeMs / 1000));
  t.is(dstSt.mode, srcSt.mode);
});

test("sparse files stay sparse on import: runs of zeros become holes, the data is byte-identical", async (t) => {
  const env = await setup(t, 1);
  const src = join(env.dir, "src");
  await mkdir(src);
  // 4 MiB: data at both ends, zeros between (one Put Blob, downloaded in one piece), and 24 MiB
  // (chunked download in 8 MiB ranges).
  const sizes = [4 * 1024 * 1024, 24 * 1024 * 1024];
  for (const size of sizes) {
    const data = Buffer.alloc(size);
    data.fill(0x61, 0, 4096);
    data.fill(0x62, size - 4096);
    await writeFile(join(src, `sparse-${size}`), data);
  }
  const exported = await runExportJob({
    nc: env.nc,
    root: src,
    container: "sparse",
    storage: env.storage,
  });
  t.is(exported.errors, 0);
  const dst = join(env.dir, "dst");
  await mkdir(dst);
  const summary = await runImportJob({
    nc: env.nc,
    target: dst,
    container: "sparse",
    mode: "full",
    storage: env.storage,
    chunkSizeBytes: 8 * 1024 * 1024,
  });
  t.is(summary.totalErrors, 0, JSON.stringify(summary.errorSamples));
  for (const size of sizes) {
    const p = join(dst, `sparse-${size}`);
    const st = await stat(p);
    t.is(st.size, size);
    t.true(st.blocks * 512 <= 64 * 1024, `${p}: ${st.blocks * 512} bytes allocated for ${size}`);
    t.is(md5(await readFile(p)), md5(await readFile(join(src, `sparse-${size}`))));
  }
});
