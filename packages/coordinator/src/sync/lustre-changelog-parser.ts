import type { ChangeRecord, ChangeType } from "@hsmfleet/protocol";
import { CHANGE_TYPES } from "@hsmfleet/protocol";

/** Flags of UNLNK records (lustre_user.h). */
export const CLF_UNLINK_LAST = 0x0001;
export const CLF_UNLINK_HSM_EXISTS = 0x0002;
/** The flag bits `lfs changelog` prints (CLF_FLAGMASK). */
const CLF_FLAGMASK = 0x0fff;

// DFID is "[%#llx:0x%x:0x%x]": a zero sequence prints as "0" (no 0x), e.g. t=[0:0x0:0x0].
const FID = String.raw`\[(?:0x[0-9a-fA-F]+|0):0x[0-9a-fA-F]+:0x[0-9a-fA-F]+\]`;
const HEAD = new RegExp(
  String.raw`^(\d+) (\d{2})([A-Z]+)\s+(\d{2}):(\d{2}):(\d{2})\.(\d{1,9}) (\d{4})\.(\d{2})\.(\d{2}) 0x([0-9a-fA-F]+) t=(${FID})`,
);
const RENAME = new RegExp(String.raw`^ s=(${FID}) sp=(${FID}) (.*?)(?= p=${FID} |$)`, "s");
const PARENT = new RegExp(String.raw`^ p=(${FID}) (.*)$`, "s");

/** One line of `lfs changelog` that is not a record (or a record of an unknown type). */
export class ChangelogParseError extends Error {
  readonly line: string;
  constructor(line: string, why: string) {
    super(`lfs changelog: ${why}: ${JSON.stringify(line.slice(0, 200))}`);
    this.name = "ChangelogParseError";
    this.line = line;
  }
}

/**
 * Parses one line as `lfs changelog` prints it (lustre/utils/lfs.c):
 *
 *   <index> <NN><TYPE> <HH:MM:SS.nnnnnnnnn> <YYYY.MM.DD> 0x<flags> t=<fid>
 *     [ j=<jobid>] [ ef=0x<extra> [ u=<uid>:<gid>] [ nid=<nid>] [ m=<mode>] [ x=<xattr>]]
 *     [ s=<fid> sp=<fid> <old name>] [ p=<fid> <name>]
 *
 * e.g. `1 02MKDIR 15:15:21.977666834 2018.01.09 0x0 t=[0x200000402:0x1:0x0] j=mkdir.500 ef=0xf
 * u=500:500 nid=10.128.11.159@tcp p=[0x200000007:0x1:0x0] pics`. Names are the rest of the line
 * after `p=<fid> ` (they may hold spaces). The time is the MDS's local time.
 */
export const parseChangelogLine = (line: string, source: string): ChangeRecord => {
  const head = HEAD.exec(line);
  if (!head) throw new ChangelogParseError(line, "not a changelog record");
  const [, index, , typeName, hh, mi, ss, ns, yyyy, mm, dd, flagsHex, target] = head;
  if (!(CHANGE_TYPES as readonly string[]).includes(typeName!))
    throw new ChangelogParseError(line, `unknown record type ${typeName}`);
  const type = typeName as ChangeType;
  const flags = parseInt(flagsHex!, 16) & CLF_FLAGMASK;
  const time = new Date(
    Number(yyyy),
    Number(mm) - 1,
    Number(dd),
    Number(hh),
    Number(mi),
    Number(ss),
    Math.floor(Number(ns!.padEnd(9, "0")) / 1e6),
  ).getTime();
  let rest = line.slice(head[0].length);
  // Optional key=value fields up to the rename or parent part.
  for (;;) {
    const m = /^ (j|ef|u|nid|m|x)=(\S*)/.exec(rest);
    if (!m) break;
    rest = rest.slice(m[0].length);
  }
  let sourceParent: string | undefined;
  let sourceName: string | undefined;
  let sourceTarget: string | undefined;
  const rename = RENAME.exec(rest);
  if (rename) {
    sourceTarget = rename[1];
    sourceParent = rename[2];
    sourceName = rename[3];
    rest = rest.slice(rename[0].length);
  }
  let parent = "";
  let name = "";
  const p = PARENT.exec(rest);
  if (p) {
    parent = p[1]!;
    name = p[2]!;
  } else if (rest.trim() !== "")
    throw new ChangelogParseError(line, "unexpected text after the fields");
  return {
    source,
    index: index!,
    type,
    time,
    flags,
    // A rename's t= is the entry it replaced (0 when none); the renamed entry is s=.
    target: type === "RENME" && sourceTarget !== undefined ? sourceTarget : target!,
    parent,
    name,
    ...(sourceParent !== undefined ? { sourceParent, sourceName: sourceName ?? "" } : {}),
    ...(type === "UNLNK"
      ? {
          hsmExists: (flags & CLF_UNLINK_HSM_EXISTS) !== 0,
          lastLink: (flags & CLF_UNLINK_LAST) !== 0,
        }
      : {}),
  };
};
