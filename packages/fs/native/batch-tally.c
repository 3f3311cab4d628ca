/*
 * batch-tally.c: the scan's per-file counting of one packed directory batch (dirscan.c's format
 * version 2, see src/dir-batch.ts) in one synchronous call on the JS thread (export tallyBatch).
 *
 * A 226k-entry scan read every record's type, size and HSM flags through DataView calls in
 * baseline-compiled JS and counted them one by one: ~0.1 s of the worker's main thread, which is
 * the busiest thread of a scan on 2 CPUs (docs/benchmarks.md, "The scan's counting in one native
 * call"). Here a batch of ~1,000 records is counted in a few microseconds.
 *
 *   tallyBatch(batch: Uint8Array, counts: Float64Array, others: Uint32Array) -> number
 *
 * Plain records (lstat succeeded, no error flag, not a directory) are added to `counts`:
 *   [0] regular files  [1] their bytes  [2] symlinks  [3] other entries
 *   [4 + b]            regular files in size bucket b (0: size 0, else 64 - clz(size)), b < 65
 *   [69 + f]           regular files with (struct hsm_attrs flags & 0x7f) == f, xattr read
 *                      (f = 0 when the file has no HSM xattr), f < 128
 *   [197]              regular files whose xattr was not read (REC_FLAG_HSM_UNREAD)
 *   [198]              n: how many slots are listed next
 *   [199 + i], i < n   the slots of [69, 198) in the order they first became non-zero
 * The byte offsets of every other record (directories and failed entries) go to `others`, in
 * order; the return value is how many. `others` must hold at least the batch's record count.
 * A malformed batch (wrong version, a record running past the end) throws a TypeError and counts
 * nothing.
 */
#include <node_api.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#define FORMAT_VERSION 2
#define BATCH_HDR_SIZE 8
#define REC_HDR_SIZE 96

#define TYPE_FILE 1
#define TYPE_DIRECTORY 2
#define TYPE_SYMLINK 3

#define REC_FLAG_HSM 0x1
#define REC_FLAG_ERROR 0x2
#define REC_FLAG_HSM_UNREAD 0x4

#define BUCKETS 65
#define STATE_BITS 0x7f
#define SLOT_FILES 0
#define SLOT_BYTES 1
#define SLOT_SYMLINKS 2
#define SLOT_OTHER 3
#define SLOT_BUCKETS 4
#define SLOT_FLAGS (SLOT_BUCKETS + BUCKETS)      /* 69 */
#define SLOT_UNREAD (SLOT_FLAGS + STATE_BITS + 1) /* 197 */
#define SLOT_ORDER_LEN (SLOT_UNREAD + 1)          /* 198 */
#define SLOT_ORDER (SLOT_ORDER_LEN + 1)           /* 199 */
#define COUNTS_LEN (SLOT_ORDER + STATE_BITS + 2)  /* 328 */

static uint32_t u32_at(const uint8_t *p) {
  uint32_t v;
  memcpy(&v, p, sizeof v);
  return v;
}

static uint64_t u64_at(const uint8_t *p) {
  uint64_t v;
  memcpy(&v, p, sizeof v);
  return v;
}

static int bucket_of(uint64_t size) {
  if (size == 0) return 0;
  int b = 64 - __builtin_clzll(size);
  return b < BUCKETS ? b : BUCKETS - 1;
}

/* Counts slot `slot` of the state part once more, listing it when it becomes non-zero. */
static void count_state(double *counts, int slot) {
  if (counts[slot]++ != 0) return;
  double n = counts[SLOT_ORDER_LEN];
  if (n < STATE_BITS + 2) {
    counts[SLOT_ORDER + (int)n] = slot;
    counts[SLOT_ORDER_LEN] = n + 1;
  }
}

static bool typed_array_of(napi_env env, napi_value v, napi_typedarray_type want, void **data,
                           size_t *length) {
  bool is = false;
  napi_typedarray_type type;
  if (napi_is_typedarray(env, v, &is) != napi_ok || !is) return false;
  if (napi_get_typedarray_info(env, v, &type, length, data, NULL, NULL) != napi_ok) return false;
  return type == want;
}

static napi_value js_tally_batch(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  void *bdata = NULL, *cdata = NULL, *odata = NULL;
  size_t blen = 0, clen = 0, olen = 0;
  if (argc < 3 || !typed_array_of(env, argv[0], napi_uint8_array, &bdata, &blen) ||
      !typed_array_of(env, argv[1], napi_float64_array, &cdata, &clen) ||
      !typed_array_of(env, argv[2], napi_uint32_array, &odata, &olen) || clen < COUNTS_LEN) {
    napi_throw_type_error(env, NULL,
                          "tallyBatch(batch: Uint8Array, counts: Float64Array(328), others: "
                          "Uint32Array)");
    return NULL;
  }
  const uint8_t *buf = bdata;
  double *counts = cdata;
  uint32_t *others = odata;
  if (blen < BATCH_HDR_SIZE || (u32_at(buf + 4) & 0xffff) != FORMAT_VERSION) {
    napi_throw_type_error(env, NULL, "tallyBatch: not a packed batch of format version 2");
    return NULL;
  }
  uint32_t count = u32_at(buf);
  if (olen < count) {
    napi_throw_range_error(env, NULL, "tallyBatch: `others` holds fewer slots than records");
    return NULL;
  }
  /* The record chain is checked whole first: a malformed batch counts nothing. */
  size_t off = BATCH_HDR_SIZE;
  for (uint32_t i = 0; i < count; i++) {
    if (off > blen || blen - off < REC_HDR_SIZE) goto malformed;
    uint32_t rec_len = u32_at(buf + off);
    if (rec_len < REC_HDR_SIZE || rec_len > blen - off || (rec_len & 7) != 0) goto malformed;
    off += rec_len;
  }
  uint32_t n_others = 0;
  off = BATCH_HDR_SIZE;
  for (uint32_t i = 0; i < count; i++) {
    const uint8_t *r = buf + off;
    uint32_t rec_len = u32_at(r);
    uint8_t type = r[56], flags = r[57];
    if (type == TYPE_DIRECTORY || (flags & REC_FLAG_ERROR) != 0) {
      others[n_others++] = (uint32_t)off;
    } else if (type == TYPE_FILE) {
      uint64_t size = u64_at(r + 8);
      counts[SLOT_FILES]++;
      counts[SLOT_BYTES] += (double)size;
      counts[SLOT_BUCKETS + bucket_of(size)]++;
      if (flags & REC_FLAG_HSM_UNREAD) count_state(counts, SLOT_UNREAD);
      else {
        uint32_t hsm_flags = (flags & REC_FLAG_HSM) ? u32_at(r + 68) : 0;
        count_state(counts, SLOT_FLAGS + (int)(hsm_flags & STATE_BITS));
      }
    } else if (type == TYPE_SYMLINK) {
      counts[SLOT_SYMLINKS]++;
    } else {
      counts[SLOT_OTHER]++;
    }
    off += rec_len;
  }
  napi_value out;
  napi_create_uint32(env, n_others, &out);
  return out;
malformed:
  napi_throw_type_error(env, NULL, "tallyBatch: a record runs past the end of the batch");
  return NULL;
}

napi_status hsmfleet_register_tally(napi_env env, napi_value exports) {
  napi_property_descriptor p[] = {
      {"tallyBatch", NULL, js_tally_batch, NULL, NULL, NULL, napi_enumerable, NULL},
  };
  return napi_define_properties(env, exports, 1, p);
}
