import { createHash } from "node:crypto";
import { readFile } from "node:fs/promises";
import { mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import test from "ava";
import { BlobServiceClient } from "@azure/storage-blob";
import { contentOf, tempDir } from "@hsmfleet/testkit";
import { exitOf, runCli, spawnCli, startBus, startStorage, waitFor } from "./helpers.js";

const MiB = 1024 * 1024;
const md5 = (b: Buffer) => createHash("md5").update(b).digest("hex");

/** Whether process `pid` is stopped (SIGSTOP): state T in /proc/<pid>/stat. */
const stopped = async (pid: number): Promise<boolean> => {
  const stat = await readFile(`/proc/${pid}/stat`, "utf8").catch(() => "");
  return / T /.test(stat.slice(stat.lastIndexOf(")")));
};

test("a 4-second nats-server restart while a chunk's completion is being recorded (KV): the export retries and succeeds (issue 14.9)", async (t) => {
  const dir = await tempDir();
  t.teardown(() => dir.cleanup());
  const root = join(dir.path, "tree");
  await mkdir(root);
  const data = contentOf(9, Buffer.from("restart"), 24 * MiB + 99);
  await writeFile(join(root, "big.bin"), data);
  const azurite = await startStorage(t);
  const { server } = await startBus(t);
  const env = { AZURE_STORAGE_CONNECTION_STRING: azurite.connectionString };
  // The worker stops itself (SIGSTOP) with the first chunk uploaded and its completion not yet
  // recorded; the server goes down, the worker goes on into the outage, the server comes back 4 s later.
  const worker = spawnCli(["--nats", server.url, "worker", "--vm-name", "w"], {
    env: { ...env, HSMFLEET_TEST_SEAM: "chunk-before-complete:big.bin:SIGSTOP" },
  });
  t.teardown(() => void worker.kill("SIGKILL"));
  const exporting = runCli(
    [
      ...["--nats", server.url, "--workers", "0", "export", root, "--container", "restart"],
      ...["--chunk-size", "8MiB", "--block-size", "4MiB", "--json"],
    ],
    { env, timeoutMs: 120_000 },
  );
  await waitFor("the worker at the seam", () => stopped(worker.pid!), 60_000);
  server.kill("SIGKILL");
  await new Promise((r) => setTimeout(r, 200));
  worker.kill("SIGCONT");
  await new Promise((r) => setTimeout(r, 4000));
  await server.restart();
  const run = await exporting;
  t.is(run.code, 0, run.stderr + run.stdout);
  t.like(JSON.parse(run.stdout), { state: "succeeded", errors: 0, filesExported: 1 });
  const blob = BlobServiceClient.fromConnectionString(azurite.connectionString)
    .getContainerClient("restart")
    .getBlockBlobClient("big.bin");
  t.is(md5(await blob.downloadToBuffer()), md5(data), "byte-identical");
  worker.kill("SIGTERM");
  t.like(await exitOf(worker), { code: 0 });
});
