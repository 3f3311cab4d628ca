/**
 * A target that fills up or is read-only during `import --mode full`: the files that cannot be
 * written fail with their path, operation and cause (ENOSPC / EROFS); the files that fit are
 * byte-identical and "exists archived"; nothing half-written is left looking complete (a failed
 * file stays a released stub without data, docs/import.md "Failed downloads"); a re-run after the
 * space is freed completes and everything is identical.
 *
 * Real tmpfs mounts (root only): skipped, with the reason in the title, when this process cannot
 * mount. Every mount is unmounted in t.teardown (lazily when busy).
 */
import { execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import { mkdir, mkdtemp, readFile, readdir, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import test from "ava";
import type { ExecutionContext } from "ava";
import { BlobServiceClient } from "@azure/storage-blob";
import type { ContainerClient } from "@azure/storage-blob";
import { parseStorageTarget } from "@hsmfleet/blob";
import type { StorageTarget } from "@hsmfleet/blob";
import { HsmFlag, decodeHsmAttrs } from "@hsmfleet/core";
import { runImportJob } from "@hsmfleet/coordinator";
import type { ImportSummary } from "@hsmfleet/coordinator";
import type { NatsConnection } from "@hsmfleet/bus";
import { getXattr } from "@hsmfleet/fs";
import { contentOf, tempDir } from "@hsmfleet/testkit";
import { runCli, startBus, startStorage, startWorkers } from "./helpers.js";

const md5 = (b: Buffer) => createHash("md5").update(b).digest("hex");

const mount = (args: string[]) => execFileSync("mount", args, { stdio: "pipe" });

/** Why tmpfs cannot be mounted here (undefined: it can). Decided once, at load time. */
const mountUnavailable = async (): Promise<string | undefined> => {
  if (process.getuid?.() !== 0) return "not root: mounting a tmpfs needs root";
  const dir = await mkdtemp(join(tmpdir(), "hsmfleet-mount-probe-"));
  try {
    mount(["-t", "tmpfs", "-o", "size=1m", "tmpfs", dir]);
    execFileSync("umount", [dir], { stdio: "pipe" });
    return undefined;
  } catch (err) {
    return `mount -t tmpfs failed: ${String(err).split("\n")[0]}`;
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
};
const unavailable = await mountUnavailable();
// Serial: each test mounts, fills and remounts its own tmpfs; one at a time keeps the load low.
const tmpfsTest = unavailable === undefined ? test.serial : test.skip;
const skipNote = unavailable === undefined ? "" : ` (skipped: ${unavailable})`;

/** A tmpfs of `size` at `dir`, unmounted when the test ends (lazily if still busy). */
const mountTmpfs = (t: ExecutionContext, dir: string, size: string) => {
  mount(["-t", "tmpfs", "-o", `size=${size},mode=0755`, "tmpfs", dir]);
  t.teardown(() => {
    try {
      execFileSync("umount", [dir], { stdio: "pipe" });
    } catch {
      execFileSync("umount", ["-l", dir], { stdio: "pipe" });
    }
  });
};

interface Env {
  nc: NatsConnection;
  url: string;
  connectionString: string;
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
  if (workers > 0) await startWorkers(t, server.url, workers, undefined, { storage });
  return {
    nc,
    url: server.url,
    connectionString: azurite.connectionString,
    storage,
    service: BlobServiceClient.fromConnectionString(azurite.connectionString),
    dir: tmp.path,
  };
};

const MIB = 1024 * 1024;

/** 12 small files (4 KiB, fit anywhere) and 4 of 1 MiB (a 2 MiB tmpfs holds at most one). */
const BLOBS: Array<{ name: string; data: Buffer }> = [
  ...Array.from({ length: 12 }, (_, i) => ({
    name: `small/s${i}`,
    data: contentOf(i, Buffer.from(`s${i}`), 4096),
  })),
  ...Array.from({ length: 4 }, (_, i) => ({
    name: `big/b${i}`,
    data: contentOf(100 + i, Buffer.from(`b${i}`), MIB),
  })),
];

const upload = async (c: ContainerClient) => {
  await c.create();
  for (const b of BLOBS) {
    await c.getBlockBlobClient(b.name).upload(b.data, b.data.length, {
      metadata: { permissions: "0644", modtime: "2021-02-03T04:05:06Z" },
    });
  }
};

const flagsOf = async (path: string): Promise<number> => {
  const v = await getXattr(Buffer.from(path), "trusted.hsm");
  return v ? decodeHsmAttrs(v).flags : 0;
};

const EXISTS_ARCHIVED = HsmFlag.Exists | HsmFlag.Archived;

/**
 * Every blob's file is either complete (byte-identical, 0644, "exists archived") or failed (named
 * in `failed`, a released stub of the blob's size holding no data, still owner-only 0600).
 * Returns the names of the complete ones.
 */
const checkNothingHalfWritten = async (
  t: ExecutionContext,
  target: string,
  failed: Set<string>,
): Promise<string[]> => {
  const complete: string[] = [];
  for (const b of BLOBS) {
    const abs = join(target, b.name);
    const st = await stat(abs);
    const flags = await flagsOf(abs);
    if (failed.has(b.name)) {
      t.is(st.size, b.data.length, `${b.name}: stub keeps the blob's size`);
      t.is(st.blocks, 0, `${b.name}: the partial data is gone`);
      t.true((flags & HsmFlag.Released) !== 0, `${b.name}: released, i.e. data not here`);
      t.is(st.mode & 0o7777, 0o600, `${b.name}: final attributes never set`);
    } else {
      t.is(md5(await readFile(abs)), md5(b.data), `${b.name}: byte-identical`);
      t.is(flags, EXISTS_ARCHIVED, `${b.name}: 0x9 exists archived`);
      t.is(st.mode & 0o7777, 0o644, `${b.name}: final mode`);
      complete.push(b.name);
    }
  }
  return complete;
};

const errorLines = async (env: Env, container: string, jobId: string) =>
  (
    await env.service
      .getContainerClient(`${container}-logs`)
      .getBlobClient(`${jobId}/errors.ndjson`)
      .downloadToBuffer()
  )
    .toString()
    .split("\n")
    .filter(Boolean)
    .map(
      (l) => JSON.parse(l) as { path: string; operation: string; code: string; message: string },
    );

tmpfsTest(
  `disk full during import --mode full (--max-errors -1): the files that do not fit fail with ENOSPC, nothing half-written looks complete, a re-run after freeing space makes everything identical${skipNote}`,
  async (t) => {
    const env = await setup(t);
    await upload(env.service.getContainerClient("full"));
    const target = join(env.dir, "t");
    await mkdir(target);
    mountTmpfs(t, target, "2m");

    const first = await runImportJob({
      nc: env.nc,
      target,
      container: "full",
      storage: env.storage,
      mode: "full",
      maxErrors: -1,
    });
    t.log(
      `2 MiB tmpfs, ${BLOBS.length} files (${BLOBS.length - 4} × 4 KiB, 4 × 1 MiB): imported ${first.importedFiles}, errors ${first.totalErrors}`,
    );
    t.like(first, { state: "completed-with-errors" });
    t.true(first.totalErrors >= 3, "at most one 1 MiB file fits in 2 MiB");
    const lines = await errorLines(env, "full", first.jobId);
    t.is(lines.length, first.totalErrors, "errors.ndjson has every error");
    for (const e of lines) {
      t.log(`${e.path}: ${e.operation} ${e.code}: ${e.message}`);
      t.true(
        BLOBS.some((b) => b.name === e.path),
        `the error names the file: ${e.path}`,
      );
      t.is(e.operation, "write");
      t.is(e.code, "ENOSPC");
      t.regex(e.message, /no space left on device/i);
      t.true(e.message.includes(e.path), "the message names the file too");
    }
    const failed = new Set(lines.map((e) => e.path));
    t.is(failed.size, lines.length, "one error per failed file");
    const complete = await checkNothingHalfWritten(t, target, failed);
    t.is(complete.length + failed.size, BLOBS.length);
    t.is(first.importedFiles, complete.length);

    // More space, then the same import again: overwrite-always re-imports the released stubs (and
    // the rest), so everything is complete and identical.
    mount(["-o", "remount,size=64m", target]);
    const second = await runImportJob({
      nc: env.nc,
      target,
      container: "full",
      storage: env.storage,
      mode: "full",
      conflict: "overwrite-always",
    });
    t.like(second, { state: "succeeded", totalErrors: 0, importedFiles: BLOBS.length });
    t.deepEqual(
      await checkNothingHalfWritten(t, target, new Set()),
      BLOBS.map((b) => b.name),
    );
  },
);

tmpfsTest(
  `disk full with --backend posix: a file whose download failed is removed (no state could mark it incomplete); a re-run with --conflict skip after freeing space completes the tree${skipNote}`,
  async (t) => {
    const env = await setup(t);
    await upload(env.service.getContainerClient("fullposix"));
    const target = join(env.dir, "t");
    await mkdir(target);
    mountTmpfs(t, target, "2m");
    const first = await runImportJob({
      nc: env.nc,
      target,
      container: "fullposix",
      storage: env.storage,
      mode: "full",
      backend: "posix",
      maxErrors: -1,
    });
    const lines = await errorLines(env, "fullposix", first.jobId);
    t.log(`posix: imported ${first.importedFiles}, errors ${first.totalErrors}`);
    for (const e of lines) t.log(`${e.path}: ${e.operation} ${e.code}: ${e.message}`);
    t.like(first, { state: "completed-with-errors" });
    t.true(first.totalErrors >= 3);
    t.is(lines.length, first.totalErrors);
    const failed = new Set(lines.map((e) => e.path));
    for (const e of lines) t.like(e, { operation: "write", code: "ENOSPC" });
    for (const b of BLOBS) {
      const abs = join(target, b.name);
      if (failed.has(b.name)) {
        await t.throwsAsync(stat(abs), { code: "ENOENT" }, `${b.name}: removed`);
      } else {
        t.is(md5(await readFile(abs)), md5(b.data), `${b.name}: byte-identical`);
        t.is((await stat(abs)).mode & 0o7777, 0o644, `${b.name}: final mode`);
      }
    }
    t.is(first.importedFiles + failed.size, BLOBS.length);

    mount(["-o", "remount,size=64m", target]);
    const second = await runImportJob({
      nc: env.nc,
      target,
      container: "fullposix",
      storage: env.storage,
      mode: "full",
      backend: "posix",
      conflict: "skip",
    });
    t.like(second, { state: "succeeded", totalErrors: 0, importedFiles: failed.size });
    for (const b of BLOBS)
      t.is(md5(await readFile(join(target, b.name))), md5(b.data), `${b.name}: byte-identical`);
  },
);

tmpfsTest(
  `disk full while large blobs download in chunks: every file ends byte-identical and archived or a released stub, each failed chunk names its file and ENOSPC${skipNote}`,
  async (t) => {
    const env = await setup(t);
    await upload(env.service.getContainerClient("fullchunks"));
    const target = join(env.dir, "t");
    await mkdir(target);
    mountTmpfs(t, target, "2m");
    const first = await runImportJob({
      nc: env.nc,
      target,
      container: "fullchunks",
      storage: env.storage,
      mode: "full",
      maxErrors: -1,
      chunkSizeBytes: 256 * 1024,
    });
    const lines = await errorLines(env, "fullchunks", first.jobId);
    t.log(`chunks: imported ${first.importedFiles}, errors ${first.totalErrors}`);
    for (const e of lines) t.log(`${e.path}: ${e.operation} ${e.code}: ${e.message}`);
    t.like(first, { state: "completed-with-errors" });
    t.true(first.totalErrors >= 3);
    for (const e of lines) {
      t.is(e.code, "ENOSPC");
      t.regex(e.message, /no space left on device/i);
    }
    const failed = new Set(lines.map((e) => e.path));
    let complete = 0;
    for (const b of BLOBS) {
      const abs = join(target, b.name);
      const flags = await flagsOf(abs);
      if (failed.has(b.name)) {
        // Chunks of the file still in flight may write after the failed one dropped the data;
        // the released state is what says the file is incomplete.
        t.true((flags & HsmFlag.Released) !== 0, `${b.name}: released`);
        t.is((await stat(abs)).mode & 0o7777, 0o600, `${b.name}: final attributes never set`);
      } else {
        t.is(md5(await readFile(abs)), md5(b.data), `${b.name}: byte-identical`);
        t.is(flags, EXISTS_ARCHIVED, `${b.name}: 0x9`);
        complete++;
      }
    }
    t.is(first.importedFiles, complete);

    mount(["-o", "remount,size=64m", target]);
    const second = await runImportJob({
      nc: env.nc,
      target,
      container: "fullchunks",
      storage: env.storage,
      mode: "full",
      conflict: "overwrite-always",
      chunkSizeBytes: 256 * 1024,
    });
    t.like(second, { state: "succeeded", totalErrors: 0, importedFiles: BLOBS.length });
    t.deepEqual(
      await checkNothingHalfWritten(t, target, new Set()),
      BLOBS.map((b) => b.name),
    );
  },
);

tmpfsTest(
  `disk full with the default --max-errors 0: the CLI exits 2, the job fails, its errors name each file with ENOSPC${skipNote}`,
  async (t) => {
    const env = await setup(t, 0);
    await upload(env.service.getContainerClient("full0"));
    const target = join(env.dir, "t");
    await mkdir(target);
    mountTmpfs(t, target, "2m");
    const run = await runCli(
      [
        "--nats",
        env.url,
        "--storage",
        env.connectionString,
        "--workers",
        "1",
        "import",
        target,
        "--container",
        "full0",
        "--mode",
        "full",
        "--json",
      ],
      { timeoutMs: 120_000 },
    );
    t.is(run.code, 2, run.stderr);
    const summary = JSON.parse(run.stdout) as ImportSummary;
    t.log(`CLI: exit ${run.code}, state ${summary.state}, errors ${summary.totalErrors}`);
    t.is(summary.state, "failed");
    t.true(summary.totalErrors >= 1);
    for (const e of summary.errorSamples) {
      t.log(`${e.path}: ${e.operation} ${e.code}: ${e.message}`);
      t.like(e, { operation: "write", code: "ENOSPC" });
      t.regex(e.message, /no space left on device/i);
    }
    t.true(
      (await readdir(target)).some((n) => n.startsWith("IMPORT_FAILED.")),
      "the state file says the import failed",
    );
    // Whatever the job reached before it stopped: complete and archived, or a data-less stub.
    const failed = new Set(summary.errorSamples.map((e) => e.path));
    for (const b of BLOBS) {
      const abs = join(target, b.name);
      const st = await stat(abs).catch(() => undefined);
      if (!st) continue;
      const flags = await flagsOf(abs);
      if (flags === EXISTS_ARCHIVED) t.is(md5(await readFile(abs)), md5(b.data), b.name);
      else {
        t.true((flags & HsmFlag.Released) !== 0, `${b.name}: not complete, so released`);
        t.is(st.blocks, 0, `${b.name}: no partial data`);
        if (st.size === b.data.length && b.data.length === MIB && !failed.has(b.name))
          t.log(`${b.name}: not downloaded before the job stopped`);
      }
    }
  },
);

tmpfsTest(
  `a read-only part of the target: its entries fail with EROFS naming each path, the rest is imported; a read-only target root fails the job, each root entry with EROFS${skipNote}`,
  async (t) => {
    const env = await setup(t);
    const c = env.service.getContainerClient("readonly");
    await c.create();
    const put = (name: string, body: string) =>
      c.getBlockBlobClient(name).upload(body, Buffer.byteLength(body), {
        metadata: { permissions: "0644" },
      });
    await put("ok/a", "a");
    await put("ok/b", "bb");
    await put("ro/x", "x");
    await put("ro/sub/y", "y");
    const target = join(env.dir, "t");
    await mkdir(join(target, "ro"), { recursive: true });
    mountTmpfs(t, join(target, "ro"), "1m");
    await writeFile(join(target, "ro", "old.txt"), "kept");
    mount(["-o", "remount,ro", join(target, "ro")]);

    const s = await runImportJob({
      nc: env.nc,
      target,
      container: "readonly",
      storage: env.storage,
      mode: "full",
      maxErrors: -1,
    });
    const lines = await errorLines(env, "readonly", s.jobId);
    for (const e of lines) t.log(`${e.path}: ${e.operation} ${e.code}: ${e.message}`);
    t.like(s, { state: "completed-with-errors", importedFiles: 2 });
    t.is(s.totalErrors, lines.length);
    const byPath = new Map(lines.map((e) => [e.path, e]));
    t.truthy(byPath.get("ro/x"), "the file in the read-only part is named");
    t.truthy(byPath.get("ro/sub"), "the directory in the read-only part is named");
    for (const e of lines) {
      t.true(e.path.startsWith("ro"), `only the read-only part fails: ${e.path}`);
      t.is(e.code, "EROFS");
      t.regex(e.message, /read-only file system/i);
    }
    t.is(await readFile(join(target, "ok/a"), "utf8"), "a");
    t.is(await readFile(join(target, "ok/b"), "utf8"), "bb");
    t.is(await flagsOf(join(target, "ok/b")), EXISTS_ARCHIVED);
    t.deepEqual((await readdir(join(target, "ro"))).sort(), ["old.txt"], "nothing made in it");
    t.is(await readFile(join(target, "ro", "old.txt"), "utf8"), "kept");

    // Writable again: the same import with --conflict skip completes the missing entries and
    // leaves the imported ones alone.
    mount(["-o", "remount,rw", join(target, "ro")]);
    const again = await runImportJob({
      nc: env.nc,
      target,
      container: "readonly",
      storage: env.storage,
      mode: "full",
      conflict: "skip",
    });
    t.like(again, { state: "succeeded", totalErrors: 0, importedFiles: 2 });
    t.is(await readFile(join(target, "ro/x"), "utf8"), "x");
    t.is(await readFile(join(target, "ro/sub/y"), "utf8"), "y");
    t.is(await flagsOf(join(target, "ro/sub/y")), EXISTS_ARCHIVED);

    // The whole target read-only: every entry of the root level fails with EROFS; the state file
    // cannot be written either (a warning); the job fails.
    const whole = join(env.dir, "whole");
    await mkdir(whole);
    mountTmpfs(t, whole, "1m");
    mount(["-o", "remount,ro", whole]);
    const run = await runCli([
      "--nats",
      env.url,
      "--storage",
      env.connectionString,
      "--workers",
      "1",
      "import",
      whole,
      "--container",
      "readonly",
      "--mode",
      "full",
      "--json",
    ]);
    t.is(run.code, 2, run.stderr);
    const summary = JSON.parse(run.stdout) as ImportSummary;
    t.log(
      `read-only root: exit ${run.code}, state ${summary.state}, errors ${summary.totalErrors}`,
    );
    for (const e of summary.errorSamples)
      t.log(`${e.path}: ${e.operation} ${e.code}: ${e.message}`);
    t.like(summary, { state: "failed", importedFiles: 0 });
    t.true(summary.totalErrors >= 1);
    for (const e of summary.errorSamples) {
      t.is(e.code, "EROFS");
      t.regex(e.message, /read-only file system/i);
      t.true(e.message.includes(whole), "the message names the path");
    }
    t.deepEqual(await readdir(whole), [], "nothing was created");
  },
);
