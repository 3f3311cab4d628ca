import {
  appendFile,
  chmod,
  chown,
  mkdir,
  rename,
  rm,
  rmdir,
  symlink,
  writeFile,
} from "node:fs/promises";
import { chmodSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

/** The stand-in `lfs` (lfs-changelog-standin.ts) and the files it reads and writes. */
export interface LfsChangelogStandIn {
  /** Executable to pass as --lfs. */
  lfs: string;
  changelog: string;
  fids: string;
  /** One line per `lfs changelog_clear`: "<mdt> <user> <endrec>". */
  clears: string;
}

const STANDIN_JS = fileURLToPath(new URL("./lfs-changelog-standin.js", import.meta.url));

/** Writes the STAND-IN `lfs` wrapper for the changelog subcommands into `dir`. */
export const lfsChangelogStandIn = (dir: string): LfsChangelogStandIn => {
  const s = {
    lfs: join(dir, "lfs"),
    changelog: join(dir, "changelog.txt"),
    fids: join(dir, "fids.jsonl"),
    clears: join(dir, "clears.log"),
  };
  writeFileSync(s.changelog, "");
  writeFileSync(s.fids, `${JSON.stringify({ fid: "[0x200000007:0x1:0x0]", path: "" })}\n`);
  writeFileSync(s.clears, "");
  writeFileSync(
    s.lfs,
    `#!/bin/sh\n# STAND-IN for lfs (tests only)\nLFS_STANDIN_CHANGELOG='${s.changelog}' LFS_STANDIN_FIDS='${s.fids}' LFS_STANDIN_CLEARS='${s.clears}' exec '${process.execPath}' '${STANDIN_JS}' "$@"\n`,
  );
  chmodSync(s.lfs, 0o755);
  return s;
};

const TYPES: Record<string, number> = {
  CREAT: 1,
  MKDIR: 2,
  HLINK: 3,
  SLINK: 4,
  MKNOD: 5,
  UNLNK: 6,
  RMDIR: 7,
  RENME: 8,
  RNMTO: 9,
  CLOSE: 11,
  LYOUT: 12,
  TRUNC: 13,
  SATTR: 14,
  XATTR: 15,
  HSM: 16,
  MTIME: 17,
  CTIME: 18,
  ATIME: 19,
};

const two = (n: number): string => String(n).padStart(2, "0");

/**
 * Carries out file operations on a real tree (standing for a Lustre mount) and records, for each,
 * the changelog record(s) a Lustre MDT writes, in the exact text `lfs changelog` prints, with
 * made-up FIDs kept in the stand-in's FID file. So the lustre source reads what it would on
 * AMLFS, and the tree holds what the records say.
 */
export class LustreRecorder {
  readonly #s: LfsChangelogStandIn;
  readonly #root: string;
  #index = 0;
  #seq = 0x1;
  readonly #fids = new Map<string, string>([["", "[0x200000007:0x1:0x0]"]]);

  constructor(standIn: LfsChangelogStandIn, root: string) {
    this.#s = standIn;
    this.#root = root;
  }

  get lastIndex(): number {
    return this.#index;
  }

  #newFid(): string {
    return `[0x200000402:0x${(this.#seq++).toString(16)}:0x0]`;
  }

  #parent(rel: string): { fid: string; name: string } {
    const slash = rel.lastIndexOf("/");
    const dir = slash < 0 ? "" : rel.slice(0, slash);
    const fid = this.#fids.get(dir);
    if (fid === undefined) throw new Error(`recorder: no FID for directory "${dir}"`);
    return { fid, name: rel.slice(slash + 1) };
  }

  async #record(type: string, flags: number, target: string, tail: string): Promise<void> {
    const d = new Date();
    const line =
      `${++this.#index} ${two(TYPES[type]!)}${type.padEnd(5)} ` +
      `${two(d.getHours())}:${two(d.getMinutes())}:${two(d.getSeconds())}.${String(d.getMilliseconds() * 1e6).padStart(9, "0")} ` +
      `${d.getFullYear()}.${two(d.getMonth() + 1)}.${two(d.getDate())} 0x${flags.toString(16)} t=${target} ` +
      `j=${type.toLowerCase()}.0 ef=0xf u=0:0 nid=0@lo${tail}`;
    await appendFile(this.#s.changelog, `${line}\n`);
  }

  async #setPath(fid: string, path: string | null): Promise<void> {
    await appendFile(this.#s.fids, `${JSON.stringify({ fid, path })}\n`);
  }

  async mkdir(rel: string): Promise<void> {
    await mkdir(join(this.#root, rel));
    const fid = this.#newFid();
    this.#fids.set(rel, fid);
    await this.#setPath(fid, rel);
    const p = this.#parent(rel);
    await this.#record("MKDIR", 0, fid, ` p=${p.fid} ${p.name}`);
  }

  async create(rel: string, data: string | Buffer): Promise<void> {
    await writeFile(join(this.#root, rel), data);
    const fid = this.#newFid();
    this.#fids.set(rel, fid);
    await this.#setPath(fid, rel);
    const p = this.#parent(rel);
    await this.#record("CREAT", 0, fid, ` p=${p.fid} ${p.name}`);
    await this.#record("CLOSE", 0x42, fid, "");
  }

  async append(rel: string, data: string): Promise<void> {
    await appendFile(join(this.#root, rel), data);
    await this.#record("MTIME", 0x7, this.#fids.get(rel)!, "");
    await this.#record("CLOSE", 0x42, this.#fids.get(rel)!, "");
  }

  async chmod(rel: string, mode: number): Promise<void> {
    await chmod(join(this.#root, rel), mode);
    await this.#record("SATTR", 0x44, this.#fids.get(rel)!, "");
  }

  async chown(rel: string, uid: number, gid: number): Promise<void> {
    await chown(join(this.#root, rel), uid, gid);
    await this.#record("SATTR", 0x44, this.#fids.get(rel)!, "");
  }

  async symlink(target: string, rel: string): Promise<void> {
    await symlink(target, join(this.#root, rel));
    const fid = this.#newFid();
    this.#fids.set(rel, fid);
    await this.#setPath(fid, rel);
    const p = this.#parent(rel);
    await this.#record("SLINK", 0, fid, ` p=${p.fid} ${p.name}`);
  }

  /** rename(2) as one RENME record (t= the replaced entry or 0, s=/sp= the entry and its old parent). */
  async rename(from: string, to: string): Promise<void> {
    await rename(join(this.#root, from), join(this.#root, to));
    const fid = this.#fids.get(from)!;
    const src = this.#parent(from);
    const dst = this.#parent(to);
    for (const [path, f] of [...this.#fids]) {
      if (path !== from && !path.startsWith(`${from}/`)) continue;
      const moved = to + path.slice(from.length);
      this.#fids.delete(path);
      this.#fids.set(moved, f);
      await this.#setPath(f, moved);
    }
    await this.#record(
      "RENME",
      0,
      "[0:0x0:0x0]",
      ` s=${fid} sp=${src.fid} ${src.name} p=${dst.fid} ${dst.name}`,
    );
  }

  async unlink(rel: string): Promise<void> {
    await rm(join(this.#root, rel));
    const fid = this.#fids.get(rel)!;
    this.#fids.delete(rel);
    const p = this.#parent(rel);
    await this.#setPath(fid, null);
    await this.#record("UNLNK", 0x1, fid, ` p=${p.fid} ${p.name}`);
  }

  async rmdir(rel: string): Promise<void> {
    await rmdir(join(this.#root, rel));
    const fid = this.#fids.get(rel)!;
    const p = this.#parent(rel);
    this.#fids.delete(rel);
    await this.#setPath(fid, null);
    await this.#record("RMDIR", 0x1, fid, ` p=${p.fid} ${p.name}`);
  }
}
