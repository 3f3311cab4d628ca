/**
 * The marker file an import keeps at its target root, as AMLFS shows a running import:
 * `IMPORT_IN_PROGRESS.<start>` while it runs, renamed `IMPORT_FAILED.<start>` or
 * `IMPORT_CANCELLED.<start>` when it ends otherwise than well (removed when it succeeds). The
 * start is UTC to the second, e.g. `20261121T153000Z`. Verify leaves exactly these names at the
 * root of the tree out of its comparison: they are the job's own files, not the user's data.
 */
export const IMPORT_MARKER_STATES = ["IN_PROGRESS", "FAILED", "CANCELLED"] as const;
export type ImportMarkerState = (typeof IMPORT_MARKER_STATES)[number];

export const importMarkerName = (state: ImportMarkerState, startedAtMs: number): string =>
  `IMPORT_${state}.${new Date(startedAtMs)
    .toISOString()
    .replace(/[-:]/g, "")
    .replace(/\.\d+Z$/, "Z")}`;

const MARKER = new RegExp(`^IMPORT_(?:${IMPORT_MARKER_STATES.join("|")})\\.\\d{8}T\\d{6}Z$`);

/** True for a name (one path segment) an import's marker file has. */
export const isImportMarkerName = (name: Buffer | string): boolean =>
  // Marker names are ASCII and short; anything longer or with a '/' is not one.
  name.length <= 64 && MARKER.test(typeof name === "string" ? name : name.toString("latin1"));
