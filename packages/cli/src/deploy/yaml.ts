/**
 * A small YAML writer for the files `hsmfleet deploy` renders (cloud-init, Prometheus): objects,
 * arrays, strings, numbers and booleans. Multi-line strings become literal blocks (`|`), every
 * other string is double-quoted JSON (a subset of YAML), so no value is ever read back as another
 * type or changed by YAML's implicit typing.
 */
export type YamlValue = string | number | boolean | YamlValue[] | { [key: string]: YamlValue };

const scalar = (value: string | number | boolean): string =>
  typeof value === "string" ? JSON.stringify(value) : String(value);

const key = (name: string): string =>
  /^[A-Za-z_][A-Za-z0-9_.-]*$/.test(name) ? name : JSON.stringify(name);

const isBlock = (value: YamlValue): value is string =>
  typeof value === "string" && value.includes("\n") && !/[\t\r]/.test(value);

const block = (text: string, indent: string): string => {
  const chomp = text.endsWith("\n") ? (text.endsWith("\n\n") ? "+" : "") : "-";
  const body = text.endsWith("\n") ? text.slice(0, -1) : text;
  // A first line starting with a space needs an explicit indentation indicator.
  const indicator = body.startsWith(" ") ? "2" : "";
  return ` |${indicator}${chomp}\n${body
    .split("\n")
    .map((line) => (line === "" ? "" : `${indent}  ${line}`))
    .join("\n")}`;
};

const emit = (value: YamlValue, indent: string): string => {
  if (Array.isArray(value)) {
    if (value.length === 0) return " []";
    return value
      .map((item) => {
        if (typeof item === "object" && !Array.isArray(item) && Object.keys(item).length > 0) {
          const inner = emit(item, `${indent}  `).replace(/^\n\s*/, "");
          return `\n${indent}- ${inner}`;
        }
        return `\n${indent}-${isBlock(item) ? block(item, indent) : emit(item, `${indent}  `)}`;
      })
      .join("");
  }
  if (typeof value === "object") {
    const entries = Object.entries(value);
    if (entries.length === 0) return " {}";
    return entries
      .map(
        ([k, v]) =>
          `\n${indent}${key(k)}:${isBlock(v) ? block(v, indent) : emit(v, `${indent}  `)}`,
      )
      .join("");
  }
  return ` ${scalar(value)}`;
};

/** The YAML document for `value` (an object at the top), ending with a newline. */
export const toYaml = (value: { [key: string]: YamlValue }, header = ""): string =>
  `${header}${emit(value, "").replace(/^\n/, "")}\n`;
