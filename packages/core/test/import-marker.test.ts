import test from "ava";
import { importMarkerName, isImportMarkerName } from "../src/import-marker.js";

test("the import's marker names: made and recognised exactly", (t) => {
  const at = Date.UTC(2026, 10, 21, 15, 30, 0, 123);
  t.is(importMarkerName("IN_PROGRESS", at), "IMPORT_IN_PROGRESS.20261121T153000Z");
  for (const state of ["IN_PROGRESS", "FAILED", "CANCELLED"] as const) {
    t.true(isImportMarkerName(importMarkerName(state, at)));
    t.true(isImportMarkerName(Buffer.from(importMarkerName(state, at))));
  }
  for (const other of [
    "IMPORT_FAILED.notes",
    "IMPORT_DONE.20261121T153000Z",
    "IMPORT_FAILED.20261121T153000Z.bak",
    "x/IMPORT_FAILED.20261121T153000Z",
    "import_failed.20261121T153000Z",
    "IMPORT_FAILED.2026112T153000Z",
  ])
    t.false(isImportMarkerName(other), other);
});
