/* hugebuf.h: anonymous memory on transparent huge pages (hugebuf.c), for the other native files. */
#ifndef HSMFLEET_HUGEBUF_H
#define HSMFLEET_HUGEBUF_H
#include <stddef.h>

struct huge_map {
  void *base;
  size_t map_len;
  size_t len;
};

/* `len` bytes of anonymous memory aligned to 2 MiB, advised MADV_HUGEPAGE; NULL on failure. */
struct huge_map *hsmfleet_huge_map_new(size_t len);
void hsmfleet_huge_map_free(struct huge_map *m);

#endif
