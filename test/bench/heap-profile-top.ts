/**
 * Prints the allocation sites of a V8 sampling heap profile (`.heapprofile`, e.g. the
 * control-plane coordinator's CP_HEAP_PROFILE) by bytes, self and with their callers' stack:
 *
 *   node test/dist/bench/heap-profile-top.js FILE [N]
 */
import { readFileSync } from "node:fs";

interface Frame {
  functionName: string;
  url: string;
  lineNumber: number;
}
interface Node {
  callFrame: Frame;
  selfSize: number;
  children: Node[];
}

const file = process.argv[2];
if (file === undefined) throw new Error("usage: heap-profile-top.js FILE [N]");
const top = Number(process.argv[3] ?? "25");
const { head } = JSON.parse(readFileSync(file, "utf8")) as { head: Node };
const where = (f: Frame) =>
  `${f.functionName || "(anonymous)"} ${f.url.split("/").slice(-2).join("/")}:${f.lineNumber + 1}`;
const sites: Array<{ bytes: number; stack: string[] }> = [];
let total = 0;
const walk = (n: Node, stack: string[]): void => {
  const here = [...stack, where(n.callFrame)];
  if (n.selfSize > 0) {
    sites.push({ bytes: n.selfSize, stack: here });
    total += n.selfSize;
  }
  for (const c of n.children) walk(c, here);
};
walk(head, []);
sites.sort((a, b) => b.bytes - a.bytes);
process.stdout.write(`${(total / 2 ** 20).toFixed(1)} MiB sampled\n`);
for (const s of sites.slice(0, top))
  process.stdout.write(
    `${(s.bytes / 2 ** 20).toFixed(2).padStart(7)} MiB  ${s.stack.slice(-6).reverse().join(" < ")}\n`,
  );
