/*
 * hsmfleet_fs: HSM batches on the emulation backend, one threadpool job per batch of files.
 *
 * Every file is named by a path relative to a job root's directory fd and reached beneath it with
 * no symlink followed anywhere (beneath.c: openat2 RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS, or the
 * O_NOFOLLOW walk): a directory of the tree swapped for a symlink fails the file with ELOOP and the
 * bytes of the path resolved when it failed, never reaching outside the root (issue 14's class).
 *
 * fidBatch(rootFd, rels: Buffer[], flags): Promise<Buffer> opens every path O_PATH|O_NOFOLLOW (a
 * final symlink is the link itself, as lstat) and gives its FID text. On a Lustre client with
 * FID_LUSTRE set in `flags` the real FID (the file handle, as llapi_fd2fid reads it); otherwise, or
 * when the file system is not Lustre, the emulated FID @hsmfleet/core formatFid(fidForInode(dev,
 * ino)) writes: `[0x<FID_SEQ_NORMAL + ((dev & 0xffffffff) << 32 | ino >> 32)>:0x<ino & 0xffffffff>:0x0]`.
 * FID_REGULAR refuses anything but a regular file (NOT_REGULAR). One 48-byte record per path:
 * i32 errno (0: ok), u32 text length (on failure: the bytes of rel resolved), 40 bytes of text.
 *
 * releaseBatch(rootFd, rels: Buffer[], xattr, fallback): Promise<Buffer> runs, per file and without
 * ever returning to JS in between, what HsmEmulationBackend.release does: open the file beneath the
 * root O_PATH|O_NOFOLLOW and require a regular file (fstat), read struct hsm_attrs (getxattr
 * through /proc/self/fd/N, the magic link naming that very inode: fgetxattr refuses O_PATH fds),
 * detect a write since the recorded data version (a mismatch persists DIRTY and clears RELEASED),
 * check Lustre's release rules, then reopen that inode for writing through /proc/self/fd/N, drop
 * the data keeping the size (fallocate PUNCH_HOLE|KEEP_SIZE; ftruncate to 0 and back where punching
 * is not supported or leaves blocks), put atime/mtime back (futimens, full nanoseconds), fstat for
 * the new data version, fsetxattr the new state, close.
 *
 * The result is one packed Buffer of 32-byte records, one per path, in order (little-endian):
 *   u8 outcome (OUT_*), u8 op (OP_*, when OUT_ERROR), u16 bytes of rel resolved when it failed
 *   (capped at 65535), i32 errno (NOT_REGULAR below: "not a regular file"), then 24 bytes of struct
 *   hsm_attrs (the state the refusal was decided on, or the state written).
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

#include "beneath.h"
#include "hsmbatch.h"

#define HSM_SIZE 24
#define REC_SIZE 32
#define FID_REC_SIZE 48
#define FID_SEQ_NORMAL 0x200000400ULL
/* fidBatch flags. */
#define FID_FALLBACK 1 /* force the openat walk instead of openat2 */
#define FID_LUSTRE 2   /* the real Lustre FID where the file system gives one */
#define FID_REGULAR 4  /* regular files only */
/* Linux's FILEID_LUSTRE file handle type (struct lustre_file_handle: child FID, parent FID). */
#define FILEID_LUSTRE 0x97

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
  int rootfd;       /* the job root's directory fd (owned by JS, open while the job runs) */
  int flags;        /* fidBatch: FID_*; releaseBatch: 1 = force the openat walk */
  size_t rec_size;
  char *xattr;
  char *paths;      /* all paths, each NUL-terminated */
  size_t *offsets;  /* start of path i in `paths` */
  size_t *lens;     /* length of path i */
  uint32_t count;
  uint8_t *out;     /* count * rec_size */
} batch_work;

static void rw_free(batch_work *w) {
  if (!w) return;
  free(w->xattr);
  free(w->paths);
  free(w->offsets);
  free(w->lens);
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
static void wr16(uint8_t *p, uint16_t v) { memcpy(p, &v, 2); }
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

/* The magic link naming the inode `fd` has open (never a path walk). */
static void proc_fd_path(char *buf, size_t size, int fd) { snprintf(buf, size, "/proc/self/fd/%d", fd); }

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

static void release_one(int rootfd, const char *rel, size_t len, int fallback, const char *xattr,
                        uint8_t *rec) {
  uint8_t *hsm = rec + 8;
  int err = 0;
  size_t at = 0;
  int pfd = hsmfleet_open_beneath_at(rootfd, rel, len, O_PATH | O_NOFOLLOW, 0, fallback, &err, &at);
  if (pfd < 0) {
    wr16(rec + 2, at > 0xffff ? 0xffff : (uint16_t)at);
    fail(rec, OP_OPEN, err);
    return;
  }
  struct stat st;
  if (fstat(pfd, &st) != 0) {
    fail(rec, OP_FSTAT, errno);
    close(pfd);
    return;
  }
  if (!S_ISREG(st.st_mode)) {
    fail(rec, OP_FSTAT, NOT_REGULAR);
    close(pfd);
    return;
  }
  char self[64];
  proc_fd_path(self, sizeof self, pfd);
  ssize_t n = getxattr(self, xattr, hsm, HSM_SIZE);
  if (n < 0) {
    int e = errno;
    close(pfd);
    /* Absent, unsupported or larger than struct hsm_attrs: JS reads and words it. */
    if (e == ENODATA || e == ENOTSUP || e == ERANGE) {
      rec[0] = OUT_FALLBACK;
      return;
    }
    fail(rec, OP_GETXATTR, e);
    return;
  }
  if (n != HSM_SIZE) {
    close(pfd);
    rec[0] = OUT_FALLBACK;
    return;
  }
  uint32_t flags = rd32(hsm + 4);
  uint64_t version = rd64(hsm + 16);

  /* State read with write detection (HsmEmulationBackend.state). */
  if (version != 0 && (flags & HS_ARCHIVED) && !(flags & HS_DIRTY) &&
      data_version((uint64_t)st.st_size, mtime_ns(&st)) != version) {
    flags = (flags | HS_DIRTY) & ~HS_RELEASED;
    wr32(hsm + 4, flags);
    if (setxattr(self, xattr, hsm, HSM_SIZE, 0) != 0) {
      fail(rec, OP_SETXATTR, errno);
      close(pfd);
      return;
    }
  }

  /* canRelease (core hsm-transition.ts). */
  if ((flags & HS_NORELEASE) || (flags & HS_LOST) || !(flags & HS_ARCHIVED) || (flags & HS_DIRTY)) {
    close(pfd);
    rec[0] = OUT_REFUSED;
    return;
  }
  if (flags & HS_RELEASED) {
    close(pfd);
    rec[0] = OUT_ALREADY;
    return;
  }

  /* The very inode checked above, reopened for writing through its magic link. */
  int fd = open(self, O_WRONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
  int open_err = errno;
  close(pfd);
  if (fd < 0) {
    fail(rec, OP_OPEN, open_err);
    return;
  }
  enum op op = OP_FSTAT;
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

static void fid_one(int rootfd, const char *rel, size_t len, int flags, uint8_t *rec) {
  int err = 0;
  size_t at = 0;
  int fd = hsmfleet_open_beneath_at(rootfd, rel, len, O_PATH | O_NOFOLLOW, 0,
                                    (flags & FID_FALLBACK) != 0, &err, &at);
  if (fd < 0) {
    wr32(rec, (uint32_t)err);
    wr32(rec + 4, (uint32_t)at);
    return;
  }
  struct stat st;
  if (fstat(fd, &st) != 0) {
    wr32(rec, (uint32_t)errno);
    close(fd);
    return;
  }
  if ((flags & FID_REGULAR) && !S_ISREG(st.st_mode)) {
    wr32(rec, (uint32_t)NOT_REGULAR);
    close(fd);
    return;
  }
  int n = -1;
#ifdef __linux__
  if (flags & FID_LUSTRE) {
    union {
      struct file_handle h;
      unsigned char space[sizeof(struct file_handle) + 128];
    } handle;
    int mount_id;
    handle.h.handle_bytes = 128;
    if (name_to_handle_at(fd, "", &handle.h, &mount_id, AT_EMPTY_PATH) == 0 &&
        handle.h.handle_type == FILEID_LUSTRE && handle.h.handle_bytes >= 16) {
      /* struct lu_fid { u64 f_seq; u32 f_oid; u32 f_ver; } in host order, as the client wrote it. */
      uint64_t seq;
      uint32_t oid, ver;
      memcpy(&seq, handle.h.f_handle, 8);
      memcpy(&oid, handle.h.f_handle + 8, 4);
      memcpy(&ver, handle.h.f_handle + 12, 4);
      n = snprintf((char *)rec + 8, FID_REC_SIZE - 8, "[0x%llx:0x%x:0x%x]", (unsigned long long)seq,
                   oid, ver);
    }
  }
#endif
  close(fd);
  if (n < 0) {
    uint64_t dev = (uint64_t)st.st_dev, ino = (uint64_t)st.st_ino;
    uint64_t seq = FID_SEQ_NORMAL + (((dev & 0xffffffffULL) << 32) | (ino >> 32));
    n = snprintf((char *)rec + 8, FID_REC_SIZE - 8, "[0x%llx:0x%llx:0x0]", (unsigned long long)seq,
                 (unsigned long long)(ino & 0xffffffffULL));
  }
  wr32(rec + 4, (uint32_t)n);
}

static void rw_execute(napi_env env, void *data) {
  (void)env;
  batch_work *w = data;
  for (uint32_t i = 0; i < w->count; i++) {
    uint8_t *rec = w->out + (size_t)i * w->rec_size;
    if (w->fid) {
      fid_one(w->rootfd, w->paths + w->offsets[i], w->lens[i], w->flags, rec);
    } else {
      release_one(w->rootfd, w->paths + w->offsets[i], w->lens[i], w->flags, w->xattr, rec);
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
  size_t argc = 4;
  napi_value argv[4];
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok) return NULL;
  batch_work *w = calloc(1, sizeof *w);
  if (!w) {
    napi_throw_error(env, NULL, "hsmfleet_fs: out of memory");
    return NULL;
  }
  w->fid = fid;
  w->rec_size = fid ? FID_REC_SIZE : REC_SIZE;
  if (argc < (fid ? 3u : 4u))
    THROW(fid ? "fidBatch(rootFd, rels, flags)" : "releaseBatch(rootFd, rels, xattr, fallback)");
  int32_t rootfd = -1;
  if (napi_get_value_int32(env, argv[0], &rootfd) != napi_ok || rootfd < 0)
    THROW("rootFd must be an open directory fd");
  w->rootfd = rootfd;
  bool is_array = false;
  uint32_t count = 0;
  if (napi_is_array(env, argv[1], &is_array) != napi_ok || !is_array ||
      napi_get_array_length(env, argv[1], &count) != napi_ok)
    THROW("rels must be an array of Buffers");
  if (fid) {
    int32_t flags = 0;
    if (napi_get_value_int32(env, argv[2], &flags) != napi_ok) THROW("flags must be a number");
    w->flags = flags;
  } else {
    size_t xlen = 0;
    if (napi_get_value_string_utf8(env, argv[2], NULL, 0, &xlen) != napi_ok)
      THROW("xattr name must be a string");
    w->xattr = malloc(xlen + 1);
    if (!w->xattr) THROW("out of memory");
    napi_get_value_string_utf8(env, argv[2], w->xattr, xlen + 1, &xlen);
    if (xlen == 0 || strlen(w->xattr) != xlen) THROW("xattr name must be non-empty without NUL");
    bool fallback = false;
    if (napi_get_value_bool(env, argv[3], &fallback) != napi_ok) THROW("fallback must be a boolean");
    w->flags = fallback ? 1 : 0;
  }
  w->count = count;
  w->offsets = calloc(count ? count : 1, sizeof *w->offsets);
  w->lens = calloc(count ? count : 1, sizeof *w->lens);
  w->out = calloc(count ? count : 1, w->rec_size);
  if (!w->offsets || !w->lens || !w->out) THROW("out of memory");
  size_t total = 0, cap = 0;
  for (uint32_t i = 0; i < count; i++) {
    napi_value el;
    bool is_buf = false;
    void *p = NULL;
    size_t len = 0;
    if (napi_get_element(env, argv[1], i, &el) != napi_ok ||
        napi_is_buffer(env, el, &is_buf) != napi_ok || !is_buf ||
        napi_get_buffer_info(env, el, &p, &len) != napi_ok)
      THROW("rels must be an array of Buffers");
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
    w->lens[i] = len;
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

/* releaseBatch(rootFd: number, rels: Buffer[], xattr: string, fallback: boolean): Promise<Buffer> */
static napi_value js_release_batch(napi_env env, napi_callback_info info) {
  return start_batch(env, info, 0);
}

/* fidBatch(rootFd: number, rels: Buffer[], flags: number): Promise<Buffer> */
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
