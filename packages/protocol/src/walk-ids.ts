/**
 * Message ids of a walk shard's declarations (worker declarations.ts). A redelivered shard's walk
 * may cut its batches differently from an earlier attempt's (files whose upload the earlier
 * attempt's batches finished are now skipped), so each attempt after the first makes its own:
 * "" for the first delivery, "a<n>." for delivery n > 1.
 */
export const attemptScope = (attempt: number): string => (attempt <= 1 ? "" : `a${attempt}.`);

/** Message id of a shard's final result in delivery `attempt`: `<shard>.r`, `<shard>.a<n>.r`. */
export const walkResultId = (shardId: string, attempt: number): string =>
  `${shardId}.${attemptScope(attempt)}r`;

/** Message id (and item id) of spawn notice `n` of a shard in delivery `attempt`. */
export const spawnNoticeId = (shardId: string, attempt: number, n: number): string =>
  `${shardId}.${attemptScope(attempt)}s${n}`;

/**
 * Message id of a shard's failed result: `<shard>.f`, one per shard whichever run or the
 * coordinator reports it (the two dedupe). Not an attempt's result id: a redelivered run probes
 * the earlier attempts' result ids (declarations.ts), and an attempt number read off the server's
 * delivery count can name one of those probes (claim-attempt.ts), whose stored empty notice would
 * have swallowed the failure and left the job waiting. The ledger counts the first result of a
 * shard and refuses any later one, so a failure after a final result (or before it) changes
 * nothing twice.
 */
export const walkFailureId = (shardId: string): string => `${shardId}.f`;
