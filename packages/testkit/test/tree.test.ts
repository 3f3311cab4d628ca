import { lstatSync, readdirSync, readFileSync, readlinkSync, statSync } from "node:fs";
import { join } from "node:path";
import test from "ava";
import { HsmFlag, decodeHsmAttrs, encodeHsmAttrs, hsmStateName, HSM_COMPAT } from "@hsmfleet/core";
import {
  ODD_NAMES,
  contentOf,
  contentRange,
  generateTree,
  referenceWalk,
  tempDir,
  type TreeManifest,
  type TreeSpec,
} from "../src/index.js";
import { exec, parseGetfattrDump } from "./helpers.js";

const SLASH = Buffer.from("/");
const abs = (root: string, rel: Buffer): Buffer => Buffer.concat([Buffer.from(root), SLASH, rel]);

const scratch = async (t: { teardown(fn: () => Promise<void>): void }): Promise<string> => {
  const dir = await tempDir("tree-test-");
  t.teardown(() => dir.cleanup());
  return dir.path;
};

type Kind = "file" | "directory" | "symlink" | "other";
const kindOf = (path: Buffer): Kind => {
  const st = lstatSync(path);
  if (st.isFile()) return "file";
  if (st.isDirectory()) return "directory";
  if (st.isSymbolicLink()) return "symlink";
  return "other";
};

/** Independent recursive listing: "hex(path) type size" lines, sorted. */
const listTree = (root: string): string[] => {
  const out: string[] = [];
  const walk = (rel: Buffer): void => {
    const dir = rel.length === 0 ? Buffer.from(root) : abs(root, rel);
    for (const name of readdirSync(dir, { encoding: "buffer" })) {
      const childRel = rel.length === 0 ? name : Buffer.concat([rel, SLASH, name]);
      const path = abs(root, childRel);
      const type = kindOf(path);
      out.push(`${childRel.toString("hex")} ${type} ${lstatSync(path).size}`);
      if (type === "directory") walk(childRel);
    }
  };
  walk(Buffer.alloc(0));
  return out.sort();
};

const manifestLines = (m: TreeManifest): string[] =>
  m.entries.map((e) => `${e.path.toString("hex")} ${e.type} ${e.size}`).sort();

const ARCHIVED = HsmFlag.Exists | HsmFlag.Archived;
const STATES: NonNullable<TreeSpec["hsm"]>["states"] = [
  null,
  { flags: ARCHIVED, archiveId: 1 },
  { flags: ARCHIVED | HsmFlag.Released, archiveId: 2 },
  { flags: ARCHIVED | HsmFlag.Dirty, archiveId: 3 },
  { flags: HsmFlag.Exists, archiveId: 0 },
  { flags: ARCHIVED | HsmFlag.Lost, archiveId: 1 },
];

const FULL: TreeSpec = {
  depth: 2,
  fanout: 3,
  filesPerDir: 5,
  sizes: [0, 1, 4096, 100_000, 17],
  symlinksPerDir: 3,
  fifosPerDir: 2,
  oddNames: true,
  hsm: { states: STATES },
  modes: [0o644, 0o600, 0o755, 0o400],
  owners: [
    { uid: 0, gid: 0 },
    { uid: 65534, gid: 65534 },
    { uid: 1234, gid: 5678 },
  ],
  seed: 42,
};

test("full-featured tree matches its manifest, the reference walk and getfattr", async (t) => {
  const root = join(await scratch(t), "tree");
  const m = await generateTree(root, FULL);

  // Shape: 1 + 3 + 9 directories, each with 5 + 7 odd-named files, 3 symlinks, 2 FIFOs.
  const dirs = 1 + 3 + 9;
  const filesPerDir = 5 + ODD_NAMES.length;
  t.is(m.directories, dirs);
  t.is(m.files, dirs * filesPerDir);
  t.is(m.symlinks, dirs * 3);
  t.is(m.other, dirs * 2);
  t.is(m.entries.length, dirs - 1 + m.files + m.symlinks + m.other);
  const sizes = FULL.sizes!;
  let expectedBytes = 0;
  for (let n = 0; n < m.files; n++) expectedBytes += sizes[n % sizes.length]!;
  t.is(m.bytes, expectedBytes);

  // Counts agree with the independent reference walk, and the entry list with a plain listing.
  t.deepEqual(await referenceWalk(root), {
    files: m.files,
    directories: m.directories,
    symlinks: m.symlinks,
    other: m.other,
    bytes: m.bytes,
    errors: 0,
  });
  t.deepEqual(listTree(root), manifestLines(m));

  // Every directory has every odd name, including the non-UTF-8 and 255-byte ones.
  const dirPaths = [
    Buffer.from(root),
    ...m.entries.filter((e) => e.type === "directory").map((e) => abs(root, e.path)),
  ];
  for (const dir of dirPaths) {
    const names = readdirSync(dir, { encoding: "buffer" }).map((n) => n.toString("hex"));
    for (const odd of ODD_NAMES) t.true(names.includes(odd.toString("hex")), odd.toString());
  }
  t.true(ODD_NAMES.some((n) => n.length === 255));

  // Files: content, mode and owner round-robin in creation order.
  const files = m.entries.filter((e) => e.type === "file");
  files.forEach((e, n) => {
    const path = abs(root, e.path);
    const st = lstatSync(path);
    if (!readFileSync(path).equals(contentOf(42, e.path, e.size)))
      t.fail(`content of ${e.path.toString()}`);
    t.is(st.size, sizes[n % sizes.length]!);
    t.is(st.mode & 0o7777, FULL.modes![n % 4]!);
    t.is(st.uid, FULL.owners![n % 3]!.uid);
    t.is(st.gid, FULL.owners![n % 3]!.gid);
  });

  // Symlinks: raw targets recorded; the three kinds of target all occur.
  const kinds = new Map<string, number>();
  for (const e of m.entries.filter((x) => x.type === "symlink")) {
    const path = abs(root, e.path);
    t.deepEqual(readlinkSync(path, { encoding: "buffer" }), e.linkTarget);
    let kind = "dangling";
    try {
      kind = statSync(path).isDirectory() ? "directory" : "file";
    } catch {
      // dangling
    }
    kinds.set(kind, (kinds.get(kind) ?? 0) + 1);
  }
  t.deepEqual([...kinds.keys()].sort(), ["dangling", "directory", "file"]);
  t.is(kinds.get("file"), m.symlinks / 3);

  // FIFOs really are FIFOs.
  for (const e of m.entries.filter((x) => x.type === "other")) {
    t.true(lstatSync(abs(root, e.path)).isFIFO());
  }

  // HSM state counts.
  const expectedStates: Record<string, number> = {};
  for (let n = 0; n < m.files; n++) {
    const s = STATES[n % STATES.length];
    const name = hsmStateName(
      s
        ? { compat: HSM_COMPAT, flags: s.flags, archiveId: BigInt(s.archiveId), archiveVersion: 0n }
        : undefined,
    );
    expectedStates[name] = (expectedStates[name] ?? 0) + 1;
  }
  t.deepEqual(m.hsmStates, expectedStates);
  t.deepEqual(Object.keys(m.hsmStates).sort(), [
    "archived",
    "dirty",
    "exists",
    "lost",
    "new",
    "released",
  ]);

  // getfattr on a sample file: file #2 of the root is archived+released with archive id 2.
  const sample = files[2]!;
  t.deepEqual(sample.hsm, { flags: ARCHIVED | HsmFlag.Released, archiveId: 2 });
  const one = await exec("getfattr", [
    "--absolute-names",
    "-n",
    "trusted.hsm",
    "-e",
    "hex",
    abs(root, sample.path).toString(),
  ]);
  t.is(one.code, 0, one.stderr);
  const hex = /trusted\.hsm=0x([0-9a-f]+)/.exec(one.stdout.toString())?.[1];
  const expected = encodeHsmAttrs({
    compat: HSM_COMPAT,
    flags: ARCHIVED | HsmFlag.Released,
    archiveId: 2n,
    archiveVersion: 0n,
  });
  t.is(hex, expected.toString("hex"));
  const decoded = decodeHsmAttrs(Buffer.from(hex ?? "", "hex"));
  t.is(decoded.flags, ARCHIVED | HsmFlag.Released);
  t.is(decoded.archiveId, 2n);
  t.is(decoded.compat, HSM_COMPAT);

  // File #0 got the null state: no xattr at all.
  const none = await exec("getfattr", [
    "--absolute-names",
    "-n",
    "trusted.hsm",
    abs(root, files[0]!.path).toString(),
  ]);
  t.not(none.code, 0);
  t.regex(none.stderr, /No such attribute/);

  // Whole-tree dump (getfattr quotes raw names): exactly the files with a state have the xattr,
  // with the right value — including "new\nline", the non-UTF-8 and the 255-byte names.
  const dump = await exec(
    "getfattr",
    ["-R", "-h", "-P", "-d", "-m", "^trusted\\.hsm$", "-e", "hex", "."],
    root,
  );
  t.is(dump.code, 0, dump.stderr);
  const actual = [...parseGetfattrDump(dump.stdout)]
    .map(([path, attrs]) => `${path}=${attrs.get("trusted.hsm")}`)
    .sort();
  const wanted: string[] = [];
  for (const e of files) {
    if (!e.hsm) continue;
    const value = encodeHsmAttrs({
      compat: HSM_COMPAT,
      flags: e.hsm.flags,
      archiveId: BigInt(e.hsm.archiveId),
      archiveVersion: 0n,
    });
    wanted.push(`${e.path.toString("hex")}=0x${value.toString("hex")}`);
  }
  t.is(wanted.length, files.length - Math.ceil(files.length / STATES.length));
  t.deepEqual(actual, wanted.sort());
});

test("same spec and seed give the same manifest, content and xattrs; another seed changes content only", async (t) => {
  const base = await scratch(t);
  const spec: TreeSpec = {
    depth: 1,
    fanout: 2,
    filesPerDir: 6,
    symlinksPerDir: 2,
    fifosPerDir: 1,
    oddNames: true,
    hsm: { states: STATES },
    seed: 7,
  };
  const a = await generateTree(join(base, "a"), spec);
  const b = await generateTree(join(base, "b"), spec);
  const c = await generateTree(join(base, "c"), { ...spec, seed: 8 });
  t.deepEqual({ ...a, root: "" }, { ...b, root: "" });
  t.deepEqual({ ...a, root: "", seed: 0 }, { ...c, root: "", seed: 0 });

  let nonEmpty = 0;
  for (const e of a.entries) {
    if (e.type !== "file") continue;
    const bytesA = readFileSync(abs(a.root, e.path));
    t.true(bytesA.equals(readFileSync(abs(b.root, e.path))), e.path.toString());
    if (e.size > 0) {
      nonEmpty += 1;
      t.false(
        bytesA.equals(readFileSync(abs(c.root, e.path))),
        `seed changes ${e.path.toString()}`,
      );
    }
  }
  t.true(nonEmpty > 20);

  const dumps = await Promise.all(
    [a, b].map((m) =>
      exec("getfattr", ["-R", "-h", "-P", "-d", "-m", "-", "-e", "hex", "."], m.root),
    ),
  );
  t.true(dumps[0]!.stdout.length > 0);
  t.deepEqual(dumps[0]!.stdout, dumps[1]!.stdout);
});

test("contentOf / contentRange are deterministic, path- and seed-dependent, and consistent", (t) => {
  const p = Buffer.from("dir-0/file-1");
  const q = Buffer.from("dir-0/file-2");
  t.is(contentOf(1, p, 0).length, 0);
  t.is(contentOf(1, p, 4096).length, 4096);
  t.deepEqual(contentOf(1, p, 4096), contentOf(1, Buffer.from("dir-0/file-1"), 4096));
  t.notDeepEqual(contentOf(1, p, 8), contentOf(1, q, 8), "header differs per path");
  t.notDeepEqual(contentOf(1, p, 4096).subarray(8), contentOf(1, q, 4096).subarray(8));
  t.notDeepEqual(contentOf(1, p, 4096), contentOf(2, p, 4096));
  t.deepEqual(contentOf(1, p, 100), contentOf(1, p, 4096).subarray(0, 100), "prefix property");
  t.deepEqual(
    contentOf(1, Buffer.from([0x62, 0xff]), 1),
    contentOf(1, Buffer.from([0x62, 0xff]), 1),
  );

  // Across a big file (longer than the internal pattern): 4 MiB blocks never repeat, and
  // ranges agree with the whole.
  const MiB = 1024 * 1024;
  const size = 3 * 4 * MiB + 5;
  const whole = contentOf(9, p, size);
  const blocks = [0, 1, 2].map((i) => whole.subarray(i * 4 * MiB, (i + 1) * 4 * MiB));
  t.false(blocks[0]!.equals(blocks[1]!));
  t.false(blocks[1]!.equals(blocks[2]!));
  t.false(blocks[0]!.equals(blocks[2]!));
  for (const [start, end] of [
    [0, 3],
    [5, 20],
    [MiB - 7, 3 * MiB + 11],
    [size - 5, size],
    [size, size],
  ] as const) {
    t.true(
      contentRange(9, p, size, start, end).equals(whole.subarray(start, end)),
      `${start}..${end}`,
    );
  }
  t.throws(() => contentRange(9, p, 10, 5, 11), { instanceOf: RangeError });
  t.throws(() => contentOf(9, p, -1), { instanceOf: RangeError });
  // Not trivially compressible: byte histogram is roughly flat.
  const counts = new Array<number>(256).fill(0);
  for (const byte of whole.subarray(0, MiB)) counts[byte]! += 1;
  t.true(Math.max(...counts) < (MiB / 256) * 1.2);
});

test("files larger than the write chunk are written completely", async (t) => {
  const root = join(await scratch(t), "big");
  const size = 9 * 1024 * 1024 + 3;
  const m = await generateTree(root, {
    depth: 0,
    fanout: 0,
    filesPerDir: 2,
    sizes: [size, 5],
    seed: 3,
  });
  t.is(m.bytes, size + 5);
  t.is(m.directories, 1);
  const big = m.entries[0]!;
  const onDisk = readFileSync(abs(root, big.path));
  t.is(onDisk.length, size);
  t.true(onDisk.equals(contentOf(3, big.path, size)));
  // Really allocated, not sparse.
  t.true(lstatSync(abs(root, big.path)).blocks * 512 >= size);
});

test("rejects a non-empty root and invalid specs", async (t) => {
  const root = join(await scratch(t), "r");
  await generateTree(root, { depth: 0, fanout: 0, filesPerDir: 1 });
  await t.throwsAsync(generateTree(root, { depth: 0, fanout: 0, filesPerDir: 1 }), {
    message: /not empty/,
  });
  const fresh = join(await scratch(t), "r");
  await t.throwsAsync(generateTree(fresh, { depth: -1, fanout: 0, filesPerDir: 1 }), {
    instanceOf: RangeError,
  });
  await t.throwsAsync(generateTree(fresh, { depth: 0, fanout: 0, filesPerDir: 1, sizes: [] }), {
    instanceOf: RangeError,
  });
  await t.throwsAsync(
    generateTree(fresh, { depth: 0, fanout: 0, filesPerDir: 1, hsm: { states: [] } }),
    { instanceOf: RangeError },
  );
});

// Size and speed are the benchmark's business (npm run bench:scan builds 100k+ entry trees);
// here a mid-sized tree checks that generation and the reference walk agree at scale.
test("generates a ~20k-entry tree and the reference walk agrees", async (t) => {
  const root = join(await scratch(t), "big-tree");
  const started = performance.now();
  const m = await generateTree(root, {
    depth: 2,
    fanout: 10,
    filesPerDir: 180,
    sizes: [0, 1, 100, 4096],
    symlinksPerDir: 3,
    fifosPerDir: 1,
    hsm: { states: [null, { flags: ARCHIVED, archiveId: 1 }] },
  });
  const generated = performance.now() - started;
  const total = m.entries.length + 1;
  t.true(total >= 20_000, `${total} entries`);
  const walkStarted = performance.now();
  const ref = await referenceWalk(root);
  const walked = performance.now() - walkStarted;
  t.deepEqual(ref, {
    files: m.files,
    directories: m.directories,
    symlinks: m.symlinks,
    other: m.other,
    bytes: m.bytes,
    errors: 0,
  });
  t.deepEqual(m.hsmStates, { new: Math.ceil(m.files / 2), archived: Math.floor(m.files / 2) });
  t.log(
    `${total} entries generated in ${generated.toFixed(0)} ms, walked in ${walked.toFixed(0)} ms`,
  );
});
