import { displayPath, entryTypeName, hsmFlagWords } from "@hsmfleet/core";
import type { FileEntry } from "@hsmfleet/core";
import type { ItemError } from "@hsmfleet/protocol";

/** Paths in JSON: a printable string; `pathBase64` added when the bytes are not plain UTF-8. */
const pathFields = (path: Buffer): string => {
  const shown = displayPath(path);
  const plain = Buffer.from(shown, "utf8").equals(path);
  return plain
    ? `"path":${JSON.stringify(shown)}`
    : `"path":${JSON.stringify(shown)},"pathBase64":"${path.toString("base64")}"`;
};

/** One --list line: path, type, size, mtime (seconds.nanoseconds, like find's %T@), mode, uid, gid, HSM flags. */
export const entryToNdjson = (e: FileEntry): string => {
  const mtime = `${e.mtimeSec}.${String(e.mtimeNsec).padStart(9, "0")}`;
  const mode = (e.mode & 0o7777).toString(8).padStart(4, "0");
  const hsm = e.hsm
    ? `{"flags":"0x${e.hsm.flags.toString(16).padStart(8, "0")}","states":${JSON.stringify(hsmFlagWords(e.hsm.flags))},"archiveId":${e.hsm.archiveId}}`
    : "null";
  return `{${pathFields(e.path)},"type":"${entryTypeName(e.type)}","size":${e.size},"mtime":${mtime},"mode":"${mode}","uid":${e.uid},"gid":${e.gid},"ino":${e.ino},"hsm":${hsm}}`;
};

export const errorToNdjson = (e: ItemError): string =>
  `{${pathFields(e.path)},"operation":${JSON.stringify(e.operation)},"code":${JSON.stringify(e.code)},"message":${JSON.stringify(e.message)}}`;

/**
 * One conflicts.ndjson line. Conflicts travel as ItemErrors: operation = what was there
 * ("file (0x9) exists archived"), code = the resolution ("failed", "skipped",
 * "attributes-updated", "reimported", "released"), message = details.
 */
export const conflictToNdjson = (c: ItemError): string =>
  `{${pathFields(c.path)},"existing":${JSON.stringify(c.operation)},"resolution":${JSON.stringify(c.code)},"detail":${JSON.stringify(c.message)}}`;

export const errorToJson = (
  e: ItemError,
): { path: string; operation: string; code: string; message: string } => ({
  path: displayPath(e.path) || ".",
  operation: e.operation,
  code: e.code,
  message: e.message,
});

export { formatErrorLine } from "@hsmfleet/core";
