import { chmod, mkdir, readFile, rm, stat, utimes, writeFile } from "node:fs/promises";
import { join } from "node:path";
import test from "ava";
import { BlobServiceClient } from "@azure/storage-blob";
import { parseStorageTarget } from "@hsmfleet/blob";
import { metadataForEntry, EntryType } from "@hsmfleet/core";
import {
  formatVerifySummary,
  runExportJob,
  runImportJob,
  runVerifyJob,
} from "@hsmfleet/coordinator";
import { generateTree, tempDir } from "@hsmfleet/testkit";
import { runCli, startBus, startStorage, startWorkers } from "./helpers.js";

test("verify: identical after export (with and without content); then every kind of difference is reported", async (t) => {
  const dir = await tempDir();
  t.teardown(() => dir.cleanup());
  const root = join(dir.path, "tree");
  const manifest = await generateTree(root, {
    depth: 2,
    fanout: 2,
    filesPerDir: 5,
    symlinksPerDir: 1,
    sizes: [0, 10, 5000, 70_000],
  });
  const azurite = await startStorage(t);
  const storage = parseStorageTarget(azurite.connectionString)!;
  const { server, nc } = await startBus(t);
  await startWorkers(t, server.url, 2, undefined, { storage });
  const exported = await runExportJob({ nc, root, container: "verified", storage });
  t.is(exported.errors, 0);

  const plain = await runVerifyJob({ nc, root, container: "verified", storage });
  t.like(plain, { state: "succeeded", identical: true, differences: 0, errors: 0 });
  t.is(plain.files, manifest.files);
  t.is(plain.entries, manifest.entries.length);
  const full = await runVerifyJob({ nc, root, container: "verified", storage, content: true });
  t.like(full, { identical: true, differences: 0 });
  t.is(full.contentChecked, manifest.entries.filter((e) => e.type === "file" && e.size > 0).length);

  // Now make differences of every kind.
  const files = manifest.entries.filter((e) => e.type === "file" && e.size >= 5000);
  const p = (i: number) => join(root, files[i]!.path.toString());
  // 0: same size and time, other bytes (found only with --content, through Content-MD5)
  const st0 = await stat(p(0));
  await writeFile(p(0), Buffer.alloc(st0.size, 0x41));
  await utimes(p(0), st0.atime, st0.mtime);
  // 1: mode
  await chmod(p(1), 0o600);
  // 2: size (and time)
  await writeFile(p(2), "short");
  // 3: removed from the tree: its blob is extra
  await rm(p(3));
  // a new file: no blob
  await writeFile(join(root, "new-file"), "new");
  // 4: a blob without Content-MD5 and other bytes (download compare)
  const st4 = await stat(p(4));
  const container = BlobServiceClient.fromConnectionString(
    azurite.connectionString,
  ).getContainerClient("verified");
  const name4 = files[4]!.path.toString();
  await container.getBlockBlobClient(name4).uploadData(Buffer.alloc(st4.size, 0x42), {
    metadata: metadataForEntry({
      type: EntryType.File,
      mode: st4.mode,
      uid: st4.uid,
      gid: st4.gid,
      mtimeSec: Math.floor(st4.mtimeMs / 1000),
    }),
  });
  // Put Blob stores a Content-MD5 on its own; clearing the HTTP headers removes it.
  await container.getBlobClient(name4).setHTTPHeaders({});
  t.is((await container.getBlobClient(name4).getProperties()).contentMD5, undefined);
  const differencesFile = join(dir.path, "differences.ndjson");
  const after = await runVerifyJob({
    nc,
    root,
    container: "verified",
    storage,
    content: true,
    errorLog: differencesFile,
  });
  t.log(JSON.stringify(after.byCode));
  t.false(after.identical);
  t.is(after.errors, 0, JSON.stringify(after.samples));
  const codes = (path: string) =>
    after.samples
      .filter((s) => s.path === path)
      .map((s) => s.code)
      .sort();
  t.deepEqual(codes(files[0]!.path.toString()), ["ContentDiffers"]);
  t.deepEqual(codes(files[1]!.path.toString()), ["ModeDiffers"]);
  t.true(codes(files[2]!.path.toString()).includes("SizeDiffers"));
  t.deepEqual(codes(files[3]!.path.toString()), ["ExtraBlob"]);
  t.deepEqual(codes("new-file"), ["MissingBlob"]);
  t.deepEqual(codes(name4), ["ContentDiffers"]);
  t.regex(after.samples.find((s) => s.path === name4)!.message, /data differs/);

  // The CLI: exit 1 with differences, each printed; exit 0 once identical.
  const cli = await runCli(
    ["--nats", server.url, "--workers", "0", "verify", root, "--container", "verified", "--quiet"],
    { env: { AZURE_STORAGE_CONNECTION_STRING: azurite.connectionString } },
  );
  t.is(cli.code, 1, cli.stderr);
  t.regex(cli.stdout, /MissingBlob: new-file: no blob "new-file"/);
  t.regex(cli.stdout, /DIFFERENT/);
  const dirOnly = join(dir.path, "clean");
  await generateTree(dirOnly, { depth: 1, fanout: 1, filesPerDir: 3, sizes: [1, 100] });
  await runExportJob({ nc, root: dirOnly, container: "clean", storage });
  const ok = await runCli(
    [
      "--nats",
      server.url,
      "--workers",
      "0",
      "verify",
      dirOnly,
      "--container",
      "clean",
      "--content",
      "--json",
    ],
    { env: { AZURE_STORAGE_CONNECTION_STRING: azurite.connectionString } },
  );
  t.is(ok.code, 0, ok.stderr + ok.stdout);
  t.like(JSON.parse(ok.stdout) as object, { identical: true, content: true });
});

test("verify of an import target: released stubs are compared by attributes, their content counted as not checked; the import's marker files at the root are not differences", async (t) => {
  const dir = await tempDir();
  t.teardown(() => dir.cleanup());
  const root = join(dir.path, "tree");
  const manifest = await generateTree(root, {
    depth: 2,
    fanout: 2,
    filesPerDir: 4,
    symlinksPerDir: 1,
    sizes: [0, 10, 5000, 70_000],
  });
  const azurite = await startStorage(t);
  const storage = parseStorageTarget(azurite.connectionString)!;
  const { server, nc } = await startBus(t);
  await startWorkers(t, server.url, 2, undefined, { storage });
  t.is((await runExportJob({ nc, root, container: "imported", storage })).errors, 0);
  const target = join(dir.path, "target");
  await mkdir(target);
  const imported = await runImportJob({
    nc,
    target,
    container: "imported",
    mode: "namespace",
    storage,
  });
  t.is(imported.state, "succeeded");
  // What an interrupted import leaves at the target root (docs/import.md), and look-alikes that
  // are not the import's markers: those are ordinary files without a blob.
  await writeFile(join(target, "IMPORT_FAILED.20261121T153000Z"), "import-1\n");
  await writeFile(join(target, "IMPORT_CANCELLED.20261122T080000Z"), "import-2\n");
  await writeFile(join(target, "IMPORT_IN_PROGRESS.20261123T090000Z"), "import-3\n");
  await writeFile(join(target, "IMPORT_FAILED.notes"), "mine\n");
  const subdir = manifest.entries.find((e) => e.type === "directory")!.path.toString();
  await writeFile(join(target, subdir, "IMPORT_FAILED.20261121T153000Z"), "mine too\n");

  const released = manifest.entries.filter((e) => e.type === "file" && e.size > 0).length;
  const summary = await runVerifyJob({
    nc,
    root: target,
    container: "imported",
    storage,
    content: true,
  });
  t.is(summary.errors, 0, JSON.stringify(summary.samples));
  t.deepEqual(summary.byCode, { MissingBlob: 2 }, JSON.stringify(summary.samples));
  t.deepEqual(
    summary.samples.map((s) => s.path).sort(),
    ["IMPORT_FAILED.notes", `${subdir}/IMPORT_FAILED.20261121T153000Z`].sort(),
  );
  t.is(summary.contentChecked, 0, "a released stub's zeros are not hashed");
  t.is(summary.contentNotChecked, released);
  t.is(summary.entries, manifest.entries.length + 2, "the markers are not entries compared");
  t.regex(
    formatVerifySummary(summary),
    new RegExp(`content not checked\\s+${released} released files`),
  );

  // The same through the CLI: the counter is in --json.
  await rm(join(target, "IMPORT_FAILED.notes"));
  await rm(join(target, subdir, "IMPORT_FAILED.20261121T153000Z"));
  const cli = await runCli(
    [
      "--nats",
      server.url,
      "--workers",
      "0",
      "verify",
      target,
      "--container",
      "imported",
      "--content",
      "--json",
    ],
    { env: { AZURE_STORAGE_CONNECTION_STRING: azurite.connectionString } },
  );
  t.is(cli.code, 0, cli.stderr + cli.stdout);
  t.like(JSON.parse(cli.stdout) as object, {
    identical: true,
    differences: 0,
    contentChecked: 0,
    contentNotChecked: released,
  });
});

test("verify prints modification times as dates, in the blob metadata's own format", async (t) => {
  const dir = await tempDir();
  t.teardown(() => dir.cleanup());
  const root = join(dir.path, "tree");
  await mkdir(root);
  const file = join(root, "dated");
  await writeFile(file, "data");
  await utimes(file, 1_600_000_000, 1_600_000_000); // 2020-09-13 12:26:40 UTC
  const azurite = await startStorage(t);
  const storage = parseStorageTarget(azurite.connectionString)!;
  const { server, nc } = await startBus(t);
  await startWorkers(t, server.url, 1, undefined, { storage });
  t.is((await runExportJob({ nc, root, container: "dated", storage })).errors, 0);
  await utimes(file, 1_000_000_000, 1_000_000_000); // 2001-09-09 01:46:40 UTC
  const cli = await runCli(
    ["--nats", server.url, "--workers", "0", "verify", root, "--container", "dated", "--quiet"],
    { env: { AZURE_STORAGE_CONNECTION_STRING: azurite.connectionString } },
  );
  t.is(cli.code, 1, cli.stderr);
  t.regex(
    cli.stdout,
    /MtimeDiffers: dated: modtime 2001-09-09 01:46:40 \+0000 in the tree, 2020-09-13 12:26:40 \+0000 in the blob/,
  );

  // The job's record points at its differences file, and that file exists after the command.
  const json = await runCli(
    [
      "--nats",
      server.url,
      "--workers",
      "0",
      "--state-dir",
      join(dir.path, "state"),
      "verify",
      root,
      "--container",
      "dated",
      "--json",
    ],
    { env: { AZURE_STORAGE_CONNECTION_STRING: azurite.connectionString } },
  );
  const { jobId, errorLog } = JSON.parse(json.stdout) as { jobId: string; errorLog: string };
  const status = await runCli(["--nats", server.url, "status", jobId, "--json"]);
  const recorded = (JSON.parse(status.stdout) as { errorLog: string | null }).errorLog;
  t.truthy(recorded, status.stdout);
  t.is(recorded, errorLog);
  t.regex(await readFile(recorded!, "utf8"), /"code":"MtimeDiffers"/);
});
