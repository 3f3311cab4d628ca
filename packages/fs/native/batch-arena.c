/*
 * batch-arena.c: where the directory reader's finished batches live (dirscan.c), on transparent
 * huge pages.
 *
 * A batch was built in a fresh malloc'd buffer and handed to JS, which frees it when the Buffer is
 * collected: a 226k-entry scan wrote ~26 MB of records into memory it had never touched, ~6,000
 * page faults (the memset of each record and malloc's heap growth), each a trap to the hypervisor
 * on a paravirtualized VM (~11 µs; docs/benchmarks.md "Batches on huge pages"). Now a thread builds
 * each batch in a scratch buffer of its own, kept for its next batch, and the finished batch is
 * copied into a 4 MiB chunk on huge pages (hugebuf.c), cut in order by every thread: 2 faults per
 * chunk. A chunk is unmapped when the last of its batches is collected and a newer chunk is being
 * filled. Batches over a quarter of a chunk, or when no chunk can be mapped, are copied into
 * memory of their own (malloc), as before.
 */
#include <node_api.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "batch-arena.h"
#include "hugebuf.h"

#define CHUNK_BYTES ((size_t)4 << 20)
#define MAX_BATCH (CHUNK_BYTES / 4)
#define ALIGN 64

struct batch_chunk {
  struct huge_map *map;
  size_t used;
  long refs; /* batches cut from it and not released, plus one while it is the chunk being cut */
};

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static struct batch_chunk *current;
static long live_chunks; /* mapped now (batchArenaChunks, for tests) */

/* Drops one reference; the caller holds `lock`. Returns the chunk to free (after unlocking). */
static struct batch_chunk *unref_locked(struct batch_chunk *c) {
  if (--c->refs != 0) return NULL;
  live_chunks--;
  return c;
}

static void chunk_free(struct batch_chunk *c) {
  if (c == NULL) return;
  hsmfleet_huge_map_free(c->map);
  free(c);
}

void *hsmfleet_batch_copy(const void *data, size_t len, void **owner) {
  *owner = NULL;
  if (len == 0 || len > MAX_BATCH) return NULL;
  size_t need = (len + ALIGN - 1) & ~(size_t)(ALIGN - 1);
  struct batch_chunk *retired = NULL;
  pthread_mutex_lock(&lock);
  if (current == NULL || current->used + need > CHUNK_BYTES) {
    struct batch_chunk *c = malloc(sizeof *c);
    struct huge_map *m = c ? hsmfleet_huge_map_new(CHUNK_BYTES) : NULL;
    if (m == NULL) {
      pthread_mutex_unlock(&lock);
      free(c);
      return NULL;
    }
    c->map = m;
    c->used = 0;
    c->refs = 1;
    live_chunks++;
    if (current != NULL) retired = unref_locked(current);
    current = c;
  }
  uint8_t *p = (uint8_t *)current->map->base + current->used;
  current->used += need;
  current->refs++;
  *owner = current;
  pthread_mutex_unlock(&lock);
  chunk_free(retired);
  memcpy(p, data, len);
  return p;
}

void hsmfleet_batch_release(void *owner) {
  if (owner == NULL) return;
  pthread_mutex_lock(&lock);
  struct batch_chunk *done = unref_locked(owner);
  pthread_mutex_unlock(&lock);
  chunk_free(done);
}

/* batchArenaChunks() -> the chunks mapped now (tests: collected batches give theirs back). */
static napi_value js_batch_arena_chunks(napi_env env, napi_callback_info info) {
  (void)info;
  pthread_mutex_lock(&lock);
  long n = live_chunks;
  pthread_mutex_unlock(&lock);
  napi_value out;
  napi_create_int64(env, n, &out);
  return out;
}

napi_status hsmfleet_register_batch_arena(napi_env env, napi_value exports) {
  napi_property_descriptor p[] = {
      {"batchArenaChunks", NULL, js_batch_arena_chunks, NULL, NULL, NULL, napi_enumerable, NULL},
  };
  return napi_define_properties(env, exports, 1, p);
}
