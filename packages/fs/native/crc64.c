/*
 * hsmfleet_crc64: Azure Storage's CRC64 (x-ms-content-crc64) for @hsmfleet/fs (src/crc64.ts).
 *
 * The checksum is CRC-64/NVME: reflected polynomial 0x9A6C9329AC4BC9B5 (normal 0xAD93D23594C93659),
 * initial value ~0, final xor ~0 — Go's crc64.Update with crc64.MakeTable(0x9A6C9329AC4BC9B5).
 * The service takes the 8 bytes little-endian, base64-encoded. Check values: "123456789" ->
 * 0xAE8B14860A799888; "Hello Azure!" -> DtjZpL9/o8c= (Azure SDK for C++ tests).
 *
 * Three implementations, chosen once at load:
 *   vpclmulqdq  x86-64 with VPCLMULQDQ and AVX2 (Zen 3+, Ice Lake+): 8 × 256-bit lanes, two
 *               128-bit folds per instruction, the lanes finished by the pclmul path;
 *   pclmul      x86-64 with PCLMULQDQ: 8 × 128-bit lanes folded with carry-less multiplication
 *               (about 8-10 GB/s per core), the 128-bit remainder finished by the table;
 *   table       slicing-by-8 (about 1-2 GB/s per core), everywhere else, and for short inputs.
 * HSMFLEET_CRC64_IMPL=pclmul or =table (read at load) caps the choice: tests run each path.
 *
 * Seeds chain like Go's crc64.Update: crc64(b, crc64(a)) == crc64(a ++ b); the seed of a fresh
 * checksum is 0.
 *
 * JS API (values are BigInt):
 *   crc64(data: Uint8Array, seed?: bigint): bigint                  on the calling thread
 *   crc64Async(data: Uint8Array, seed?: bigint): Promise<bigint>    on the libuv threadpool; the
 *                                                                   caller must not change `data`
 *                                                                   until it settles
 *   crc64Table(data: Uint8Array, seed?: bigint): bigint             slicing-by-8 only (tests)
 *   preadCrc64(fd: number, data: Uint8Array, position: number): Promise<[number, bigint]>
 *               on the libuv threadpool: pread()s data.length bytes at `position` into `data`
 *               (until EOF; the count is the first element) and computes their CRC64 as it
 *               reads, piece by piece while each piece is still in the CPU cache — one job and
 *               one pass over memory instead of a read job and a checksum job. A failed pread
 *               rejects with an Error carrying code (EIO, …), errno (negative) and syscall
 *               "read", as node:fs errors do.
 *   pwriteCrc64(fd: number, data: Uint8Array, position: number, sparse?: boolean, seed?: bigint)
 *       : Promise<[number, bigint]>
 *               the download direction's counterpart: pwrite()s all of `data` at `position`
 *               (EINTR and short writes retried; with `sparse`, 4 KiB blocks aligned on file
 *               offsets that hold only zeros are skipped, as writehash.c does) and computes the
 *               CRC64 of `data` (continuing from `seed`, default 0) piece by piece right after each
 *               piece is written. A
 *               failed pwrite rejects with syscall "write".
 *   implementation: "vpclmulqdq" | "pclmul" | "table"
 */
#ifndef NAPI_VERSION
#define NAPI_VERSION 8
#endif
#include <node_api.h>

#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>

#include "pwrite-runs.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define HAVE_PCLMUL_PATH 1
#include <immintrin.h>
#endif

#define POLY 0x9A6C9329AC4BC9B5ULL

static uint64_t table[8][256];

static void init_tables(void) {
  for (int i = 0; i < 256; i++) {
    uint64_t c = (uint64_t)i;
    for (int k = 0; k < 8; k++) c = (c & 1) ? (c >> 1) ^ POLY : c >> 1;
    table[0][i] = c;
  }
  for (int i = 0; i < 256; i++) {
    uint64_t c = table[0][i];
    for (int t = 1; t < 8; t++) {
      c = table[0][c & 0xff] ^ (c >> 8);
      table[t][i] = c;
    }
  }
}

static inline uint64_t load_le64(const uint8_t *p) {
  uint64_t v;
  memcpy(&v, p, 8);
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
  v = __builtin_bswap64(v);
#endif
  return v;
}

/* Raw register update (no inversion): slicing-by-8. */
static uint64_t crc_table_raw(uint64_t crc, const uint8_t *p, size_t n) {
  while (n > 0 && ((uintptr_t)p & 7) != 0) {
    crc = table[0][(crc ^ *p++) & 0xff] ^ (crc >> 8);
    n--;
  }
  while (n >= 8) {
    uint64_t v = crc ^ load_le64(p);
    crc = table[7][v & 0xff] ^ table[6][(v >> 8) & 0xff] ^ table[5][(v >> 16) & 0xff] ^
          table[4][(v >> 24) & 0xff] ^ table[3][(v >> 32) & 0xff] ^ table[2][(v >> 40) & 0xff] ^
          table[1][(v >> 48) & 0xff] ^ table[0][v >> 56];
    p += 8;
    n -= 8;
  }
  while (n-- > 0) crc = table[0][(crc ^ *p++) & 0xff] ^ (crc >> 8);
  return crc;
}

#ifdef HAVE_PCLMUL_PATH
/*
 * Folding constants. In the reflected representation bit i of a 64-bit lane stands for x^(63-i),
 * and a 128-bit register loaded little-endian holds the polynomial of its 16 message bytes with
 * bit k standing for x^(127-k). PCLMULQDQ of two reflected 64-bit values yields their product
 * times x in that register layout, so a lane is moved forward by D bits with the constants
 * x^(D+63) mod P (low lane: its terms sit 64 bits higher) and x^(D-1) mod P (high lane).
 * xpow(n) = x^n mod P, reflected: x^0 is bit 63, and multiplying by x is one table step.
 */
static uint64_t xpow(unsigned n) {
  uint64_t v = 1ULL << 63;
  while (n-- > 0) v = (v & 1) ? (v >> 1) ^ POLY : v >> 1;
  return v;
}

static __m128i k_fold1024;  /* lanes of 8 × 16 bytes: D = 1024 */
static __m128i k_join[7];   /* lane i of the last group moved by D = 128 × (7 - i) */
static __m128i k_fold2048;  /* 128-bit halves of 8 × 32-byte lanes: D = 2048 */
static int have_pclmul = 0;
static int have_vpclmul = 0;

static void init_pclmul(void) {
  __builtin_cpu_init();
  if (!__builtin_cpu_supports("pclmul") || !__builtin_cpu_supports("sse4.1")) return;
  k_fold1024 = _mm_set_epi64x((long long)xpow(1024 - 1), (long long)xpow(1024 + 63));
  for (int i = 0; i < 7; i++) {
    unsigned d = 128u * (unsigned)(7 - i);
    k_join[i] = _mm_set_epi64x((long long)xpow(d - 1), (long long)xpow(d + 63));
  }
  have_pclmul = 1;
  k_fold2048 = _mm_set_epi64x((long long)xpow(2048 - 1), (long long)xpow(2048 + 63));
  have_vpclmul = __builtin_cpu_supports("vpclmulqdq") && __builtin_cpu_supports("avx2");
}

__attribute__((target("pclmul,sse4.1"))) static inline __m128i fold(__m128i x, __m128i k) {
  return _mm_xor_si128(_mm_clmulepi64_si128(x, k, 0x00), _mm_clmulepi64_si128(x, k, 0x11));
}

/* Raw register update of n bytes, n a positive multiple of 128. */
__attribute__((target("pclmul,sse4.1"))) static uint64_t crc_pclmul_raw(uint64_t crc,
                                                                         const uint8_t *p,
                                                                         size_t n) {
  __m128i x[8];
  for (int i = 0; i < 8; i++) x[i] = _mm_loadu_si128((const __m128i *)(p + 16 * i));
  /* The register so far, xored into the first 8 message bytes, carries it along. */
  x[0] = _mm_xor_si128(x[0], _mm_set_epi64x(0, (long long)crc));
  p += 128;
  n -= 128;
  while (n >= 128) {
    for (int i = 0; i < 8; i++)
      x[i] = _mm_xor_si128(fold(x[i], k_fold1024), _mm_loadu_si128((const __m128i *)(p + 16 * i)));
    p += 128;
    n -= 128;
  }
  __m128i acc = x[7];
  for (int i = 0; i < 7; i++) acc = _mm_xor_si128(acc, fold(x[i], k_join[i]));
  /* acc is congruent to the whole input: its CRC from a zero register is the input's. */
  uint8_t rest[16];
  _mm_storeu_si128((__m128i *)rest, acc);
  return crc_table_raw(0, rest, 16);
}

/*
 * Raw register update of n bytes, n a positive multiple of 256: the same folding on 256-bit
 * registers (each holds two 128-bit lanes, folded by one VPCLMULQDQ per constant). The 8 × 32
 * bytes of accumulators, read as a message, are congruent to the input: the pclmul path finishes.
 */
__attribute__((target("vpclmulqdq,avx2,pclmul,sse4.1"))) static uint64_t crc_vpclmul_raw(
    uint64_t crc, const uint8_t *p, size_t n) {
  __m256i x[8];
  for (int i = 0; i < 8; i++) x[i] = _mm256_loadu_si256((const __m256i *)(p + 32 * i));
  x[0] = _mm256_xor_si256(x[0], _mm256_set_epi64x(0, 0, 0, (long long)crc));
  p += 256;
  n -= 256;
  const __m256i k = _mm256_broadcastsi128_si256(k_fold2048);
  while (n >= 256) {
    for (int i = 0; i < 8; i++) {
      __m256i f = _mm256_xor_si256(_mm256_clmulepi64_epi128(x[i], k, 0x00),
                                   _mm256_clmulepi64_epi128(x[i], k, 0x11));
      x[i] = _mm256_xor_si256(f, _mm256_loadu_si256((const __m256i *)(p + 32 * i)));
    }
    p += 256;
    n -= 256;
  }
  uint8_t rest[256];
  for (int i = 0; i < 8; i++) _mm256_storeu_si256((__m256i *)(rest + 32 * i), x[i]);
  return crc_pclmul_raw(0, rest, sizeof rest);
}
#endif

/* The fastest path the CPU has for the bulk, the table for what is left. */
static uint64_t crc_raw(uint64_t crc, const uint8_t *p, size_t n) {
#ifdef HAVE_PCLMUL_PATH
  if (have_vpclmul && n >= 1024) {
    size_t bulk = n & ~(size_t)255;
    crc = crc_vpclmul_raw(crc, p, bulk);
    p += bulk;
    n -= bulk;
  }
  if (have_pclmul && n >= 256) {
    size_t bulk = n & ~(size_t)127;
    crc = crc_pclmul_raw(crc, p, bulk);
    p += bulk;
    n -= bulk;
  }
#endif
  return crc_table_raw(crc, p, n);
}

static uint64_t crc64_update(uint64_t seed, const uint8_t *p, size_t n) {
  return ~crc_raw(~seed, p, n);
}

static uint64_t crc64_update_table(uint64_t seed, const uint8_t *p, size_t n) {
  return ~crc_table_raw(~seed, p, n);
}

/* ------------------------------------------------------------------------------------------ */

static napi_value throw_type(napi_env env, const char *msg) {
  napi_throw_type_error(env, NULL, msg);
  return NULL;
}

/* data: any Uint8Array (Buffer, also over a SharedArrayBuffer); seed: optional BigInt. */
static int get_args(napi_env env, napi_callback_info info, napi_value *data_value,
                    const uint8_t **data, size_t *len, uint64_t *seed) {
  size_t argc = 2;
  napi_value argv[2];
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok) return 0;
  bool is_ta = false;
  if (argc < 1 || napi_is_typedarray(env, argv[0], &is_ta) != napi_ok || !is_ta) {
    throw_type(env, "crc64: data must be a Uint8Array");
    return 0;
  }
  napi_typedarray_type type;
  void *ptr = NULL;
  if (napi_get_typedarray_info(env, argv[0], &type, len, &ptr, NULL, NULL) != napi_ok ||
      type != napi_uint8_array) {
    throw_type(env, "crc64: data must be a Uint8Array");
    return 0;
  }
  *data = ptr;
  *data_value = argv[0];
  *seed = 0;
  if (argc >= 2) {
    napi_valuetype t;
    napi_typeof(env, argv[1], &t);
    if (t == napi_bigint) {
      bool lossless = false;
      napi_get_value_bigint_uint64(env, argv[1], seed, &lossless);
      if (!lossless) {
        throw_type(env, "crc64: seed must be a BigInt in [0, 2^64)");
        return 0;
      }
    } else if (t != napi_undefined) {
      throw_type(env, "crc64: seed must be a BigInt");
      return 0;
    }
  }
  return 1;
}

static napi_value js_crc64(napi_env env, napi_callback_info info) {
  napi_value dv, out;
  const uint8_t *p;
  size_t n;
  uint64_t seed;
  if (!get_args(env, info, &dv, &p, &n, &seed)) return NULL;
  napi_create_bigint_uint64(env, crc64_update(seed, p, n), &out);
  return out;
}

static napi_value js_crc64_table(napi_env env, napi_callback_info info) {
  napi_value dv, out;
  const uint8_t *p;
  size_t n;
  uint64_t seed;
  if (!get_args(env, info, &dv, &p, &n, &seed)) return NULL;
  napi_create_bigint_uint64(env, crc64_update_table(seed, p, n), &out);
  return out;
}

struct crc_work {
  napi_async_work work;
  napi_deferred deferred;
  napi_ref data_ref; /* keeps the buffer alive while a pool thread reads it */
  const uint8_t *p;
  size_t n;
  uint64_t crc;
};

static void work_execute(napi_env env, void *arg) {
  struct crc_work *w = arg;
  w->crc = crc64_update(w->crc, w->p, w->n);
}

static void work_complete(napi_env env, napi_status status, void *arg) {
  struct crc_work *w = arg;
  napi_value v;
  if (status == napi_ok) {
    napi_create_bigint_uint64(env, w->crc, &v);
    napi_resolve_deferred(env, w->deferred, v);
  } else {
    napi_value msg;
    napi_create_string_utf8(env, "crc64: the threadpool task was cancelled", NAPI_AUTO_LENGTH,
                            &msg);
    napi_create_error(env, NULL, msg, &v);
    napi_reject_deferred(env, w->deferred, v);
  }
  napi_delete_reference(env, w->data_ref);
  napi_delete_async_work(env, w->work);
  free(w);
}

static napi_value js_crc64_async(napi_env env, napi_callback_info info) {
  napi_value dv, promise, name;
  const uint8_t *p;
  size_t n;
  uint64_t seed;
  if (!get_args(env, info, &dv, &p, &n, &seed)) return NULL;
  struct crc_work *w = calloc(1, sizeof *w);
  if (w == NULL) {
    napi_throw_error(env, NULL, "crc64: out of memory");
    return NULL;
  }
  w->p = p;
  w->n = n;
  w->crc = seed;
  if (napi_create_promise(env, &w->deferred, &promise) != napi_ok ||
      napi_create_reference(env, dv, 1, &w->data_ref) != napi_ok) {
    free(w);
    napi_throw_error(env, NULL, "crc64: cannot start");
    return NULL;
  }
  napi_create_string_utf8(env, "hsmfleet_crc64", NAPI_AUTO_LENGTH, &name);
  if (napi_create_async_work(env, NULL, name, work_execute, work_complete, w, &w->work) !=
          napi_ok ||
      napi_queue_async_work(env, w->work) != napi_ok) {
    napi_delete_reference(env, w->data_ref);
    free(w);
    napi_throw_error(env, NULL, "crc64: cannot queue work");
    return NULL;
  }
  return promise;
}

/* ------------------------------------------------------------------------------------------ */
/* preadCrc64: read and checksum in one threadpool job. */

/* Bytes per pread: small enough that the checksum finds them in the L2/L3 cache. */
#define PREAD_PIECE (1024 * 1024)

struct pread_work {
  napi_async_work work;
  napi_deferred deferred;
  napi_ref data_ref; /* keeps the buffer alive while a pool thread writes it */
  int fd;
  uint8_t *p;
  size_t n;
  int64_t position;
  size_t done;
  uint64_t crc;
  int err; /* errno of a failed pread/pwrite, else 0 */
  int write;  /* pwriteCrc64: write `p` at `position` instead of reading into it */
  int sparse; /* pwriteCrc64: all-zero HSMFLEET_SPARSE_BLOCKs (by file offset) are not written */
  uint64_t seed; /* pwriteCrc64: the CRC64 of the bytes before `p` */
};

static void pread_execute(napi_env env, void *arg) {
  struct pread_work *w = arg;
  uint64_t crc = w->seed;
  if (w->write) {
    /* Each piece is checksummed right after it is written, while it is in the CPU cache. */
    while (w->done < w->n) {
      size_t piece = w->n - w->done;
      if (piece > PREAD_PIECE) piece = PREAD_PIECE;
      w->err = hsmfleet_pwrite_data(w->fd, w->p + w->done, piece, w->position + (int64_t)w->done,
                                    w->sparse);
      if (w->err != 0) return;
      crc = crc64_update(crc, w->p + w->done, piece);
      w->done += piece;
    }
    w->crc = crc;
    return;
  }
  while (w->done < w->n) {
    size_t want = w->n - w->done;
    if (want > PREAD_PIECE) want = PREAD_PIECE;
    ssize_t r = pread(w->fd, w->p + w->done, want, (off_t)(w->position + (int64_t)w->done));
    if (r < 0) {
      if (errno == EINTR) continue;
      w->err = errno;
      return;
    }
    if (r == 0) break; /* end of file: the caller sees the short count */
    crc = crc64_update(crc, w->p + w->done, (size_t)r);
    w->done += (size_t)r;
  }
  w->crc = crc;
}

static void pread_complete(napi_env env, napi_status status, void *arg) {
  struct pread_work *w = arg;
  napi_value v;
  if (status == napi_ok && w->err == 0) {
    napi_value count, crc;
    napi_create_array_with_length(env, 2, &v);
    napi_create_double(env, (double)w->done, &count);
    napi_create_bigint_uint64(env, w->crc, &crc);
    napi_set_element(env, v, 0, count);
    napi_set_element(env, v, 1, crc);
    napi_resolve_deferred(env, w->deferred, v);
  } else {
    char text[256];
    const char *code = "ECANCELED";
    if (status != napi_ok) {
      snprintf(text, sizeof text, "ECANCELED: the threadpool task was cancelled, %s",
               w->write ? "write" : "read");
    } else {
      code = uv_err_name(-w->err);
      snprintf(text, sizeof text, "%s: %s, %s", code, strerror(w->err),
               w->write ? "write" : "read");
    }
    napi_value msg, code_v, errno_v, syscall_v;
    napi_create_string_utf8(env, text, NAPI_AUTO_LENGTH, &msg);
    napi_create_error(env, NULL, msg, &v);
    napi_create_string_utf8(env, code, NAPI_AUTO_LENGTH, &code_v);
    napi_create_int32(env, status != napi_ok ? -ECANCELED : -w->err, &errno_v);
    napi_create_string_utf8(env, w->write ? "write" : "read", NAPI_AUTO_LENGTH, &syscall_v);
    napi_set_named_property(env, v, "code", code_v);
    napi_set_named_property(env, v, "errno", errno_v);
    napi_set_named_property(env, v, "syscall", syscall_v);
    napi_reject_deferred(env, w->deferred, v);
  }
  napi_delete_reference(env, w->data_ref);
  napi_delete_async_work(env, w->work);
  free(w);
}

static napi_value start_pread_write(napi_env env, napi_callback_info info, int write) {
  const char *what = write ? "pwriteCrc64" : "preadCrc64";
  char msg[128];
  size_t argc = 5;
  napi_value argv[5], promise, name;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok) return NULL;
  if (argc < 3) {
    snprintf(msg, sizeof msg, "%s(fd, data, position%s)", what, write ? ", sparse?" : "");
    return throw_type(env, msg);
  }
  int32_t fd;
  if (napi_get_value_int32(env, argv[0], &fd) != napi_ok || fd < 0) {
    snprintf(msg, sizeof msg, "%s: fd must be a file descriptor", what);
    return throw_type(env, msg);
  }
  bool is_ta = false;
  napi_typedarray_type type;
  void *ptr = NULL;
  size_t len = 0;
  if (napi_is_typedarray(env, argv[1], &is_ta) != napi_ok || !is_ta ||
      napi_get_typedarray_info(env, argv[1], &type, &len, &ptr, NULL, NULL) != napi_ok ||
      type != napi_uint8_array) {
    snprintf(msg, sizeof msg, "%s: data must be a Uint8Array", what);
    return throw_type(env, msg);
  }
  int64_t position;
  if (napi_get_value_int64(env, argv[2], &position) != napi_ok || position < 0) {
    snprintf(msg, sizeof msg, "%s: position must be an integer >= 0", what);
    return throw_type(env, msg);
  }
  bool sparse = false;
  if (write && argc >= 4) {
    napi_valuetype t;
    napi_typeof(env, argv[3], &t);
    if (t == napi_boolean) napi_get_value_bool(env, argv[3], &sparse);
  }
  uint64_t seed = 0;
  if (write && argc >= 5) {
    napi_valuetype t;
    napi_typeof(env, argv[4], &t);
    bool lossless = false;
    if (t == napi_bigint) napi_get_value_bigint_uint64(env, argv[4], &seed, &lossless);
    if (t != napi_undefined && !lossless) {
      snprintf(msg, sizeof msg, "%s: seed must be a BigInt in [0, 2^64)", what);
      return throw_type(env, msg);
    }
  }
  struct pread_work *w = calloc(1, sizeof *w);
  if (w == NULL) {
    snprintf(msg, sizeof msg, "%s: out of memory", what);
    napi_throw_error(env, NULL, msg);
    return NULL;
  }
  w->fd = fd;
  w->p = ptr;
  w->n = len;
  w->position = position;
  w->write = write;
  w->sparse = sparse;
  w->seed = seed;
  if (napi_create_promise(env, &w->deferred, &promise) != napi_ok ||
      napi_create_reference(env, argv[1], 1, &w->data_ref) != napi_ok) {
    free(w);
    snprintf(msg, sizeof msg, "%s: cannot start", what);
    napi_throw_error(env, NULL, msg);
    return NULL;
  }
  napi_create_string_utf8(env, write ? "hsmfleet_pwrite_crc64" : "hsmfleet_pread_crc64",
                          NAPI_AUTO_LENGTH, &name);
  if (napi_create_async_work(env, NULL, name, pread_execute, pread_complete, w, &w->work) !=
          napi_ok ||
      napi_queue_async_work(env, w->work) != napi_ok) {
    napi_delete_reference(env, w->data_ref);
    free(w);
    snprintf(msg, sizeof msg, "%s: cannot queue work", what);
    napi_throw_error(env, NULL, msg);
    return NULL;
  }
  return promise;
}

static napi_value js_pread_crc64(napi_env env, napi_callback_info info) {
  return start_pread_write(env, info, 0);
}

static napi_value js_pwrite_crc64(napi_env env, napi_callback_info info) {
  return start_pread_write(env, info, 1);
}

static napi_value init(napi_env env, napi_value exports) {
  init_tables();
  hsmfleet_init_write_max();
#ifdef HAVE_PCLMUL_PATH
  init_pclmul();
  const char *cap = getenv("HSMFLEET_CRC64_IMPL");
  if (cap != NULL && strcmp(cap, "pclmul") == 0) have_vpclmul = 0;
  if (cap != NULL && strcmp(cap, "table") == 0) have_vpclmul = have_pclmul = 0;
  const char *impl = have_vpclmul ? "vpclmulqdq" : have_pclmul ? "pclmul" : "table";
#else
  const char *impl = "table";
#endif
  napi_property_descriptor props[] = {
      {"crc64", NULL, js_crc64, NULL, NULL, NULL, napi_enumerable, NULL},
      {"crc64Async", NULL, js_crc64_async, NULL, NULL, NULL, napi_enumerable, NULL},
      {"crc64Table", NULL, js_crc64_table, NULL, NULL, NULL, napi_enumerable, NULL},
      {"preadCrc64", NULL, js_pread_crc64, NULL, NULL, NULL, napi_enumerable, NULL},
      {"pwriteCrc64", NULL, js_pwrite_crc64, NULL, NULL, NULL, napi_enumerable, NULL},
  };
  if (napi_define_properties(env, exports, sizeof props / sizeof props[0], props) != napi_ok)
    return NULL;
  napi_value v;
  napi_create_string_utf8(env, impl, NAPI_AUTO_LENGTH, &v);
  napi_set_named_property(env, exports, "implementation", v);
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
