/**
 * Where `hsmfleet hsm …` gets its paths: operands, `--from FILE` / `--from -` (stdin) lists with
 * NUL or newline separators (streamed: millions of paths never sit in memory at once), and a walk
 * of each directory operand. Paths stay raw bytes throughout.
 */
import { createReadStream } from "node:fs";
import { lstat } from "node:fs/promises";
import type { Readable } from "node:stream";

import { EntryType, FsOperationError, displayPath, errorCode, errorMessage } from "@hsmfleet/core";
import { openDir } from "@hsmfleet/fs";

/** "auto": NUL-separated if the first chunk holds a NUL byte, else newline-separated. */
export type ListSeparator = "auto" | "nul" | "newline";

/** Lines of a path list; empty entries are skipped; "\r\n" is taken as "\n" in newline mode. */
export async function* readPathList(
  input: Readable,
  separator: ListSeparator = "auto",
): AsyncGenerator<Buffer> {
  let sep: number | undefined =
    separator === "nul" ? 0 : separator === "newline" ? 0x0a : undefined;
  let rest = Buffer.alloc(0);
  for await (const chunk of input as AsyncIterable<Buffer>) {
    sep ??= chunk.includes(0) ? 0 : 0x0a;
    let buf = rest.length > 0 ? Buffer.concat([rest, chunk]) : chunk;
    let start = 0;
    for (let i = buf.indexOf(sep); i !== -1; i = buf.indexOf(sep, start)) {
      const item = trimCr(buf.subarray(start, i), sep);
      if (item.length > 0) yield Buffer.from(item);
      start = i + 1;
    }
    buf = buf.subarray(start);
    rest = Buffer.from(buf);
  }
  const last = trimCr(rest, sep ?? 0x0a);
  if (last.length > 0) yield last;
}

const trimCr = (item: Buffer, sep: number): Buffer =>
  sep === 0x0a && item.length > 0 && item[item.length - 1] === 0x0d ? item.subarray(0, -1) : item;

export const openPathList = (from: string): Readable =>
  from === "-" ? process.stdin : createReadStream(from);

/** Regular files under `dir` (depth first, symlinks not followed), as absolute path bytes. */
export async function* walkFiles(dir: Buffer): AsyncGenerator<Buffer> {
  const stack: Buffer[] = [dir];
  for (let current = stack.pop(); current !== undefined; current = stack.pop()) {
    const reader = await openDir(current);
    try {
      for (let batch = await reader.read(); batch !== null; batch = await reader.read()) {
        for (const e of batch) {
          const path = Buffer.concat([current, Buffer.from("/"), e.name]);
          if (e.type === EntryType.Directory) stack.push(path);
          else if (e.type === EntryType.File) yield path;
        }
      }
    } finally {
      await reader.close();
    }
  }
}

/** Each operand as is, or the files under it when it is a directory and `recursive` is set. */
export async function* expandOperands(
  paths: AsyncIterable<Buffer> | Iterable<Buffer>,
  recursive: boolean,
): AsyncGenerator<Buffer> {
  for await (const path of paths) {
    if (!recursive) {
      yield path;
      continue;
    }
    let isDir: boolean;
    try {
      isDir = (await lstat(path)).isDirectory();
    } catch (err) {
      throw new FsOperationError(
        "lstat",
        displayPath(path),
        errorCode(err),
        errorMessage(err),
        err,
      );
    }
    if (isDir)
      yield* walkFiles(
        path.length > 1 && path[path.length - 1] === 0x2f ? path.subarray(0, -1) : path,
      );
    else yield path;
  }
}
