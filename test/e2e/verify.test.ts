import { chmod, rm, stat, utimes, writeFile } from "node:fs/promises";
import { join } from "node:path";
import test from "ava";
import { BlobServiceClient } from "@azure/storage-blob";
import { parseStorageTarget } from "@hsmfleet/blob";
import { metadataForEntry, EntryType } from "@hsmfleet/core";
import { runExportJob, runVerifyJob } from "@hsmfleet/coordinator";
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
