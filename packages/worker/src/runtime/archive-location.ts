/** Where a file's data lives in Blob, recorded on each imported file for `hsmfleet restore` (which reads it back). */
export const archiveLocationXattr = (hsmXattr: string): string =>
  `${hsmXattr.split(".")[0] || "trusted"}.hsmfleet.archive`;

export const formatArchiveLocation = (container: string, blobName: string): Buffer =>
  Buffer.from(`${container}/${blobName}`, "utf8");

export const parseArchiveLocation = (
  value: Buffer,
): { container: string; blobName: string } | undefined => {
  const text = value.toString("utf8");
  const slash = text.indexOf("/");
  if (slash <= 0 || slash === text.length - 1) return undefined;
  return { container: text.slice(0, slash), blobName: text.slice(slash + 1) };
};
