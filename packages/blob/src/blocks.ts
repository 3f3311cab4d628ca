import { HsmfleetError } from "@hsmfleet/core";

const MiB = 1024 * 1024;
/** Default block (and single-put) size. */
export const DEFAULT_BLOCK_SIZE_BYTES = 8 * MiB;
/** Largest block Azure accepts (service version 2019-12-12 and later). */
export const MAX_BLOCK_SIZE_BYTES = 4000 * MiB;
/** Most blocks one block blob can hold. */
export const MAX_BLOCKS_PER_BLOB = 50_000;
/** Length of every block id before base64: Azure requires equal lengths within a blob, ≤ 64. */
export const BLOCK_ID_RAW_LENGTH = 48;

const BLOCK_ID_PREFIX = "hsmfleet-blk-";

/**
 * Block id of the block starting at byte `offset`: base64 of the 48-byte ASCII string
 * "hsmfleet-blk-" + 20-digit zero-padded offset + "." padding. All ids have the same length
 * (64 base64 characters, no '=').
 */
export const blockIdFor = (offset: number): string => {
  if (!Number.isSafeInteger(offset) || offset < 0) {
    throw new RangeError(`block offset must be a non-negative integer, got ${offset}`);
  }
  const raw = (BLOCK_ID_PREFIX + String(offset).padStart(20, "0")).padEnd(BLOCK_ID_RAW_LENGTH, ".");
  return Buffer.from(raw, "ascii").toString("base64");
};

/**
 * Block size for a file of `fileSize` bytes: `preferredBytes` (default 8 MiB), doubled until the
 * file fits in 50,000 blocks, capped at 4000 MiB. Files that need more than 50,000 × 4000 MiB
 * cannot be a block blob: HsmfleetError.
 */
export const chooseBlockSize = (fileSize: number, preferredBytes?: number): number => {
  if (!Number.isSafeInteger(fileSize) || fileSize < 0) {
    throw new RangeError(`file size must be a non-negative integer, got ${fileSize}`);
  }
  const preferred = preferredBytes ?? DEFAULT_BLOCK_SIZE_BYTES;
  if (!Number.isSafeInteger(preferred) || preferred < 1 || preferred > MAX_BLOCK_SIZE_BYTES) {
    throw new RangeError(
      `block size must be between 1 byte and ${MAX_BLOCK_SIZE_BYTES / MiB} MiB, got ${preferredBytes}`,
    );
  }
  if (fileSize > MAX_BLOCKS_PER_BLOB * MAX_BLOCK_SIZE_BYTES) {
    throw new HsmfleetError(
      `a file of ${fileSize} bytes does not fit in a block blob ` +
        `(at most ${MAX_BLOCKS_PER_BLOB} blocks of ${MAX_BLOCK_SIZE_BYTES / MiB} MiB = ` +
        `${MAX_BLOCKS_PER_BLOB * MAX_BLOCK_SIZE_BYTES} bytes)`,
    );
  }
  let size = preferred;
  while (Math.ceil(fileSize / size) > MAX_BLOCKS_PER_BLOB) {
    size = Math.min(size * 2, MAX_BLOCK_SIZE_BYTES);
  }
  return size;
};
