/**
 * What the import walk held of one listing level's subdirectories (tests, benchmarks): the most
 * subdirectory names one level kept at once. A level of millions of subdirectories must not be
 * held whole (issue 22: huge directories, the import side).
 */
export const importLevelStats = {
  peakHeldDirectories: 0,
  levels: 0,
  reset(): void {
    this.peakHeldDirectories = 0;
    this.levels = 0;
  },
  /** Notes that `held` subdirectory names are held now. */
  held(held: number): void {
    if (held > this.peakHeldDirectories) this.peakHeldDirectories = held;
  },
};
