/**
 * Path globs of policy classes, matched against the path relative to the policy root
 * ('/'-separated, no leading '/'): `*` any run of characters within one segment, `?` one
 * character, `[abc]` / `[!a-z]` a character class, `**` any number of whole segments (`a/**`
 * matches `a` and everything below; a leading `**` segment matches `x` at any depth). A glob without '/' matches
 * the last segment (the file name) at any depth, as Robinhood's `name` does.
 */
export class GlobSyntaxError extends Error {}

const escapeRe = (c: string): string => c.replace(/[.+^${}()|\\/]/g, "\\$&");

const segmentToRe = (seg: string, glob: string): string => {
  let out = "";
  for (let i = 0; i < seg.length; i++) {
    const c = seg[i]!;
    if (c === "*") out += "[^/]*";
    else if (c === "?") out += "[^/]";
    else if (c === "[") {
      const end = seg.indexOf("]", i + 2);
      if (end < 0) throw new GlobSyntaxError(`glob ${JSON.stringify(glob)}: unclosed '['`);
      let body = seg.slice(i + 1, end);
      const negate = body.startsWith("!") || body.startsWith("^");
      if (negate) body = body.slice(1);
      out += `[${negate ? "^" : ""}${body.replace(/[\\\]]/g, "\\$&")}]`;
      i = end;
    } else out += escapeRe(c);
  }
  return out;
};

/** Compiles a glob to an anchored regular expression over relative paths. */
export const compileGlob = (glob: string): RegExp => {
  if (glob === "") throw new GlobSyntaxError("empty glob");
  const trimmed = glob.replace(/^\/+/, "");
  if (!trimmed.includes("/")) return new RegExp(`(^|/)${segmentToRe(trimmed, glob)}$`);
  const segs = trimmed.split("/").filter((s) => s !== "");
  let re = "^";
  segs.forEach((seg, i) => {
    const last = i === segs.length - 1;
    if (seg === "**") re += last ? "(?:.*)" : "(?:[^/]+/)*";
    else re += segmentToRe(seg, glob) + (last ? "" : "/");
  });
  // `dir/**` also matches `dir` itself.
  re = re.replace(/\/\(\?:\.\*\)$/, "(?:/.*)?");
  return new RegExp(`${re}$`);
};
