import test from "ava";
import { runCli } from "./helpers.js";

const help = async (args: string[]): Promise<string> => {
  const run = await runCli([...args, "--help"]);
  if (run.code !== 0) throw new Error(`${args.join(" ")} --help: exit ${run.code}: ${run.stderr}`);
  // commander wraps long descriptions: join the lines so a default is one phrase.
  return run.stdout.replace(/\s*\n\s+/g, " ");
};

test("--help gives size and rate defaults in human units, never a raw byte count", async (t) => {
  const expected: Array<[string[], RegExp[]]> = [
    [
      ["export"],
      [/--block-size <size>.*\(default: 8MiB\)/, /--chunk-size <size>.*\(default: 256MiB\)/],
    ],
    [["import"], [/--chunk-size <size>.*\(default: 256MiB\)/]],
    [["worker"], [/--memory-budget <size>.*\(default: 512MiB\)/]],
    [["dashboard"], [/--ceiling <rate>.*\(default: 7\.5GiB\/s\)/]],
    [["plan"], [/--request-size <size>.*\(default: 8MiB\)/]],
  ];
  for (const [args, patterns] of expected) {
    const text = await help(args);
    for (const p of patterns) t.regex(text, p, args.join(" "));
  }
  for (const args of [
    ["scan"],
    ["export"],
    ["import"],
    ["restore"],
    ["verify"],
    ["worker"],
    ["dashboard"],
    ["plan"],
    ["hsm", "archive"],
    ["server"],
  ]) {
    const text = await help(args);
    t.notRegex(
      text,
      /<(?:size|rate)>(?:(?!\s--).)*default: \d{4,}\)/,
      `${args.join(" ")}: a raw byte count as a default`,
    );
  }
});
