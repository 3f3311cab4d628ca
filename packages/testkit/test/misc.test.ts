import { spawn } from "node:child_process";
import { chmodSync, existsSync, mkdirSync, statSync, symlinkSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { join } from "node:path";
import test from "ava";
import { freePort, freePorts, referenceWalk, tempDir, type ReferenceCounts } from "../src/index.js";

test("tempDir is 0755 and cleanup removes chmod 000 subdirs and non-UTF-8 names", async (t) => {
  const dir = await tempDir("testkit-");
  t.teardown(() => dir.cleanup());
  t.regex(dir.path, /testkit-/);
  t.is(statSync(dir.path).mode & 0o777, 0o755);

  const locked = join(dir.path, "locked");
  mkdirSync(join(locked, "deeper"), { recursive: true });
  writeFileSync(join(locked, "deeper", "f"), "x");
  const badName = Buffer.concat([Buffer.from(locked + "/"), Buffer.from([0x62, 0xff, 0xfe])]);
  writeFileSync(badName, "y");
  chmodSync(join(locked, "deeper"), 0o000);
  chmodSync(locked, 0o000);

  await dir.cleanup();
  t.false(existsSync(dir.path));
  await dir.cleanup(); // idempotent
});

test("freePort returns distinct bindable loopback ports", async (t) => {
  const [a, b] = await Promise.all([freePort(), freePort("127.0.0.1")]);
  t.true(a > 0 && a < 65536);
  t.true(b > 0 && b < 65536);
  const server = createServer();
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(a, "127.0.0.1", () => resolve());
  });
  await new Promise<void>((resolve) => server.close(() => resolve()));
  t.pass();
});

test("referenceWalk counts by lstat and never follows symlinks", async (t) => {
  const dir = await tempDir();
  t.teardown(() => dir.cleanup());
  const root = join(dir.path, "root");
  mkdirSync(join(root, "sub", "subsub"), { recursive: true });
  writeFileSync(join(root, "a"), "12345");
  writeFileSync(join(root, "sub", "b"), "123");
  writeFileSync(Buffer.from(`${root}/sub/subsub/\xff`, "latin1"), "1234567");
  symlinkSync("sub", join(root, "to-dir"));
  symlinkSync(root, join(root, "sub", "loop"));
  symlinkSync("nowhere", join(root, "dangling"));

  t.deepEqual(await referenceWalk(root), {
    files: 3,
    directories: 3,
    symlinks: 3,
    other: 0,
    bytes: 15,
    errors: 0,
  });
  // A symlink given as the root is itself counted, not followed.
  t.deepEqual(await referenceWalk(join(root, "to-dir")), {
    files: 0,
    directories: 0,
    symlinks: 1,
    other: 0,
    bytes: 0,
    errors: 0,
  });
  t.deepEqual(await referenceWalk(join(root, "missing")), {
    files: 0,
    directories: 0,
    symlinks: 0,
    other: 0,
    bytes: 0,
    errors: 1,
  });
});

/** Run referenceWalk in a child process as uid/gid 65534 (root bypasses permission bits). */
const walkAsNobody = (root: string): Promise<ReferenceCounts> =>
  new Promise((resolve, reject) => {
    const module = new URL("../src/reference-walk.js", import.meta.url).href;
    const script = `import { referenceWalk } from ${JSON.stringify(module)};
process.stdout.write(JSON.stringify(await referenceWalk(${JSON.stringify(root)})));`;
    const child = spawn(process.execPath, ["--input-type=module", "-e", script], {
      uid: 65534,
      gid: 65534,
      cwd: "/",
      stdio: ["ignore", "pipe", "pipe"],
    });
    let out = "";
    let err = "";
    child.stdout.on("data", (c: Buffer) => (out += c.toString()));
    child.stderr.on("data", (c: Buffer) => (err += c.toString()));
    child.once("error", reject);
    child.once("close", (code) => {
      if (code === 0) resolve(JSON.parse(out) as ReferenceCounts);
      else reject(new Error(`walker exited ${code}: ${err}`));
    });
  });

test("referenceWalk counts an unreadable directory as one error", async (t) => {
  const dir = await tempDir();
  t.teardown(() => dir.cleanup());
  const root = join(dir.path, "root");
  mkdirSync(join(root, "locked", "inner"), { recursive: true });
  mkdirSync(join(root, "open"));
  writeFileSync(join(root, "a"), "12345");
  writeFileSync(join(root, "open", "b"), "123");
  writeFileSync(join(root, "locked", "hidden"), "1234567");
  chmodSync(join(root, "locked"), 0o000);

  const asRoot = process.getuid?.() === 0;
  const counts = asRoot ? await walkAsNobody(root) : await referenceWalk(root);
  t.deepEqual(counts, { files: 2, directories: 3, symlinks: 0, other: 0, bytes: 8, errors: 1 });
  if (asRoot) {
    // Root is not stopped by the mode bits: everything is visible.
    t.deepEqual(await referenceWalk(root), {
      files: 3,
      directories: 4,
      symlinks: 0,
      other: 0,
      bytes: 15,
      errors: 0,
    });
  }
});

test("freePorts gives distinct ports, each one bindable once it returns", async (t) => {
  const ports = await freePorts(8);
  t.is(new Set(ports).size, 8, ports.join(","));
  for (const port of ports) {
    const server = createServer();
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen({ host: "127.0.0.1", port, exclusive: true }, () => resolve());
    });
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }
});
