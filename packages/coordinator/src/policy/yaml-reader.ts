import { LineCounter, isMap, isScalar, isSeq, parseDocument } from "yaml";
import type { Node as YamlNode } from "yaml";

/** One problem in a policy file: where (line, key path) and what. */
export interface PolicyProblem {
  line: number;
  column: number;
  key: string;
  message: string;
}

/** A policy file that does not validate: every problem, each naming its line and key. */
export class PolicyFileError extends Error {
  readonly file: string;
  readonly problems: PolicyProblem[];
  constructor(file: string, problems: PolicyProblem[]) {
    super(
      `${file}: ${problems.length} problem${problems.length === 1 ? "" : "s"}:\n` +
        problems.map((p) => `  ${file}:${p.line}:${p.column}: ${p.key}: ${p.message}`).join("\n"),
    );
    this.name = "PolicyFileError";
    this.file = file;
    this.problems = problems;
  }
}

/** A node of the document with the key path that leads to it (for messages). */
export interface At {
  node: YamlNode | null | undefined;
  key: string;
}

/**
 * Reads a YAML document node by node, remembering for each value its line and key path, and
 * collecting problems instead of stopping at the first.
 */
export class YamlReader {
  readonly problems: PolicyProblem[] = [];
  readonly root: At;
  readonly #lines: LineCounter;

  constructor(text: string) {
    this.#lines = new LineCounter();
    const doc = parseDocument(text, { lineCounter: this.#lines, prettyErrors: false });
    for (const e of doc.errors) {
      const pos = this.#lines.linePos(e.pos[0]);
      this.problems.push({ line: pos.line, column: pos.col, key: "(syntax)", message: e.message });
    }
    this.root = { node: doc.contents, key: "" };
  }

  problem(at: At, message: string): undefined {
    const offset = at.node?.range?.[0] ?? 0;
    const pos = this.#lines.linePos(offset);
    this.problems.push({ line: pos.line, column: pos.col, key: at.key || "(top)", message });
    return undefined;
  }

  /** The pairs of a mapping, refusing keys not in `known` (a typo must not pass silently). */
  entries(at: At, known?: readonly string[]): Array<[string, At]> {
    if (at.node === null || at.node === undefined) return [];
    if (!isMap(at.node)) {
      this.problem(at, "must be a mapping (key: value)");
      return [];
    }
    const out: Array<[string, At]> = [];
    for (const pair of at.node.items) {
      const keyNode = pair.key as YamlNode | null;
      const name = isScalar(keyNode) ? String(keyNode.value) : undefined;
      const path = at.key ? `${at.key}.${name ?? "?"}` : (name ?? "?");
      if (name === undefined) {
        this.problem({ node: keyNode, key: path }, "keys must be plain names");
        continue;
      }
      if (known && !known.includes(name)) {
        this.problem(
          { node: keyNode, key: path },
          `unknown key; expected one of ${known.join(", ")}`,
        );
        continue;
      }
      out.push([name, { node: pair.value as YamlNode | null, key: path }]);
    }
    return out;
  }

  field(at: At, name: string): At {
    const e = this.entries(at).find(([k]) => k === name);
    return e ? e[1] : { node: undefined, key: at.key ? `${at.key}.${name}` : name };
  }

  items(at: At): At[] {
    if (at.node === null || at.node === undefined) return [];
    if (!isSeq(at.node)) {
      this.problem(at, "must be a list");
      return [];
    }
    return at.node.items.map((n, i) => ({ node: n as YamlNode, key: `${at.key}[${i}]` }));
  }

  /** A scalar's value (string, number, boolean), or a problem. */
  scalar(at: At): unknown {
    if (at.node === null || at.node === undefined) return undefined;
    if (!isScalar(at.node)) return this.problem(at, "must be a single value");
    return at.node.value;
  }

  string(at: At): string | undefined {
    const v = this.scalar(at);
    if (v === undefined || v === null) return undefined;
    if (typeof v !== "string")
      return this.problem(at, `must be a string, not ${JSON.stringify(v)}`);
    return v;
  }

  boolean(at: At): boolean | undefined {
    const v = this.scalar(at);
    if (v === undefined || v === null) return undefined;
    if (typeof v !== "boolean") return this.problem(at, "must be true or false");
    return v;
  }

  /** A value converted by `parse`, or a problem naming what was expected. */
  parsed<T>(at: At, parse: (v: unknown) => T | undefined, expected: string): T | undefined {
    const v = this.scalar(at);
    if (v === undefined || v === null) return undefined;
    const r = parse(v);
    if (r === undefined) return this.problem(at, `${JSON.stringify(v)} is not ${expected}`);
    return r;
  }

  /** A string or a list of strings. */
  strings(at: At): string[] | undefined {
    if (at.node === null || at.node === undefined) return undefined;
    if (isSeq(at.node)) {
      const out: string[] = [];
      for (const item of this.items(at)) {
        const v = this.scalar(item);
        if (typeof v === "string" || typeof v === "number") out.push(String(v));
        else this.problem(item, "must be a string");
      }
      return out;
    }
    const v = this.scalar(at);
    if (v === undefined || v === null) return undefined;
    if (typeof v === "string" || typeof v === "number" || typeof v === "boolean")
      return [String(v)];
    return this.problem(at, "must be a string or a list of strings");
  }

  present(at: At): boolean {
    return at.node !== undefined && at.node !== null;
  }
}
