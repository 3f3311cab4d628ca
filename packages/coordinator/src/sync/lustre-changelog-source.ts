import { execFile, spawn } from "node:child_process";
import { relative } from "node:path";
import { createInterface } from "node:readline";
import { DependencyError, FsOperationError, errorCode, errorMessage } from "@hsmfleet/core";
import { isDirectoryMode, jobRootFor } from "@hsmfleet/fs";
import type { ChangeRecord } from "@hsmfleet/protocol";
import type { Logger } from "@hsmfleet/telemetry";
import type { ChangeCheckpoint, ChangeSource, SourceChange } from "./change-source.js";
import { parseChangelogLine } from "./lustre-changelog-parser.js";

export interface LustreSourceOptions {
  /** The `lfs` binary. Default `lfs`. */
  lfsPath?: string | undefined;
  /** MDT device name, e.g. `lustre-MDT0000`. */
  mdt: string;
  /** The registered changelog user (`lctl changelog_register` printed it, e.g. `cl1`). */
  user: string;
  /** Mount point of the Lustre file system (fid2path resolves under it). */
  mount: string;
  /** The synced tree (the mount point or a directory in it). */
  root: string;
  /** Wait this long after reaching the end of the changelog before reading again. Default 1 s. */
  pollMs?: number | undefined;
  logger?: Logger | undefined;
}

const ROOT_FID = "[0x200000007:0x1:0x0]";
const NAMED = new Set([
  "CREAT",
  "MKDIR",
  "HLINK",
  "SLINK",
  "MKNOD",
  "UNLNK",
  "RMDIR",
  "RENME",
  "RNMTO",
]);

/**
 * Changes of a Lustre file system from its changelog: `lfs changelog <mdt> <startrec>` read from
 * the record after the checkpoint, paths resolved with `lfs fid2path` (parent FID + name; records
 * without a name by their target FID), and `lfs changelog_clear <mdt> <user> <endrec>` only for
 * records the service has durably applied (release()). One source per MDT (DNE: one per MDT).
 */
export class LustreChangelogSource implements ChangeSource {
  readonly name: string;
  readonly #o: Required<Omit<LustreSourceOptions, "logger">> & { logger: Logger | undefined };
  #next = 0n;
  #cleared = 0n;
  #stopped = false;
  #loop: Promise<void> | undefined;
  #wake: (() => void) | undefined;
  /** Directory FIDs to paths relative to the mount ("" the root); cleared on any rename or rmdir. */
  readonly #paths = new Map<string, string>();
  /** Where the synced root sits under the mount ("" when it is the mount). */
  readonly #rootRel: string;

  constructor(options: LustreSourceOptions) {
    this.#o = {
      lfsPath: options.lfsPath ?? "lfs",
      mdt: options.mdt,
      user: options.user,
      mount: options.mount,
      root: options.root,
      pollMs: options.pollMs ?? 1_000,
      logger: options.logger,
    };
    this.name = `lustre:${options.mdt}`;
    this.#rootRel = relative(options.mount, options.root);
    if (this.#rootRel.startsWith(".."))
      throw new Error(`sync root ${options.root} is not under the Lustre mount ${options.mount}`);
  }

  start(
    checkpoint: ChangeCheckpoint | undefined,
    emit: (changes: SourceChange[]) => void,
  ): Promise<void> {
    this.#next = checkpoint === undefined ? 0n : checkpoint.index + 1n;
    this.#cleared = checkpoint?.index ?? 0n;
    this.#loop = this.#run(emit).catch((err: unknown) =>
      this.#o.logger?.error(
        { err: errorMessage(err), mdt: this.#o.mdt },
        "sync: changelog reader stopped",
      ),
    );
    return Promise.resolve();
  }

  async #run(emit: (changes: SourceChange[]) => void): Promise<void> {
    while (!this.#stopped) {
      let read = 0;
      try {
        read = await this.#readOnce(emit);
      } catch (err) {
        this.#o.logger?.warn(
          { err: errorMessage(err), mdt: this.#o.mdt },
          "sync: reading the changelog failed; retrying",
        );
      }
      if (read === 0 && !this.#stopped)
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, this.#o.pollMs);
          this.#wake = () => {
            clearTimeout(timer);
            resolve();
          };
        });
    }
  }

  /** One pass of `lfs changelog` from the next record to the end; the records read. */
  async #readOnce(emit: (changes: SourceChange[]) => void): Promise<number> {
    const child = spawn(this.#o.lfsPath, ["changelog", this.#o.mdt, this.#next.toString()], {
      stdio: ["ignore", "pipe", "pipe"],
    });
    let stderr = "";
    child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
    const exited = new Promise<number>((resolve, reject) => {
      child.once("error", (err) =>
        reject(
          errorCode(err) === "ENOENT"
            ? new DependencyError(
                `cannot run ${this.#o.lfsPath}: install the Lustre client or pass --lfs <path>`,
                { cause: err },
              )
            : err,
        ),
      );
      child.once("close", (code) => resolve(code ?? 1));
    });
    let batch: ChangeRecord[] = [];
    let total = 0;
    const flush = async () => {
      if (batch.length === 0) return;
      const records = batch;
      batch = [];
      const changes = await this.#resolve(records);
      total += records.length;
      this.#next = BigInt(records[records.length - 1]!.index) + 1n;
      if (changes.length > 0) emit(changes);
    };
    for await (const line of createInterface({ input: child.stdout, crlfDelay: Infinity })) {
      if (line.trim() === "") continue;
      const record = parseChangelogLine(line, this.name);
      if (BigInt(record.index) < this.#next) continue;
      batch.push(record);
      if (batch.length >= 1_000) await flush();
    }
    await flush();
    const code = await exited;
    if (code !== 0)
      throw new FsOperationError("lfs changelog", this.#o.mdt, `exit ${code}`, stderr.trim());
    return total;
  }

  /** Paths of the records (relative to the synced root); records outside it are dropped. */
  async #resolve(records: ChangeRecord[]): Promise<SourceChange[]> {
    const wanted = new Set<string>();
    const created = new Set(
      records
        .filter((r) => r.type === "CREAT" || r.type === "MKDIR" || r.type === "SLINK")
        .map((r) => r.target),
    );
    for (const r of records) {
      if (NAMED.has(r.type) && r.parent) wanted.add(r.parent);
      else if (!NAMED.has(r.type) && !created.has(r.target)) wanted.add(r.target);
      if (r.sourceParent) wanted.add(r.sourceParent);
    }
    // A RENME or RMDIR in the batch clears the path cache part-way (below): then every FID is
    // asked for, or a record after it whose parent was cached would find no path and be dropped.
    const clears = records.some((r) => r.type === "RENME" || r.type === "RMDIR");
    const known = await this.#fid2path([...wanted].filter((f) => clears || !this.#paths.has(f)));
    const pathOf = (fid: string): string | undefined => this.#paths.get(fid) ?? known.get(fid);
    const out: SourceChange[] = [];
    for (const r of records) {
      const where = (parent: string, name: string): string | undefined => {
        const dir = pathOf(parent);
        return dir === undefined ? undefined : dir === "" ? name : `${dir}/${name}`;
      };
      const full = NAMED.has(r.type) && r.parent ? where(r.parent, r.name) : pathOf(r.target);
      const rel = full === undefined ? undefined : this.#underRoot(full);
      if (r.type === "RENME" || r.type === "RMDIR") this.#paths.clear();
      // A new entry's path is known from its record: its CLOSE/MTIME/SATTR need no fid2path.
      if ((r.type === "CREAT" || r.type === "MKDIR" || r.type === "SLINK") && full !== undefined)
        this.#paths.set(r.target, full);
      if (r.type === "RENME" && r.sourceParent) {
        const fromFull = where(r.sourceParent, r.sourceName ?? "");
        const from = fromFull === undefined ? undefined : this.#underRoot(fromFull);
        if (rel === undefined && from === undefined) {
          out.push({ record: r, rel: Buffer.alloc(0), isDir: false, ignore: true });
          continue;
        }
        const isDir =
          rel !== undefined &&
          // Beneath the synced root's fd, nothing followed (a missing entry is not a directory).
          (await (await jobRootFor(this.#o.root)).lstat(Buffer.from(rel)).then(
            (s) => s !== undefined && isDirectoryMode(s),
            () => false,
          ));
        const record = { ...r, path: rel ?? "" };
        if (rel === undefined)
          out.push({ record, rel: Buffer.from(from!), isDir: true, gone: true });
        else if (from === undefined)
          out.push({ record, rel: Buffer.from(rel), isDir, reconcile: isDir });
        else out.push({ record, rel: Buffer.from(rel), from: Buffer.from(from), isDir });
        continue;
      }
      if (rel === undefined || rel === "") {
        out.push({ record: r, rel: Buffer.alloc(0), isDir: false, ignore: true });
        continue;
      }
      out.push({
        record: { ...r, path: rel },
        rel: Buffer.from(rel),
        isDir: r.type === "MKDIR" || r.type === "RMDIR",
      });
    }
    return out;
  }

  #underRoot(full: string): string | undefined {
    if (this.#rootRel === "") return full;
    if (full === this.#rootRel) return "";
    return full.startsWith(`${this.#rootRel}/`) ? full.slice(this.#rootRel.length + 1) : undefined;
  }

  /**
   * `lfs fid2path --print-fid <mount> <fid>…` (100 FIDs a call): paths relative to the mount, one
   * `<fid> <path>` line each; FIDs that are gone are left out.
   */
  async #fid2path(fids: string[]): Promise<Map<string, string>> {
    const out = new Map<string, string>();
    const ask: string[] = [];
    for (const fid of fids) {
      if (fid === ROOT_FID) out.set(fid, "");
      else ask.push(fid);
    }
    for (let i = 0; i < ask.length; i += 100) {
      const text = await new Promise<string>((resolve) =>
        execFile(
          this.#o.lfsPath,
          ["fid2path", "--print-fid", this.#o.mount, ...ask.slice(i, i + 100)],
          { maxBuffer: 64 * 1024 * 1024 },
          // Exit 2 when some FID is gone: the others are printed all the same.
          (_err, stdout) => resolve(stdout),
        ),
      );
      for (const line of text.split("\n")) {
        const m = /^(\[[^\]]+\]) (.*)$/.exec(line);
        if (!m) continue;
        let path = m[2]!.startsWith(this.#o.mount) ? m[2]!.slice(this.#o.mount.length) : m[2]!;
        path = path.replace(/^\/+/, "");
        out.set(m[1]!, path);
        this.#paths.set(m[1]!, path);
      }
    }
    return out;
  }

  /** Clears the changelog up to `index`: only ever called for records durably applied. */
  async release(index: bigint): Promise<void> {
    if (index <= this.#cleared) return;
    await new Promise<void>((resolve, reject) =>
      execFile(
        this.#o.lfsPath,
        ["changelog_clear", this.#o.mdt, this.#o.user, index.toString()],
        (err, _o, stderr) =>
          err
            ? reject(
                new FsOperationError(
                  "lfs changelog_clear",
                  this.#o.mdt,
                  errorCode(err),
                  String(stderr).trim(),
                  err,
                ),
              )
            : resolve(),
      ),
    );
    this.#cleared = index;
  }

  directories(): Buffer[] {
    // The changelog names no directories up front; a reconciliation starts at the root.
    return [Buffer.alloc(0)];
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    this.#wake?.();
    await this.#loop;
  }
}
