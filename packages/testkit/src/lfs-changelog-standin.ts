// STAND-IN for Lustre's `lfs`, for tests only: no Lustre client (and no MDT) runs on this machine.
// It implements the subcommands `hsmfleet sync --source lustre` calls, with lfs's output formats:
//   lfs changelog <mdt> [startrec]           prints the recorded records from startrec on
//   lfs changelog_clear <mdt> <user> <endrec> logs the clear (one line) and drops records <= endrec
//   lfs fid2path [--print-fid] <mount> <fid>… prints [<fid> ]<mount>/<path> a FID (exit 2 if one is gone)
// The records are real-format text recorded in $LFS_STANDIN_CHANGELOG (see LustreRecorder);
// FIDs and their current paths are JSON lines in $LFS_STANDIN_FIDS (later lines win, path null:
// gone); clears are appended to $LFS_STANDIN_CLEARS as "<mdt> <user> <endrec>".
import { appendFileSync, existsSync, readFileSync, writeFileSync } from "node:fs";

const argv = process.argv.slice(2);
const command = argv.shift();
const env = (name: string): string => {
  const v = process.env[name];
  if (!v) {
    process.stderr.write(`lfs stand-in: ${name} is not set\n`);
    process.exit(22);
  }
  return v;
};
const clearedFile = `${env("LFS_STANDIN_CHANGELOG")}.cleared`;
const cleared = (): bigint =>
  existsSync(clearedFile) ? BigInt(readFileSync(clearedFile, "utf8").trim() || "0") : 0n;

switch (command) {
  case "changelog": {
    const [mdt, start] = argv;
    if (!mdt) {
      process.stderr.write("usage: lfs changelog <mdtname> [startrec [endrec]]\n");
      process.exit(22);
    }
    const from = BigInt(start ?? "0");
    const floor = cleared();
    const text = existsSync(env("LFS_STANDIN_CHANGELOG"))
      ? readFileSync(env("LFS_STANDIN_CHANGELOG"), "utf8")
      : "";
    for (const line of text.split("\n")) {
      if (line === "") continue;
      const index = BigInt(line.slice(0, line.indexOf(" ")));
      if (index >= from && index > floor) process.stdout.write(`${line}\n`);
    }
    break;
  }
  case "changelog_clear": {
    const [mdt, user, end] = argv;
    if (!mdt || !user || !end) {
      process.stderr.write("usage: lfs changelog_clear <mdtname> <id> <endrec>\n");
      process.exit(22);
    }
    appendFileSync(env("LFS_STANDIN_CLEARS"), `${mdt} ${user} ${end}\n`);
    if (BigInt(end) > cleared()) writeFileSync(clearedFile, end);
    break;
  }
  case "fid2path": {
    const printFid = argv[0] === "--print-fid" || argv[0] === "-f";
    if (printFid) argv.shift();
    const [mount, ...fids] = argv;
    const map = new Map<string, string | null>();
    for (const line of readFileSync(env("LFS_STANDIN_FIDS"), "utf8").split("\n")) {
      if (line === "") continue;
      const { fid, path } = JSON.parse(line) as { fid: string; path: string | null };
      map.set(fid, path);
    }
    let code = 0;
    for (const fid of fids) {
      const path = map.get(fid);
      if (path === undefined || path === null) {
        process.stderr.write(`lfs fid2path: cannot find '${fid}': No such file or directory\n`);
        code = 2;
        continue;
      }
      process.stdout.write(
        `${printFid ? `${fid} ` : ""}${mount}${path === "" ? "" : `/${path}`}\n`,
      );
    }
    process.exit(code);
    break;
  }
  default:
    process.stderr.write(`lfs stand-in: ${command}: not implemented\n`);
    process.exit(22);
}
