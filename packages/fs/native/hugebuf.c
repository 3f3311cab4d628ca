/*
 * hugebuf.c: buffers backed by transparent huge pages (export hugePageBuffer).
 *
 * A large download touches hundreds of MiB of fresh memory (its range buffers). With 4 KiB pages
 * every first touch is a page fault, taken inside the socket read on the event loop; on a
 * paravirtualized guest each fault traps to the hypervisor, and touching 256 MiB took 0.73 s
 * (65,600 faults) where the same memory advised MADV_HUGEPAGE took 0.02–0.44 s (~200 faults;
 * docs/benchmarks.md "Large files: range buffers on huge pages"). The mapping is anonymous,
 * private, aligned to 2 MiB and advised MADV_HUGEPAGE (honoured when
 * /sys/kernel/mm/transparent_hugepage/enabled is `always` or `madvise`; otherwise it is ordinary
 * memory). Its pages are not touched here: a slice never used costs address space only.
 * Freed (munmap) when the Buffer is collected; V8 is told of it as external memory.
 */
#include <errno.h>
#include <node_api.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#define HUGE_ALIGN ((size_t)2 << 20)
/* Largest buffer asked for at once: a slab of ranges, not a file. */
#define HUGE_MAX ((size_t)1 << 32)

struct huge_map {
  void *base;
  size_t map_len;
  size_t len;
};

static void huge_finalize(napi_env env, void *data, void *hint) {
  struct huge_map *m = hint;
  int64_t ignored;
  (void)data;
  munmap(m->base, m->map_len);
  napi_adjust_external_memory(env, -(int64_t)m->len, &ignored);
  free(m);
}

/* hugePageBuffer(bytes) -> Buffer of `bytes` (contents zero, pages not touched), or null when
 * the mapping failed (the caller allocates ordinary memory). */
static napi_value js_huge_page_buffer(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1], out;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  double d = -1;
  if (argc < 1 || napi_get_value_double(env, argv[0], &d) != napi_ok || !(d >= 1) ||
      d > (double)HUGE_MAX || d != (double)(size_t)d) {
    napi_throw_range_error(env, NULL, "hugePageBuffer: bytes must be an integer from 1 to 4 GiB");
    return NULL;
  }
  size_t len = (size_t)d;
  size_t rounded = (len + HUGE_ALIGN - 1) & ~(HUGE_ALIGN - 1);
  size_t span = rounded + HUGE_ALIGN;
  uint8_t *raw = mmap(NULL, span, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  napi_get_null(env, &out);
  if (raw == MAP_FAILED) return out;
  uint8_t *start = (uint8_t *)(((uintptr_t)raw + HUGE_ALIGN - 1) & ~(uintptr_t)(HUGE_ALIGN - 1));
  /* Give back the unaligned head and the tail past the rounded length. */
  if (start > raw) munmap(raw, (size_t)(start - raw));
  uint8_t *end = start + rounded;
  if (raw + span > end) munmap(end, (size_t)(raw + span - end));
#ifdef MADV_HUGEPAGE
  (void)madvise(start, rounded, MADV_HUGEPAGE);
#endif
  struct huge_map *m = malloc(sizeof *m);
  if (m == NULL) {
    munmap(start, rounded);
    return out;
  }
  m->base = start;
  m->map_len = rounded;
  m->len = len;
  if (napi_create_external_buffer(env, len, start, huge_finalize, m, &out) != napi_ok) {
    munmap(start, rounded);
    free(m);
    napi_get_null(env, &out);
    return out;
  }
  int64_t ignored;
  napi_adjust_external_memory(env, (int64_t)len, &ignored);
  return out;
}

napi_status hsmfleet_register_hugebuf(napi_env env, napi_value exports) {
  napi_property_descriptor p[] = {
      {"hugePageBuffer", NULL, js_huge_page_buffer, NULL, NULL, NULL, napi_enumerable, NULL},
  };
  return napi_define_properties(env, exports, 1, p);
}
