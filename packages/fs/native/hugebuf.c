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
 *
 * readFileHuge and readAsciiExternal read a whole file into such memory, for the CLI's launcher
 * (packages/cli/bin/hsmfleet.js), which reads its 5 MB bundle and a 3–4 MB V8 code cache at every
 * start: fs.readFileSync's fresh 4 KiB pages and UTF-8 decoding took ~70 ms of a command's fixed
 * cost on the development VM, these ~2 ms. The bundle becomes an external one-byte string over
 * the read memory (no copy into V8's heap), which is why it must be ASCII (bundle.mjs makes it so).
 */
#include <errno.h>
#include <fcntl.h>
#include <node_api.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "hugebuf.h"

/* Node ≥ 20.4 (an experimental N-API function, not declared without NAPI_EXPERIMENTAL): weak, so
 * an older Node loads the addon and readAsciiExternal answers null. */
extern napi_status node_api_create_external_string_latin1(napi_env env, char *str, size_t length,
                                                          napi_finalize finalize_callback,
                                                          void *finalize_hint, napi_value *result,
                                                          bool *copied) __attribute__((weak));

#define HUGE_ALIGN ((size_t)2 << 20)
/* Largest buffer asked for at once: a slab of ranges, not a file. */
#define HUGE_MAX ((size_t)1 << 32)

/* Largest file read whole. */
#define READ_MAX ((uint64_t)256 << 20)

/* `len` bytes of anonymous memory aligned to 2 MiB, advised MADV_HUGEPAGE; NULL on failure. */
struct huge_map *hsmfleet_huge_map_new(size_t len) {
  size_t rounded = (len + HUGE_ALIGN - 1) & ~(HUGE_ALIGN - 1);
  size_t span = rounded + HUGE_ALIGN;
  uint8_t *raw = mmap(NULL, span, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (raw == MAP_FAILED) return NULL;
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
    return NULL;
  }
  m->base = start;
  m->map_len = rounded;
  m->len = len;
  return m;
}

void hsmfleet_huge_map_free(struct huge_map *m) {
  munmap(m->base, m->map_len);
  free(m);
}

static void huge_finalize(napi_env env, void *data, void *hint) {
  struct huge_map *m = hint;
  int64_t ignored;
  (void)data;
  napi_adjust_external_memory(env, -(int64_t)m->len, &ignored);
  hsmfleet_huge_map_free(m);
}

/* A Buffer over the mapping, which it then owns (freed on GC); null if it could not be made. */
static napi_value huge_buffer(napi_env env, struct huge_map *m) {
  napi_value out;
  if (napi_create_external_buffer(env, m->len, m->base, huge_finalize, m, &out) != napi_ok) {
    hsmfleet_huge_map_free(m);
    napi_get_null(env, &out);
    return out;
  }
  int64_t ignored;
  napi_adjust_external_memory(env, (int64_t)m->len, &ignored);
  return out;
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
  napi_get_null(env, &out);
  struct huge_map *m = hsmfleet_huge_map_new((size_t)d);
  if (m == NULL) return out;
  return huge_buffer(env, m);
}

/* The whole regular file at `path` (a string) read into huge-page memory; NULL with errno set. */
static struct huge_map *read_file_huge(napi_env env, napi_value arg) {
  char path[4096];
  size_t plen = 0;
  if (napi_get_value_string_utf8(env, arg, path, sizeof path, &plen) != napi_ok ||
      plen >= sizeof path - 1) {
    errno = ENAMETOOLONG;
    return NULL;
  }
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return NULL;
  struct stat st;
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_size <= 0 ||
      (uint64_t)st.st_size > READ_MAX) {
    close(fd);
    errno = EINVAL;
    return NULL;
  }
  struct huge_map *m = hsmfleet_huge_map_new((size_t)st.st_size);
  if (m == NULL) {
    close(fd);
    return NULL;
  }
  size_t got = 0;
  while (got < m->len) {
    ssize_t r = read(fd, (uint8_t *)m->base + got, m->len - got);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) break;
    got += (size_t)r;
  }
  /* Shorter or longer than its size said: the file changed while read. */
  char extra;
  bool changed = got != m->len || read(fd, &extra, 1) != 0;
  close(fd);
  if (changed) {
    hsmfleet_huge_map_free(m);
    errno = EAGAIN;
    return NULL;
  }
  return m;
}

/* readFileHuge(path) -> Buffer of the file's bytes on huge pages, or null (missing, empty, not a
 * regular file, over 256 MiB, or changed while read: the caller reads it the ordinary way). */
static napi_value js_read_file_huge(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1], out;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  napi_get_null(env, &out);
  if (argc < 1) return out;
  struct huge_map *m = read_file_huge(env, argv[0]);
  return m == NULL ? out : huge_buffer(env, m);
}

static bool all_ascii(const uint8_t *p, size_t n) {
  uint64_t acc = 0;
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    uint64_t w;
    memcpy(&w, p + i, 8);
    acc |= w;
  }
  for (; i < n; i++) acc |= p[i];
  return (acc & 0x8080808080808080ULL) == 0;
}

static void string_finalize(napi_env env, void *data, void *hint) {
  (void)env;
  (void)data;
  hsmfleet_huge_map_free(hint);
}

/* readAsciiExternal(path) -> the file as a string whose characters V8 reads from the read memory
 * itself (an external one-byte string), or null (unreadable as for readFileHuge, a byte that is
 * not ASCII, or a Node without external strings). */
static napi_value js_read_ascii_external(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1], out;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  napi_get_null(env, &out);
  if (argc < 1 || node_api_create_external_string_latin1 == NULL) return out;
  struct huge_map *m = read_file_huge(env, argv[0]);
  if (m == NULL) return out;
  /* Where Node copies the characters instead (a V8 sandbox build: `copied`), it has called
   * string_finalize already; either way the mapping is not ours any more once this succeeded. */
  bool copied = false;
  if (!all_ascii(m->base, m->len) ||
      node_api_create_external_string_latin1(env, m->base, m->len, string_finalize, m, &out,
                                             &copied) != napi_ok) {
    hsmfleet_huge_map_free(m);
    napi_get_null(env, &out);
  }
  return out;
}

napi_status hsmfleet_register_hugebuf(napi_env env, napi_value exports) {
  napi_property_descriptor p[] = {
      {"hugePageBuffer", NULL, js_huge_page_buffer, NULL, NULL, NULL, napi_enumerable, NULL},
      {"readFileHuge", NULL, js_read_file_huge, NULL, NULL, NULL, napi_enumerable, NULL},
      {"readAsciiExternal", NULL, js_read_ascii_external, NULL, NULL, NULL, napi_enumerable, NULL},
  };
  return napi_define_properties(env, exports, sizeof p / sizeof p[0], p);
}
