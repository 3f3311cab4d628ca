import { constants } from "node:os";
import { getSystemErrorMap, getSystemErrorName } from "node:util";

import { FsOperationError, displayPath } from "@hsmfleet/core";

import { isNativeErrnoError } from "./native.js";

const names = new Map<number, string>();

let byNumber: Map<number, string> | undefined;
const osErrnoNames = (): Map<number, string> => {
  if (!byNumber) {
    byNumber = new Map();
    for (const [name, value] of Object.entries(constants.errno)) {
      if (!byNumber.has(value)) byNumber.set(value, name);
    }
  }
  return byNumber;
};

/** Code name of a positive errno (ENOENT, EACCES, ENOTSUP, …), as Node's own fs errors name it. */
export const errnoName = (errno: number): string => {
  let name = names.get(errno);
  if (name === undefined) {
    try {
      name = getSystemErrorName(-errno);
    } catch {
      name = `E${errno}`;
    }
    // libuv knows only part of the errno space (no EBADMSG, …): fall back to the OS table.
    if (name.startsWith("Unknown system error"))
      name = osErrnoNames().get(errno) ?? `ERRNO_${errno}`;
    names.set(errno, name);
  }
  return name;
};

let messages: Map<number, [string, string]> | undefined;

/** The C library's text for a positive errno ("no such file or directory"), as strerror gives it. */
export const errnoMessage = (errno: number): string => {
  messages ??= getSystemErrorMap();
  return messages.get(-errno)?.[1] ?? `error ${errno}`;
};

/** Native rejection -> FsOperationError(operation, display path, code); anything else as is. */
export const toFsError = (err: unknown, operation: string, path: Buffer): unknown =>
  isNativeErrnoError(err)
    ? new FsOperationError(operation, displayPath(path), errnoName(err.errno), err.message, err)
    : err;

/** Paths are handed to the kernel as C strings: a NUL byte would silently truncate them. */
export const checkPath = (path: Buffer, operation: string): void => {
  if (!Buffer.isBuffer(path)) throw new TypeError(`${operation}: path must be a Buffer`);
  if (path.includes(0)) {
    throw new FsOperationError(operation, displayPath(path), "EINVAL", "path contains a NUL byte");
  }
};

export const checkXattrName = (name: string, operation: string, path: Buffer): void => {
  if (typeof name !== "string" || name.length === 0) {
    throw new TypeError(`${operation}: xattr name must be a non-empty string`);
  }
  if (name.includes("\0")) {
    throw new FsOperationError(
      operation,
      displayPath(path),
      "EINVAL",
      "xattr name contains a NUL byte",
    );
  }
};
