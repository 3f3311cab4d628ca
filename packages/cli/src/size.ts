import { parseSizeText } from "@hsmfleet/core";
import { InvalidArgumentError, Option } from "commander";

/** "8MiB", "256M", "1.5GiB", "4096" → bytes (K/M/G alone are binary, like lfs and azcopy). */
export const parseSize = (text: string): number => {
  const bytes = parseSizeText(text);
  if (bytes === undefined)
    throw new InvalidArgumentError(
      `not a size: ${JSON.stringify(text)} (examples: 8MiB, 256M, 4096)`,
    );
  return bytes;
};

const BINARY_UNITS: ReadonlyArray<readonly [string, number]> = [
  ["TiB", 1024 ** 4],
  ["GiB", 1024 ** 3],
  ["MiB", 1024 ** 2],
  ["KiB", 1024],
];

/**
 * Bytes as parseSize reads them back: "8MiB", "256MiB", "7.5GiB" (the largest binary unit that
 * gives at most two decimals exactly), else the plain number.
 */
export const formatSize = (bytes: number): string => {
  for (const [unit, scale] of BINARY_UNITS) {
    if (bytes < scale) continue;
    const value = bytes / scale;
    if (Math.round(value * 100) / 100 === value) return `${value}${unit}`;
  }
  return String(bytes);
};

/** A `<size>` option: parsed by parseSize, its default shown in help as formatSize gives it. */
export const sizeOption = (flags: string, description: string, defaultBytes: number): Option =>
  new Option(flags, description)
    .argParser(parseSize)
    .default(defaultBytes, formatSize(defaultBytes));
