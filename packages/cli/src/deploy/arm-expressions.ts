/**
 * Building ARM template expressions from TypeScript: literals, objects and arrays whose leaves are
 * expressions (`createObject`, `createArray`), and keeping literal strings that start with "[" from
 * being read as expressions.
 */

/** An ARM expression fragment (no surrounding brackets). */
export type Expr = { expr: string };

export const e = (expr: string): Expr => ({ expr });

/** A string literal inside an expression ('' escapes a quote). */
export const lit = (text: string): string => `'${text.replace(/'/g, "''")}'`;

export type ExprValue =
  string | number | boolean | Expr | ExprValue[] | { [key: string]: ExprValue };

/** The expression for a value whose leaves may be expressions. */
export const toExpr = (value: ExprValue): string => {
  if (typeof value === "string") return lit(value);
  if (typeof value === "number") return String(value);
  if (typeof value === "boolean") return value ? "true()" : "false()";
  if (Array.isArray(value)) return `createArray(${value.map(toExpr).join(", ")})`;
  if ("expr" in value && typeof value.expr === "string") return value.expr;
  return `createObject(${Object.entries(value as Record<string, ExprValue>)
    .map(([k, v]) => `${lit(k)}, ${toExpr(v)}`)
    .join(", ")})`;
};

/** A template property value: the expression in brackets. */
export const bracket = (expr: string): string => `[${expr}]`;

/**
 * A JSON value put into a template as data (e.g. a variable): every string starting with "[" gets
 * the "[[" escape, so ARM keeps it literal.
 */
export const armLiteral = <T>(value: T): T => {
  if (typeof value === "string") return (value.startsWith("[") ? `[${value}` : value) as T;
  if (Array.isArray(value)) return value.map(armLiteral) as T;
  if (value !== null && typeof value === "object")
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, armLiteral(v)])) as T;
  return value;
};

/** format() of a text with {0}, {1}… standing for the given expressions. */
export const format = (text: string, ...args: string[]): Expr =>
  e(`format(${[lit(text), ...args].join(", ")})`);
