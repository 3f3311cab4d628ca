import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  readdirSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

import test from "ava";

import { awaitFreedInodes, noteDeletes, onJournalLessExt4, retireTree } from "../bench/proc.js";

test("the journal-less ext4 check says no for tmpfs and procfs, and reads the same /sys answer as a shell would for /tmp", (t) => {
  t.false(onJournalLessExt4("/proc"));
  t.false(onJournalLessExt4("/dev/shm"));
  t.false(onJournalLessExt4("/nonexistent-dir"));
  // Whatever /tmp is here, the answer must match /sys read by hand when /tmp is an ext4 device.
  const mounts = readFileSync("/proc/self/mounts", "utf8").split("\n");
  const fsOf = (dir: string) =>
    mounts
      .map((l) => l.split(" "))
      .filter(
        (f) => f[1] !== undefined && (dir === f[1] || dir.startsWith(`${f[1]}/`) || f[1] === "/"),
      )
      .sort((a, b) => b[1]!.length - a[1]!.length)[0];
  const tmp = fsOf(tmpdir());
  if (tmp?.[2] !== "ext4") {
    t.false(onJournalLessExt4(tmpdir()));
    return;
  }
  const dev = tmp[0]!.replace(/^\/dev\//, "");
  let task: string | undefined;
  try {
    task = readFileSync(`/sys/fs/ext4/${dev}/journal_task`, "utf8").trim();
  } catch {
    task = undefined;
  }
  if (task !== undefined) t.is(onJournalLessExt4(tmpdir()), task === "<none>");
  else t.pass("no journal_task for this device: nothing to compare");
});

test("awaitFreedInodes waits out what is left of the window after a noted delete, and not at all without a note, after it, or with a journal", async (t) => {
  const dir = mkdtempSync(join(tmpdir(), "inode-wait-"));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const note = join(dir, "deleted");
  const lines: string[] = [];
  const log = (l: string) => lines.push(l);

  t.is(
    await awaitFreedInodes(dir, log, { note, waitMs: 400, journalLess: true }),
    0,
    "no note yet",
  );
  noteDeletes(note);
  const t0 = Date.now();
  const waited = await awaitFreedInodes(dir, log, { note, waitMs: 400, journalLess: true });
  t.true(waited > 0 && waited <= 400, `waited ${waited} ms`);
  t.true(Date.now() - t0 >= waited - 5);
  t.is(lines.length, 1);
  t.regex(lines[0]!, /journal-less ext4/);
  t.is(
    await awaitFreedInodes(dir, log, { note, waitMs: 400, journalLess: true }),
    0,
    "window over",
  );
  noteDeletes(note);
  t.is(await awaitFreedInodes(dir, log, { note, waitMs: 400, journalLess: false }), 0, "journal");
  t.is(lines.length, 1);
});

test("retireTree moves trees into the trash on a journal-less ext4 and empties it past its cap (noting the delete); elsewhere it deletes at once", async (t) => {
  const dir = mkdtempSync(join(tmpdir(), "retire-"));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const trash = join(dir, "trash");
  const note = join(dir, "deleted");
  const tree = (name: string, files: number) => {
    const d = join(dir, name);
    mkdirSync(join(d, "sub"), { recursive: true });
    for (let i = 0; i < files; i++) writeFileSync(join(d, "sub", `f${i}`), "x");
    return d;
  };
  const o = { trash, note, maxEntries: 25, journalLess: true };

  t.is(await retireTree(tree("a", 10), o), "moved"); // 12 entries: the tree, sub, 10 files
  t.false(existsSync(join(dir, "a")));
  t.is(readFileSync(join(trash, ".entries"), "utf8").trim(), "12");
  t.false(existsSync(note), "nothing deleted, nothing noted");
  t.is(await retireTree(tree("b", 10), o), "moved");
  t.is(readFileSync(join(trash, ".entries"), "utf8").trim(), "24");
  t.is(readdirSync(trash).filter((n) => n !== ".entries").length, 2);
  t.is(await retireTree(tree("c", 1), o), "emptied"); // 27 > 25
  t.false(existsSync(trash));
  t.true(Number(readFileSync(note, "utf8")) > Date.now() - 60_000);

  rmSync(note);
  t.is(await retireTree(tree("d", 3), { ...o, journalLess: false }), "deleted");
  t.false(existsSync(join(dir, "d")));
  t.false(existsSync(trash));
  t.true(existsSync(note));
});
