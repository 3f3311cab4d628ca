/**
 * Message ids of a walk shard's declarations (worker declarations.ts). A redelivered shard's walk
 * may cut its batches differently from an earlier attempt's (files whose upload the earlier
 * attempt's batches finished are now skipped), so each attempt after the first makes its own:
 * "" for the first delivery, "a<n>." for delivery n > 1.
 */
export const attemptScope = (attempt: number): string => (attempt <= 1 ? "" : `a${attempt}.`);

/**
 * Message id of a shard's final result in delivery `attempt`: `<shard>.r`, `<shard>.a<n>.r`. The
 * coordinator's failed result for a shard that ran out of deliveries uses the last one.
 */
export const walkResultId = (shardId: string, attempt: number): string =>
  `${shardId}.${attemptScope(attempt)}r`;

/** Message id (and item id) of spawn notice `n` of a shard in delivery `attempt`. */
export const spawnNoticeId = (shardId: string, attempt: number, n: number): string =>
  `${shardId}.${attemptScope(attempt)}s${n}`;
