/* batch-arena.h: finished directory batches on huge pages (batch-arena.c). */
#ifndef HSMFLEET_BATCH_ARENA_H
#define HSMFLEET_BATCH_ARENA_H
#include <stddef.h>

/*
 * A copy of data[0, len) in a huge-page chunk; *owner is what hsmfleet_batch_release takes when
 * the copy is no longer used. NULL (and *owner NULL) when the batch is too large for a chunk or no
 * chunk could be mapped: the caller keeps memory of its own. Any thread.
 */
void *hsmfleet_batch_copy(const void *data, size_t len, void **owner);
/* The copy of `owner` is no longer used (NULL: nothing). Any thread. */
void hsmfleet_batch_release(void *owner);

#endif
