/** One column of a text table: its heading, and whether values end under it (numbers). */
export interface Column {
  heading: string;
  align?: "left" | "right";
}

/**
 * A plain-text table: a heading line, then one line per row, each column as wide as its widest
 * cell, two spaces between columns; the last left-aligned column is not padded (paths run on).
 */
export const formatTable = (columns: readonly Column[], rows: readonly string[][]): string => {
  const widths = columns.map((c, i) =>
    Math.max(c.heading.length, ...rows.map((r) => (r[i] ?? "").length)),
  );
  const line = (cells: readonly string[]) =>
    columns
      .map((c, i) => {
        const cell = cells[i] ?? "";
        if (c.align === "right") return cell.padStart(widths[i]!);
        return i === columns.length - 1 ? cell : cell.padEnd(widths[i]!);
      })
      .join("  ");
  return [line(columns.map((c) => c.heading)), ...rows.map(line)].join("\n");
};
