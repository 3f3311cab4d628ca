/**
 * Time left for a job that moves files: from the share of files done and the share of bytes done
 * together, so neither the small files going first (few bytes, many files) nor the large ones
 * (many bytes, few files) makes it absurd:
 *
 *   done = ½ · filesDone / filesTotal + ½ · bytesDone / bytesTotal
 *   ETA  = elapsed · (1 − done) / done
 *
 * (A file's cost is a fixed part per file plus a part per byte; which one dominated the time so far
 * is unknown, so both count the same.) When one total is 0 the other share alone is used.
 * Undefined until something was done; 0 when all is done. The totals may still grow while the
 * walk runs.
 */
export const etaSeconds = (o: {
  elapsedSeconds: number;
  filesDone: number;
  filesTotal: number;
  bytesDone: number;
  bytesTotal: number;
}): number | undefined => {
  const shares: number[] = [];
  if (o.filesTotal > 0) shares.push(Math.min(1, o.filesDone / o.filesTotal));
  if (o.bytesTotal > 0) shares.push(Math.min(1, o.bytesDone / o.bytesTotal));
  if (shares.length === 0) return undefined;
  const done = shares.reduce((a, b) => a + b, 0) / shares.length;
  if (done >= 1) return 0;
  if (done <= 0 || o.elapsedSeconds <= 0) return undefined;
  return (o.elapsedSeconds * (1 - done)) / done;
};
