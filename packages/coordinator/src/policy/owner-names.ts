import { readFileSync } from "node:fs";

/** User and group names of this machine (/etc/passwd, /etc/group), read once. */
let cache: { users: Map<string, number>; groups: Map<string, number> } | undefined;

const readIds = (file: string): Map<string, number> => {
  const out = new Map<string, number>();
  let text = "";
  try {
    text = readFileSync(file, "utf8");
  } catch {
    return out;
  }
  for (const line of text.split("\n")) {
    const [name, , id] = line.split(":");
    if (name && id && /^\d+$/.test(id)) out.set(name, Number(id));
  }
  return out;
};

const names = () => (cache ??= { users: readIds("/etc/passwd"), groups: readIds("/etc/group") });

export const resolveUser = (name: string): number | undefined => names().users.get(name);
export const resolveGroup = (name: string): number | undefined => names().groups.get(name);

const reverse = (m: Map<string, number>, id: string): string => {
  for (const [name, n] of m) if (String(n) === id) return `${name} (${id})`;
  return id;
};
/** `alice (1001)` when this machine knows the id, else the id. */
export const userLabel = (uid: string): string => reverse(names().users, uid);
export const groupLabel = (gid: string): string => reverse(names().groups, gid);
