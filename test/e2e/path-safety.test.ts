/**
 * Path safety (issue 14, items 1–3): a root-run mover never reads or writes outside its job
 * through a swapped directory or a planted symlink. The swap races are driven deterministically
 * through the HSMFLEET_TEST_PAUSE_BEFORE_OPEN test seam (@hsmfleet/fs test-seam.ts): the worker
 * waits right before it opens the named path while the test swaps a parent directory for a
 * symlink to a directory outside the job. Every item test runs twice: on the openat2 path and on
 * the forced openat/O_NOFOLLOW fallback (HSMFLEET_FS_NO_OPENAT2=1).
 */
import {
  access,
  lstat,
  mkdir,
  readFile,
  readdir,
  rename,
  symlink,
  utimes,
  writeFile,
} from "node:fs/promises";
import { join } from "node:path";
import test from "ava";
import { BlobServiceClient } from "@azure/storage-blob";
import type { ContainerClient } from "@azure/storage-blob";
import { getXattr } from "@hsmfleet/fs";
import { tempDir } from "@hsmfleet/testkit";
import { exitOf, runCli, spawnCli, startBus, startStorage, waitFor } from "./helpers.js";

const SECRET = "TOP-SECRET-OUTSIDE-THE-JOB-0123456789";
const DECOY = "decoy-inside-the-job-tree-0123456789!";
const MTIME = new Date("2021-06-07T08:09:10Z");

/** Every blob body in `c`, by name. */
const allBlobs = async (c: ContainerClient): Promise<Map<string, string>> => {
  const out = new Map<string, string>();
  for await (const b of c.listBlobsFlat()) {
    out.set(b.name, (await c.getBlobClient(b.name).downloadToBuffer()).toString("latin1"));
  }
  return out;
};

const collect = (child: ReturnType<typeof spawnCli>) => {
  const out = { stdout: "", stderr: "" };
  child.stdout?.on("data", (d: Buffer) => (out.stdout += d.toString()));
  child.stderr?.on("data", (d: Buffer) => (out.stderr += d.toString()));
  return out;
};

const exists = (p: string) =>
  access(p).then(
    () => true,
    () => false,
  );

/** Name, content and HSM xattrs of every file in `dir` (not recursive). */
const inventory = async (dir: string): Promise<string> => {
  const rows: string[] = [];
  for (const name of (await readdir(dir)).sort()) {
    const p = join(dir, name);
    const st = await lstat(p);
    const content = st.isFile() ? await readFile(p, "latin1") : "";
    const hsm = await getXattr(Buffer.from(p), "trusted.hsm");
    const loc = await getXattr(Buffer.from(p), "trusted.hsmfleet.archive");
    rows.push(
      `${name} ${st.mode.toString(8)} ${st.size} ${st.mtimeMs} ${content} ${hsm ? "HSM" : ""} ${loc ? "LOC" : ""}`,
    );
  }
  return rows.join("\n");
};

const modes = [
  { title: "openat2", env: {} },
  { title: "openat fallback", env: { HSMFLEET_FS_NO_OPENAT2: "1" } },
] as const;

for (const m of modes) {
  test.serial(
    `[${m.title}] export: a parent directory swapped for a symlink mid-export never uploads the file outside the job`,
    async (t) => {
      const tmp = await tempDir();
      t.teardown(() => tmp.cleanup());
      const azurite = await startStorage(t);
      const { server } = await startBus(t);
      const root = join(tmp.path, "tree");
      const outside = join(tmp.path, "outside");
      const signal = join(tmp.path, "signal");
      await mkdir(join(root, "alice/x"), { recursive: true });
      await mkdir(outside);
      await mkdir(signal);
      for (const n of ["a", "b", "c"]) await writeFile(join(root, "alice", n), `file ${n}`);
      // The decoy has the size and mtime of the outside file: size+mtime checks cannot tell them apart.
      await writeFile(join(root, "alice/x/secret"), DECOY);
      await writeFile(join(outside, "secret"), SECRET);
      await utimes(join(root, "alice/x/secret"), MTIME, MTIME);
      await utimes(join(outside, "secret"), MTIME, MTIME);

      const child = spawnCli(
        [
          "--nats",
          server.url,
          "--storage",
          azurite.connectionString,
          "--workers",
          "1",
          "export",
          root,
          "--container",
          "swap",
          "--json",
          "--quiet",
          "--max-errors",
          "-1",
        ],
        { env: { ...m.env, HSMFLEET_TEST_PAUSE_BEFORE_OPEN: `${signal}:alice/x/secret` } },
      );
      const out = collect(child);
      await waitFor(
        "the worker to pause before opening alice/x/secret",
        () => exists(join(signal, "paused")),
        180_000,
      );
      // The owner of alice/ swaps x for a symlink to a directory outside the job.
      await rename(join(root, "alice/x"), join(root, "alice/x.real"));
      await symlink(outside, join(root, "alice/x"));
      await writeFile(join(signal, "resume"), "");
      const { code } = await exitOf(child);

      const service = BlobServiceClient.fromConnectionString(azurite.connectionString);
      const blobs = await allBlobs(service.getContainerClient("swap"));
      for (const [name, body] of blobs)
        t.false(body.includes(SECRET), `blob ${name} holds the outside file`);
      // Nothing else is lost: the other files are exported.
      for (const n of ["a", "b", "c"]) t.is(blobs.get(`alice/${n}`), `file ${n}`);
      t.not(code, 0, "the job reports the refused file");
      const summary = JSON.parse(out.stdout) as { filesFailed?: number; errors?: number };
      t.truthy(summary, out.stderr);
      const errors = await readFile(join(tmp.path, "errors"), "utf8").catch(() => "");
      t.log(out.stdout.slice(0, 1500), out.stderr.slice(0, 1500));
      // The refusal names the path, the operation and the cause.
      t.regex(`${out.stdout}${out.stderr}${errors}`, /alice\/x\/secret/);
      t.regex(`${out.stdout}${out.stderr}${errors}`, /symbolic link|symlink/);
    },
  );

  test.serial(
    `[${m.title}] export walk: a directory whose parent was swapped for a symlink is never listed`,
    async (t) => {
      const tmp = await tempDir();
      t.teardown(() => tmp.cleanup());
      const azurite = await startStorage(t);
      const { server } = await startBus(t);
      const root = join(tmp.path, "tree");
      const outside = join(tmp.path, "outside");
      const signal = join(tmp.path, "signal");
      await mkdir(join(root, "alice/x/y"), { recursive: true });
      await mkdir(join(outside, "y"), { recursive: true });
      await mkdir(signal);
      await writeFile(join(root, "alice/x/y/inside"), "inside");
      await writeFile(join(outside, "y/outside-name-leak"), SECRET);
      const child = spawnCli(
        [
          "--nats",
          server.url,
          "--storage",
          azurite.connectionString,
          "--workers",
          "1",
          "export",
          root,
          "--container",
          "walk",
          "--json",
          "--quiet",
          "--max-errors",
          "-1",
        ],
        { env: { ...m.env, HSMFLEET_TEST_PAUSE_BEFORE_OPEN: `${signal}:alice/x/y` } },
      );
      const out = collect(child);
      await waitFor(
        "the walk to pause before listing alice/x/y",
        () => exists(join(signal, "paused")),
        180_000,
      );
      await rename(join(root, "alice/x"), join(root, "alice/x.real"));
      await symlink(outside, join(root, "alice/x"));
      await writeFile(join(signal, "resume"), "");
      const { code } = await exitOf(child);
      const service = BlobServiceClient.fromConnectionString(azurite.connectionString);
      const blobs = await allBlobs(service.getContainerClient("walk"));
      t.false(
        [...blobs.keys()].some((n) => n.includes("outside-name-leak")),
        [...blobs.keys()].join(" "),
      );
      for (const [name, body] of blobs) t.false(body.includes(SECRET), name);
      t.not(code, 0, out.stderr);
      t.regex(out.stdout, /alice\/x\/y/);
    },
  );

  test.serial(
    `[${m.title}] import: a target directory swapped for a symlink mid-import never writes outside the target`,
    async (t) => {
      const tmp = await tempDir();
      t.teardown(() => tmp.cleanup());
      const azurite = await startStorage(t);
      const { server } = await startBus(t);
      const service = BlobServiceClient.fromConnectionString(azurite.connectionString);
      const c = service.getContainerClient("stubs");
      await c.create();
      const names = Array.from({ length: 300 }, (_, i) => `f${String(i).padStart(3, "0")}`);
      for (let i = 0; i < names.length; i += 50) {
        await Promise.all(
          names
            .slice(i, i + 50)
            .map((n) => c.getBlockBlobClient(`big/${n}`).upload(`data ${n}`, `data ${n}`.length)),
        );
      }
      const target = join(tmp.path, "target");
      const outside = join(tmp.path, "outside");
      const signal = join(tmp.path, "signal");
      await mkdir(target);
      await mkdir(outside);
      await mkdir(signal);
      // Files a root-run import must never touch.
      for (const n of ["f150", "f200", "f299"]) await writeFile(join(outside, n), `precious ${n}`);
      const before = await inventory(outside);

      const child = spawnCli(
        [
          "--nats",
          server.url,
          "--storage",
          azurite.connectionString,
          "--workers",
          "1",
          "import",
          target,
          "--container",
          "stubs",
          "--conflict",
          "overwrite-always",
          "--max-errors",
          "-1",
          "--json",
          "--quiet",
        ],
        { env: { ...m.env, HSMFLEET_TEST_PAUSE_BEFORE_OPEN: `${signal}:big/f150` } },
      );
      const out = collect(child);
      await waitFor(
        "the worker to pause before creating big/f150",
        () => exists(join(signal, "paused")),
        180_000,
      );
      // The other entries go on being created meanwhile and may make big/ again between the
      // rename and the symlink: move that one aside too until the symlink is in place.
      for (let n = 0; ; n++) {
        await rename(join(target, "big"), join(target, n === 0 ? "big.real" : `big.real${n}`));
        try {
          await symlink(outside, join(target, "big"));
          break;
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code !== "EEXIST" || n > 20) throw err;
        }
      }
      await writeFile(join(signal, "resume"), "");
      const { code } = await exitOf(child);

      t.is(
        await inventory(outside),
        before,
        "nothing outside the target was created, changed or tagged",
      );
      t.not(code, 0, `the job reports the refused entries: ${out.stdout} ${out.stderr}`);
      // big.real keeps its creation mode 0700: its shard could not finish it after the swap.
      t.is((await lstat(join(target, "big.real"))).mode & 0o777, 0o700);
    },
  );

  test.serial(
    `[${m.title}] import: planted IMPORT_IN_PROGRESS symlinks never redirect the marker file`,
    async (t) => {
      const tmp = await tempDir();
      t.teardown(() => tmp.cleanup());
      const azurite = await startStorage(t);
      const { server } = await startBus(t);
      const service = BlobServiceClient.fromConnectionString(azurite.connectionString);
      const c = service.getContainerClient("markers");
      await c.create();
      await c.getBlockBlobClient("d/f").upload("hello", 5);
      const target = join(tmp.path, "target");
      await mkdir(target);
      const victim = join(tmp.path, "victim.conf");
      await writeFile(victim, "root-only configuration\n");
      // A symlink for each second of the next three minutes, in every name the markers could take.
      const now = Math.floor(Date.now() / 1000);
      for (let s = -5; s < 180; s++) {
        const stamp = new Date((now + s) * 1000)
          .toISOString()
          .replace(/[-:]/g, "")
          .replace(/\.\d+Z$/, "Z");
        for (const state of ["IN_PROGRESS", "SUCCEEDED", "FAILED", "CANCELLED"]) {
          await symlink(victim, join(target, `IMPORT_${state}.${stamp}`));
        }
      }
      const run = await runCli(
        [
          "--nats",
          server.url,
          "--storage",
          azurite.connectionString,
          "--workers",
          "1",
          "import",
          target,
          "--container",
          "markers",
          "--json",
          "--quiet",
        ],
        { env: { ...m.env }, timeoutMs: 90_000 },
      );
      t.is(run.code, 0, run.stderr);
      t.is(await readFile(victim, "utf8"), "root-only configuration\n");
      t.true((await lstat(join(target, "d/f"))).isFile(), "the import itself went through");
      // An implicit directory (a prefix with no directory blob) is 0755, never world-writable.
      t.is((await lstat(join(target, "d"))).mode & 0o7777, 0o755);
      // The marker was not written through any planted symlink: none of them changed.
      const markers = (await readdir(target)).filter((n) => n.startsWith("IMPORT_"));
      for (const n of markers) t.true((await lstat(join(target, n))).isSymbolicLink(), n);
    },
  );
}
