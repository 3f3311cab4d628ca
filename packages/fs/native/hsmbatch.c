/*
 * hsmfleet_fs: HSM batches on the emulation backend, one threadpool job per batch of files.
 *
 * fidBatch(paths: Buffer[]): Promise<Buffer> lstats every path (never following a symlink) and
 * gives its emulated FID text, as @hsmfleet/core formatFid(fidForInode(dev, ino)) writes it:
 * `[0x<FID_SEQ_NORMAL + ((dev & 0xffffffff) << 32 | ino >> 32)>:0x<ino & 0xffffffff>:0x0]`.
 * One 48-byte record per path: i32 errno (0: ok), u32 text length, 40 bytes of text.
 *
 * releaseBatch(paths: Buffer[], xattr: string): Promise<Buffer> runs, per file and without ever
 * returning to JS in between, what HsmEmulationBackend.release does with nine separate libuv
 * requests: read struct hsm_attrs (lgetxattr), detect a write since the recorded data version
 * (lstat; a mismatch persists DIRTY and clears RELEASED), check Lustre's release rules, then
 * open(O_WRONLY|O_NOFOLLOW), fstat, drop the data keeping the size (fallocate PUNCH_HOLE|KEEP_SIZE;
 * ftruncate to 0 and back where punching is not supported or leaves blocks), put atime/mtime back
 * (futimens, full nanoseconds), fstat for the new data version, fsetxattr the new state, close.
 *
 * An empty path fails like the kernel says (ENOENT). The result is one packed Buffer of 32-byte records, one per path, in order (little-endian):
 *   u8 outcome (OUT_*), u8 op (OP_*, when OUT_ERROR), u16 reserved, i32 errno (0 with OP_* and
 *   EINVAL = "not a regular file"; NOT_REGULAR below), then 24 bytes of struct hsm_attrs (the state
 *   the refusal was decided on, or the state written).
 * OUT_FALLBACK (no xattr, a value of another size, xattrs unsupported) means nothing was changed
 * and JS takes the file through its own path, which words those cases exactly.
 * The rules and the data version (FNV-1a 64 over size and mtime in ns, never 0) mirror
 * @hsmfleet/core canRelease and @hsmfleet/fs dataVersion; the TS tests hold them together.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#ifndef NAPI_VERSION
#define NAPI_VERSION 8
#endif
#include <node_api.h>

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/xattr.h>
#include <unistd.h>
#ifdef __linux__
#include <linux/falloc.h>
#endif

#include "hsmbatch.h"

#define HSM_SIZE 24
#define REC_SIZE 32
#define FID_REC_SIZE 48
#define FID_SEQ_NORMAL 0x200000400ULL

#define HS_EXISTS 0x1u
#define HS_DIRTY 0x2u
#define HS_RELEASED 0x4u
#define HS_ARCHIVED 0x8u
#define HS_NORELEASE 0x10u
#define HS_LOST 0x40u

enum outcome { OUT_RELEASED = 0, OUT_ALREADY = 1, OUT_REFUSED = 2, OUT_ERROR = 3, OUT_FALLBACK = 4 };
enum op {
  OP_NONE = 0,
  OP_GETXATTR = 1,
  OP_LSTAT = 2,
  OP_SETXATTR = 3,
  OP_OPEN = 4,
  OP_FSTAT = 5,
  OP_FTRUNCATE = 6,
  OP_FUTIMES = 7,
  OP_CLOSE = 8,
};
/* errno value meaning "not a regular file" (reported as EINVAL with that message). */
#define NOT_REGULAR (-1)

typedef struct {
  napi_async_work aw;
  napi_deferred deferred;
  int fid;          /* 1: fidBatch, 0: releaseBatch */
  size_t rec_size;
  char *xattr;
  char *paths;      /* all paths, each NUL-terminated */
  size_t *offsets;  /* start of path i in `paths` */
  uint32_t count;
  uint8_t *out;     /* count * rec_size */
} batch_work;

static void rw_free(batch_work *w) {
  if (!w) return;
  free(w->xattr);
  free(w->paths);
  free(w->offsets);
  free(w->out);
  free(w);
}

static uint32_t rd32(const uint8_t *p) {
  uint32_t v;
  memcpy(&v, p, 4);
  return v;
}
static uint64_t rd64(const uint8_t *p) {
  uint64_t v;
  memcpy(&v, p, 8);
  return v;
}
static void wr32(uint8_t *p, uint32_t v) { memcpy(p, &v, 4); }
static void wr64(uint8_t *p, uint64_t v) { memcpy(p, &v, 8); }

/* dataVersion(size, mtimeNs) of hsm-backend.ts: FNV-1a 64 over the 8 LE bytes of each. */
static uint64_t data_version(uint64_t size, int64_t mtime_ns) {
  uint64_t h = 0xcbf29ce484222325ULL;
  uint64_t vals[2] = {size, (uint64_t)mtime_ns};
  for (int k = 0; k < 2; k++) {
    for (int i = 0; i < 8; i++) {
      h ^= (vals[k] >> (i * 8)) & 0xffu;
      h *= 0x100000001b3ULL;
    }
  }
  return h == 0 ? 1 : h;
}

static int64_t mtime_ns(const struct stat *st) {
  return (int64_t)st->st_mtim.tv_sec * 1000000000LL + (int64_t)st->st_mtim.tv_nsec;
}

static void fail(uint8_t *rec, enum op op, int err) {
  rec[0] = OUT_ERROR;
  rec[1] = (uint8_t)op;
  wr32(rec + 4, (uint32_t)err);
}

/* Drops the data of the open regular file `fd` of `size` bytes, keeping the size. */
static int drop_data(int fd, off_t size) {
  if (size == 0) return 0;
#if defined(__linux__) && defined(FALLOC_FL_PUNCH_HOLE)
  /* Up to a 1 MiB boundary past EOF (KEEP_SIZE allows it): the last partial block goes too. */
  off_t len = (size + (1 << 20) - 1) & ~(off_t)((1 << 20) - 1);
  if (fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0, len) == 0) {
    struct stat st;
    if (fstat(fd, &st) == 0 && st.st_blocks == 0) return 0;
    /* Blocks left (a file system that zeroes instead of freeing): truncate below. */
  } else if (errno != EOPNOTSUPP && errno != ENOSYS && errno != EINVAL) {
    return errno;
  }
#endif
  if (ftruncate(fd, 0) != 0 || ftruncate(fd, size) != 0) return errno;
  return 0;
}

static void release_one(const char *path, const char *xattr, uint8_t *rec) {
  uint8_t *hsm = rec + 8;
  ssize_t n = lgetxattr(path, xattr, hsm, HSM_SIZE);
  if (n < 0) {
    int e = errno;
    /* Absent, unsupported or larger than struct hsm_attrs: JS reads and words it. */
    if (e == ENODATA || e == ENOTSUP || e == ERANGE) {
      rec[0] = OUT_FALLBACK;
      return;
    }
    fail(rec, OP_GETXATTR, e);
    return;
  }
  if (n != HSM_SIZE) {
    rec[0] = OUT_FALLBACK;
    return;
  }
  uint32_t flags = rd32(hsm + 4);
  uint64_t version = rd64(hsm + 16);

  /* State read with write detection (HsmEmulationBackend.state). */
  if (version != 0 && (flags & HS_ARCHIVED) && !(flags & HS_DIRTY)) {
    struct stat st;
    if (lstat(path, &st) != 0) {
      fail(rec, OP_LSTAT, errno);
      return;
    }
    if (!S_ISREG(st.st_mode)) {
      fail(rec, OP_LSTAT, NOT_REGULAR);
      return;
    }
    if (data_version((uint64_t)st.st_size, mtime_ns(&st)) != version) {
      flags = (flags | HS_DIRTY) & ~HS_RELEASED;
      wr32(hsm + 4, flags);
      if (lsetxattr(path, xattr, hsm, HSM_SIZE, 0) != 0) {
        fail(rec, OP_SETXATTR, errno);
        return;
      }
    }
  }

  /* canRelease (core hsm-transition.ts). */
  if ((flags & HS_NORELEASE) || (flags & HS_LOST) || !(flags & HS_ARCHIVED) || (flags & HS_DIRTY)) {
    rec[0] = OUT_REFUSED;
    return;
  }
  if (flags & HS_RELEASED) {
    rec[0] = OUT_ALREADY;
    return;
  }

  int fd = open(path, O_WRONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) {
    fail(rec, OP_OPEN, errno);
    return;
  }
  struct stat st;
  enum op op = OP_FSTAT;
  int err = 0;
  if (fstat(fd, &st) != 0) {
    err = errno;
  } else if (!S_ISREG(st.st_mode)) {
    err = NOT_REGULAR;
  } else if ((op = OP_FTRUNCATE, err = drop_data(fd, st.st_size)) == 0) {
    struct timespec times[2] = {st.st_atim, st.st_mtim};
    struct stat after;
    if (futimens(fd, times) != 0) {
      op = OP_FUTIMES;
      err = errno;
    } else if (fstat(fd, &after) != 0) {
      op = OP_FSTAT;
      err = errno;
    } else {
      wr32(hsm + 4, flags | HS_RELEASED);
      wr64(hsm + 16, data_version((uint64_t)after.st_size, mtime_ns(&after)));
      if (fsetxattr(fd, xattr, hsm, HSM_SIZE, 0) != 0) {
        op = OP_SETXATTR;
        err = errno;
      }
    }
  }
  if (close(fd) != 0 && err == 0 && errno != EINTR) {
    op = OP_CLOSE;
    err = errno;
  }
  if (err != 0) {
    fail(rec, op, err);
    return;
  }
  rec[0] = OUT_RELEASED;
}

static void fid_one(const char *path, uint8_t *rec) {
  struct stat st;
  if (lstat(path, &st) != 0) {
    wr32(rec, (uint32_t)errno);
    return;
  }
  uint64_t dev = (uint64_t)st.st_dev, ino = (uint64_t)st.st_ino;
  uint64_t seq = FID_SEQ_NORMAL + (((dev & 0xffffffffULL) << 32) | (ino >> 32));
  int n = snprintf((char *)rec + 8, FID_REC_SIZE - 8, "[0x%llx:0x%llx:0x0]", (unsigned long long)seq,
                   (unsigned long long)(ino & 0xffffffffULL));
  wr32(rec + 4, (uint32_t)n);
}

static void rw_execute(napi_env env, void *data) {
  (void)env;
  batch_work *w = data;
  for (uint32_t i = 0; i < w->count; i++) {
    uint8_t *rec = w->out + (size_t)i * w->rec_size;
    if (w->fid) {
      fid_one(w->paths + w->offsets[i], rec);
    } else {
      release_one(w->paths + w->offsets[i], w->xattr, rec);
    }
  }
}

static void rw_free_buffer(napi_env env, void *data, void *hint) {
  (void)env;
  (void)hint;
  free(data);
}

static void rw_complete(napi_env env, napi_status status, void *data) {
  batch_work *w = data;
  napi_value result;
  if (status == napi_ok &&
      napi_create_external_buffer(env, (size_t)w->count * w->rec_size, w->out, rw_free_buffer, NULL,
                                  &result) == napi_ok) {
    w->out = NULL;
    napi_resolve_deferred(env, w->deferred, result);
  } else {
    napi_value ignored;
    bool pending = false;
    napi_is_exception_pending(env, &pending);
    if (pending) napi_get_and_clear_last_exception(env, &ignored);
    if (status == napi_ok &&
        napi_create_buffer_copy(env, (size_t)w->count * w->rec_size, w->out, NULL, &result) ==
            napi_ok) {
      napi_resolve_deferred(env, w->deferred, result);
    } else {
      napi_value msg, err;
      napi_create_string_utf8(env, "hsmfleet_fs: release batch failed", NAPI_AUTO_LENGTH, &msg);
      napi_create_error(env, NULL, msg, &err);
      napi_reject_deferred(env, w->deferred, err);
    }
  }
  napi_delete_async_work(env, w->aw);
  rw_free(w);
}

#define THROW(msg)                                \
  do {                                            \
    rw_free(w);                                   \
    napi_throw_type_error(env, NULL, (msg));      \
    return NULL;                                  \
  } while (0)

static napi_value start_batch(napi_env env, napi_callback_info info, int fid) {
  size_t argc = 2;
  napi_value argv[2];
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok) return NULL;
  batch_work *w = calloc(1, sizeof *w);
  if (!w) {
    napi_throw_error(env, NULL, "hsmfleet_fs: out of memory");
    return NULL;
  }
  w->fid = fid;
  w->rec_size = fid ? FID_REC_SIZE : REC_SIZE;
  if (argc < (fid ? 1u : 2u)) THROW(fid ? "fidBatch(paths)" : "releaseBatch(paths, xattr)");
  bool is_array = false;
  uint32_t count = 0;
  if (napi_is_array(env, argv[0], &is_array) != napi_ok || !is_array ||
      napi_get_array_length(env, argv[0], &count) != napi_ok)
    THROW("paths must be an array of Buffers");
  if (!fid) {
    size_t xlen = 0;
    if (napi_get_value_string_utf8(env, argv[1], NULL, 0, &xlen) != napi_ok)
      THROW("xattr name must be a string");
    w->xattr = malloc(xlen + 1);
    if (!w->xattr) THROW("out of memory");
    napi_get_value_string_utf8(env, argv[1], w->xattr, xlen + 1, &xlen);
    if (xlen == 0 || strlen(w->xattr) != xlen) THROW("xattr name must be non-empty without NUL");
  }
  w->count = count;
  w->offsets = calloc(count ? count : 1, sizeof *w->offsets);
  w->out = calloc(count ? count : 1, w->rec_size);
  if (!w->offsets || !w->out) THROW("out of memory");
  size_t total = 0, cap = 0;
  for (uint32_t i = 0; i < count; i++) {
    napi_value el;
    bool is_buf = false;
    void *p = NULL;
    size_t len = 0;
    if (napi_get_element(env, argv[0], i, &el) != napi_ok ||
        napi_is_buffer(env, el, &is_buf) != napi_ok || !is_buf ||
        napi_get_buffer_info(env, el, &p, &len) != napi_ok)
      THROW("paths must be an array of Buffers");
    if (len > 0 && memchr(p, 0, len) != NULL) THROW("a path contains a NUL byte");
    if (total + len + 1 > cap) {
      size_t ncap = cap ? cap * 2 : 4096;
      while (ncap < total + len + 1) ncap *= 2;
      char *np = realloc(w->paths, ncap);
      if (!np) THROW("out of memory");
      w->paths = np;
      cap = ncap;
    }
    memcpy(w->paths + total, p, len);
    w->paths[total + len] = 0;
    w->offsets[i] = total;
    total += len + 1;
  }
  napi_value promise, name;
  if (napi_create_promise(env, &w->deferred, &promise) != napi_ok) THROW("cannot create a promise");
  napi_create_string_utf8(env, fid ? "hsmfleet_fs.fidBatch" : "hsmfleet_fs.releaseBatch",
                          NAPI_AUTO_LENGTH, &name);
  if (napi_create_async_work(env, NULL, name, rw_execute, rw_complete, w, &w->aw) != napi_ok ||
      napi_queue_async_work(env, w->aw) != napi_ok) {
    napi_value msg, err;
    napi_create_string_utf8(env, "hsmfleet_fs: cannot queue work", NAPI_AUTO_LENGTH, &msg);
    napi_create_error(env, NULL, msg, &err);
    napi_reject_deferred(env, w->deferred, err);
    rw_free(w);
  }
  return promise;
}

/* releaseBatch(paths: Buffer[], xattr: string): Promise<Buffer> */
static napi_value js_release_batch(napi_env env, napi_callback_info info) {
  return start_batch(env, info, 0);
}

/* fidBatch(paths: Buffer[]): Promise<Buffer> */
static napi_value js_fid_batch(napi_env env, napi_callback_info info) {
  return start_batch(env, info, 1);
}

napi_status hsmfleet_batch_init(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
      {"releaseBatch", NULL, js_release_batch, NULL, NULL, NULL, napi_enumerable, NULL},
      {"fidBatch", NULL, js_fid_batch, NULL, NULL, NULL, napi_enumerable, NULL},
  };
  return napi_define_properties(env, exports, 2, props);
}
