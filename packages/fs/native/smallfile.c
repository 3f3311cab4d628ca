/*
 * smallfile: a whole small file in ONE libuv threadpool job, beneath a job root fd (issue 17,
 * the download direction's small files). What used to be ~10 file-system calls in as many jobs
 * on the event loop's side (open beneath, reopen through /proc, close, write, fstat, lstat,
 * fchown, fchmod, futimens, get/set xattr, close) is one job:
 *
 *   open rel beneath rootFd (openat2 RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS, or the component walk
 *   with O_NOFOLLOW: beneath.c's hsmfleet_open_beneath_at; O_CREAT|O_EXCL for a new file, else
 *   an existing regular file O_RDWR|O_NONBLOCK), then through that fd only:
 *   [verify the MD5 of `data` against the expected one: a mismatch writes nothing]
 *   [pwrite `data` at 0 (sparse: all-zero 4 KiB blocks left as holes) + ftruncate to its length]
 *   [ftruncate to a size]  [fchown]  [fchmod]  [futimens]  [fsetxattr of each given pair]
 *   [import record "pending X" -> "done X"]  [HSM state read-modify-write: "exists archived"]
 *   close. SF_XATTRS_FIRST: the given xattrs go right after the open (and its checks), before
 *   the MD5 check, the write and the cut (a fresh stub's record, then its size: one job).
 *
 * smallFile(rootFd, rel: Buffer, data: Buffer|null, md5: Buffer|null, out: Buffer,
 *           names: [importXattr, hsmXattr, pendingXattr?, pendingJob?] (strings, "" = none) | null,
 *           xattrs: Array<[string, Buffer]>|null): Promise<number>
 *   out: >= 208 bytes: [0,16) the MD5 of data (SF_HASH or SF_VERIFY), [16,80) the fstat record
 *        of beneath.c (SF_STAT) taken right after the open. With SF_SAME_INODE, [0,16) holds on
 *        input the u64 dev and ino the opened file must have (else ESTALE, nothing done).
 *        [80,208) holds on input the numbers, 16 f64 LE (unused ones 0): [fallback, flags (SF_*),
 *        createMode, uid, gid, mode, mtimeSec, mtimeNsec, size, archiveId, hsmCompat,
 *        hsmSetFlags, hsmKeepMask] — in the buffer the job needs anyway, not a JS array read
 *        element by element (issue 17: the arguments of a batch are read on the event loop).
 *   SF_KEEP_TIMES (restore): the atime and mtime the open found are put back after the write.
 *   SF_PENDING_RESTORE (restore, with SF_KEEP_TIMES): after the MD5 check, before the write, xattr
 *   names[2] = "pending <names[3]> <mtime ms the open found>" (the restore's record of the mtime to
 *   put back, for a redelivered item; the given xattrs then replace it).
 *
 * inspectFile (below): the read side of the same idea — open, fstat, several fgetxattr, close.
 *   Resolves 0, or 1 when SF_VERIFY found another MD5 (nothing written, the file unchanged but
 *   for a creation). Rejects with errno, syscall and `at` (bytes of rel resolved when the open
 *   failed; the length of rel for a failure on the open file), as beneath() does.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <node_api.h>

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "beneath.h"
#include "pwrite-runs.h"

enum {
  SF_CREATE = 1,      /* O_CREAT|O_EXCL|O_WRONLY with nums[2]; else an existing regular file */
  SF_WRITE = 2,       /* data at 0, then ftruncate to its length */
  SF_SPARSE = 4,      /* all-zero 4 KiB blocks are not written */
  SF_VERIFY = 8,      /* MD5 of data must equal md5 before anything is written */
  SF_HASH = 16,       /* MD5 of data into out[0,16) */
  SF_TRUNCATE = 32,   /* ftruncate to nums[8] (without SF_WRITE) */
  SF_CHOWN = 64,      /* fchown nums[3], nums[4] */
  SF_CHMOD = 128,     /* fchmod nums[5] & 07777 */
  SF_TIMES = 256,     /* futimens mtime (and atime) = nums[6].nums[7] */
  SF_IMPORT_DONE = 512, /* xattr names[0]: "pending X" becomes "done X" */
  SF_HSM_ARCHIVED = 1024, /* xattr names[1]: flags = nums[11] | (old & nums[12]), id nums[9] */
  SF_STAT = 2048,     /* fstat after the open into out[16,80) */
  SF_SAME_INODE = 4096, /* out[0,16) holds u64 dev, u64 ino on input: the file opened must be it */
  SF_KEEP_TIMES = 8192, /* after the write: atime and mtime put back as the open found them */
  SF_PENDING_RESTORE = 16384, /* before the write: names[2] = "pending <names[3]> <mtime ms>" */
  SF_XATTRS_FIRST = 32768, /* the given xattrs right after the open, before the write or cut */
};

#define SF_OUT 80
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "smallFile reads its numbers from `out` as little-endian f64"
#endif
#define SF_NUMS 16
#define SF_OUT_IN (SF_OUT + 8 * SF_NUMS)
#define HSM_ATTRS 24

typedef struct {
  char *name;
  char *value;
  size_t len;
} sf_xattr;

typedef struct {
  napi_async_work aw;
  napi_deferred deferred;
  napi_ref data_ref;
  napi_ref out_ref;
  int rootfd;
  char *rel;
  size_t rel_len;
  const uint8_t *data;
  size_t data_len;
  double nums[16];
  uint8_t expect[16];
  int has_expect;
  uint8_t *out;
  char *import_name;
  char *hsm_name;
  char *pending_name;
  char *pending_job;
  sf_xattr *xattrs;
  size_t nxattrs;
  /* results */
  int result;
  int err;
  const char *syscall;
  size_t at;
} sf_work;

static void sf_free(sf_work *w) {
  if (!w) return;
  free(w->rel);
  free(w->import_name);
  free(w->hsm_name);
  free(w->pending_name);
  free(w->pending_job);
  for (size_t i = 0; i < w->nxattrs; i++) {
    free(w->xattrs[i].name);
    free(w->xattrs[i].value);
  }
  free(w->xattrs);
  free(w);
}

static int sf_fail(sf_work *w, int err, const char *sc) {
  w->err = err;
  w->syscall = sc;
  w->at = w->rel_len;
  return 0;
}

/* data at 0 (pwrite-runs.c; sparse: zero blocks left as holes). */
static int sf_write_data(sf_work *w, int fd, int sparse) {
  int err = hsmfleet_pwrite_data(fd, w->data, w->data_len, 0, sparse);
  return err == 0 ? 1 : sf_fail(w, err, "write");
}

/* "pending X" -> "done X" in xattr `name`; nothing when absent or already something else. */
static int sf_import_done(sf_work *w, int fd) {
  char buf[4096];
  ssize_t n = fgetxattr(fd, w->import_name, buf, sizeof buf);
  if (n < 0) {
    if (errno == ENODATA) return 1;
    return sf_fail(w, errno, "fgetxattr");
  }
  static const char pending[] = "pending ";
  size_t pl = sizeof pending - 1;
  if ((size_t)n < pl || memcmp(buf, pending, pl) != 0) return 1;
  char done[4096];
  memcpy(done, "done ", 5);
  memcpy(done + 5, buf + pl, (size_t)n - pl);
  if (fsetxattr(fd, w->import_name, done, 5 + (size_t)n - pl, 0) != 0)
    return sf_fail(w, errno, "fsetxattr");
  return 1;
}

/* The emulated HSM state (hsm_attrs: u32 compat, u32 flags, u64 archive id, u64 version, LE). */
static int sf_hsm_archived(sf_work *w, int fd) {
  uint8_t old[64];
  ssize_t n = fgetxattr(fd, w->hsm_name, old, sizeof old);
  if (n < 0 && errno != ENODATA && errno != ERANGE) return sf_fail(w, errno, "fgetxattr");
  uint32_t compat = (uint32_t)w->nums[10], flags = (uint32_t)w->nums[11], oldflags = 0;
  uint64_t id = (uint64_t)w->nums[9], version = 0;
  if (n >= HSM_ATTRS) {
    memcpy(&compat, old, 4);
    memcpy(&oldflags, old + 4, 4);
    memcpy(&version, old + 16, 8);
  }
  flags |= oldflags & (uint32_t)w->nums[12];
  uint8_t v[HSM_ATTRS];
  memcpy(v, &compat, 4);
  memcpy(v + 4, &flags, 4);
  memcpy(v + 8, &id, 8);
  memcpy(v + 16, &version, 8);
  if (fsetxattr(fd, w->hsm_name, v, HSM_ATTRS, 0) != 0) return sf_fail(w, errno, "fsetxattr");
  return 1;
}

/*
 * The restore's "pending <job> <mtime ms>" record (worker archive-location.ts formatPendingRestore),
 * written before the data so that a redelivered item finds the mtime to put back. The mtime in ms
 * as JavaScript prints sec * 1000 + nsec / 1e6: an integer, or up to 6 decimals without trailing
 * zeros.
 */
static int sf_pending_restore(sf_work *w, int fd, const struct stat *st) {
  long long ns = (long long)st->st_mtim.tv_sec * 1000000000LL + (long long)st->st_mtim.tv_nsec;
  const char *sign = ns < 0 ? "-" : "";
  unsigned long long a = ns < 0 ? (unsigned long long)(-ns) : (unsigned long long)ns;
  char frac[16] = "";
  unsigned long long f = a % 1000000ULL;
  if (f != 0) {
    snprintf(frac, sizeof frac, ".%06llu", f);
    size_t k = strlen(frac);
    while (k > 1 && frac[k - 1] == '0') frac[--k] = 0;
  }
  char v[4096];
  int n = snprintf(v, sizeof v, "pending %s %s%llu%s", w->pending_job, sign, a / 1000000ULL, frac);
  if (n < 0 || (size_t)n >= sizeof v) return sf_fail(w, ERANGE, "fsetxattr");
  if (fsetxattr(fd, w->pending_name, v, (size_t)n, 0) != 0) return sf_fail(w, errno, "fsetxattr");
  return 1;
}

/* The given xattrs, in order. */
static int sf_set_xattrs(sf_work *w, int fd) {
  for (size_t i = 0; i < w->nxattrs; i++) {
    if (fsetxattr(fd, w->xattrs[i].name, w->xattrs[i].value, w->xattrs[i].len, 0) != 0)
      return sf_fail(w, errno, "fsetxattr");
  }
  return 1;
}

static int sf_steps(sf_work *w, int fd, int flags) {
  /* An existing entry must be a regular file (a FIFO or device opens too, O_NONBLOCK). */
  struct stat st;
  memset(&st, 0, sizeof st);
  if ((flags & (SF_STAT | SF_SAME_INODE | SF_KEEP_TIMES)) || !(flags & SF_CREATE)) {
    if (fstat(fd, &st) != 0) return sf_fail(w, errno, "fstat");
    hsmfleet_put_stat(w->out + 16, &st);
    if (!S_ISREG(st.st_mode)) return sf_fail(w, EINVAL, "open");
    if (flags & SF_SAME_INODE) {
      uint64_t dev, ino;
      memcpy(&dev, w->out, 8);
      memcpy(&ino, w->out + 8, 8);
      if ((uint64_t)st.st_dev != dev || (uint64_t)st.st_ino != ino) return sf_fail(w, ESTALE, "open");
    }
  }
  if ((flags & SF_XATTRS_FIRST) && !sf_set_xattrs(w, fd)) return 0;
  if (flags & (SF_HASH | SF_VERIFY)) {
    unsigned int len = 0;
    if (EVP_Digest(w->data, w->data_len, w->out, &len, EVP_md5(), NULL) != 1 || len != 16)
      return sf_fail(w, EIO, "md5");
    if ((flags & SF_VERIFY) && w->has_expect && memcmp(w->out, w->expect, 16) != 0) {
      w->result = 1;
      return 0;
    }
  }
  if ((flags & SF_PENDING_RESTORE) && !sf_pending_restore(w, fd, &st)) return 0;
  if (flags & SF_WRITE) {
    if (!sf_write_data(w, fd, flags & SF_SPARSE)) return 0;
    /* A file the open found at exactly this size (the walk sized it) needs no cut. */
    int sized = !(flags & SF_CREATE) && (uint64_t)st.st_size == (uint64_t)w->data_len;
    while (!sized && ftruncate(fd, (off_t)w->data_len) != 0) {
      if (errno != EINTR) return sf_fail(w, errno, "ftruncate");
    }
  } else if (flags & SF_TRUNCATE) {
    while (ftruncate(fd, (off_t)w->nums[8]) != 0) {
      if (errno != EINTR) return sf_fail(w, errno, "ftruncate");
    }
  }
  /*
   * Owner first: chown clears setuid/setgid, which the mode then sets. With the fstat of the open
   * (every job on an existing file takes it), an owner that is already the wanted one is not set
   * again, and then neither is a mode that already is the wanted one — unless that mode has
   * setuid/setgid, which the write above may have cleared (a writer without CAP_FSETID): a file
   * the walk created as root and the download finishes as root:root skips the fchown (issue 17).
   */
  mode_t want_mode = (mode_t)w->nums[5] & 07777;
  int have_stat = (flags & (SF_STAT | SF_SAME_INODE | SF_KEEP_TIMES)) || !(flags & SF_CREATE);
  int owner_set = have_stat && st.st_uid == (uid_t)w->nums[3] && st.st_gid == (gid_t)w->nums[4];
  int mode_set = owner_set && (st.st_mode & 07777) == want_mode && !(want_mode & 06000);
  if ((flags & SF_CHOWN) && !owner_set && fchown(fd, (uid_t)w->nums[3], (gid_t)w->nums[4]) != 0)
    return sf_fail(w, errno, "fchown");
  if ((flags & SF_CHMOD) && !mode_set && fchmod(fd, want_mode) != 0)
    return sf_fail(w, errno, "fchmod");
  if (flags & SF_TIMES) {
    struct timespec ts[2];
    ts[0].tv_sec = ts[1].tv_sec = (time_t)w->nums[6];
    ts[0].tv_nsec = ts[1].tv_nsec = (long)w->nums[7];
    if (futimens(fd, ts) != 0) return sf_fail(w, errno, "futimens");
  } else if (flags & SF_KEEP_TIMES) {
    struct timespec ts[2] = {st.st_atim, st.st_mtim};
    if (futimens(fd, ts) != 0) return sf_fail(w, errno, "futimens");
  }
  if (!(flags & SF_XATTRS_FIRST) && !sf_set_xattrs(w, fd)) return 0;
  if ((flags & SF_IMPORT_DONE) && w->import_name && !sf_import_done(w, fd)) return 0;
  if ((flags & SF_HSM_ARCHIVED) && w->hsm_name && !sf_hsm_archived(w, fd)) return 0;
  return 1;
}

static void sf_execute(napi_env env, void *data) {
  (void)env;
  sf_work *w = data;
  int flags = (int)w->nums[1];
  int oflags = (flags & SF_CREATE) ? (O_CREAT | O_EXCL | O_WRONLY | O_NOCTTY)
                                   : (O_RDWR | O_NONBLOCK | O_NOCTTY);
  int err = 0;
  size_t at = 0;
  int fd = hsmfleet_open_beneath_at(w->rootfd, w->rel, w->rel_len, oflags, (int)w->nums[2],
                                    w->nums[0] != 0, &err, &at);
  if (fd < 0) {
    w->err = err;
    w->syscall = "openat";
    w->at = at;
    return;
  }
  sf_steps(w, fd, flags);
  if (close(fd) != 0 && w->err == 0 && w->result == 0 && errno != EINTR)
    sf_fail(w, errno, "close");
}

/* The rejection of a failed file: an Error with errno, syscall and at. */
/* The error a job rejects with: "<syscall>: <strerror>", with errno, syscall and `at`. */
static napi_value sf_error(napi_env env, int errnum, const char *syscall, size_t at) {
  char text[160];
  snprintf(text, sizeof text, "%s: %s", syscall, strerror(errnum));
  napi_value msg, err, v;
  napi_create_string_utf8(env, text, NAPI_AUTO_LENGTH, &msg);
  napi_create_error(env, NULL, msg, &err);
  napi_create_int32(env, errnum, &v);
  napi_set_named_property(env, err, "errno", v);
  napi_create_string_utf8(env, syscall, NAPI_AUTO_LENGTH, &v);
  napi_set_named_property(env, err, "syscall", v);
  napi_create_uint32(env, (uint32_t)at, &v);
  napi_set_named_property(env, err, "at", v);
  return err;
}

static void sf_complete(napi_env env, napi_status status, void *data) {
  sf_work *w = data;
  if (w->data_ref) napi_delete_reference(env, w->data_ref);
  if (w->out_ref) napi_delete_reference(env, w->out_ref);
  if (status != napi_ok) {
    w->err = ECANCELED;
    w->syscall = "smallFile";
  }
  if (w->err == 0) {
    napi_value v;
    napi_create_int32(env, w->result, &v);
    napi_resolve_deferred(env, w->deferred, v);
  } else {
    napi_reject_deferred(env, w->deferred, sf_error(env, w->err, w->syscall, w->at));
  }
  napi_delete_async_work(env, w->aw);
  sf_free(w);
}

static char *sf_string(napi_env env, napi_value v) {
  napi_valuetype t;
  if (napi_typeof(env, v, &t) != napi_ok || t != napi_string) return NULL;
  size_t n = 0;
  napi_get_value_string_utf8(env, v, NULL, 0, &n);
  if (n == 0) return NULL;
  char *s = malloc(n + 1);
  if (!s) return NULL;
  napi_get_value_string_utf8(env, v, s, n + 1, &n);
  return s;
}

static int sf_buffer(napi_env env, napi_value v, void **p, size_t *n) {
  bool isbuf = false;
  return napi_is_buffer(env, v, &isbuf) == napi_ok && isbuf &&
         napi_get_buffer_info(env, v, p, n) == napi_ok;
}

static int sf_is_null(napi_env env, napi_value v) {
  napi_valuetype t;
  napi_typeof(env, v, &t);
  return t == napi_null || t == napi_undefined;
}

static napi_value sf_bad(napi_env env, sf_work *w, const char *what) {
  if (w->data_ref) napi_delete_reference(env, w->data_ref);
  if (w->out_ref) napi_delete_reference(env, w->out_ref);
  sf_free(w);
  napi_throw_type_error(env, NULL, what);
  return NULL;
}

/* The arguments of one file (argv[0..8), as smallFile takes them) into w; 0 + *why when bad. */
static int sf_parse(napi_env env, napi_value *argv, sf_work *w, const char **why) {
  int32_t rootfd = -1;
  void *p = NULL;
  size_t n = 0;
  if (napi_get_value_int32(env, argv[0], &rootfd) != napi_ok || rootfd < 0)
    {
      *why = "smallFile: rootFd must be a descriptor";
      return 0;
    }
  w->rootfd = rootfd;
  if (!sf_buffer(env, argv[1], &p, &n) || n == 0 || memchr(p, 0, n) != NULL)
    {
      *why = "smallFile: rel must be a non-empty Buffer without NUL";
      return 0;
    }
  w->rel = malloc(n + 1);
  if (!w->rel) {
      *why = "smallFile: out of memory";
      return 0;
    }
  memcpy(w->rel, p, n);
  w->rel[n] = 0;
  w->rel_len = n;
  if (!sf_is_null(env, argv[2])) {
    if (!sf_buffer(env, argv[2], &p, &n)) {
      *why = "smallFile: data must be a Buffer";
      return 0;
    }
    w->data = p;
    w->data_len = n;
    napi_create_reference(env, argv[2], 1, &w->data_ref);
  }
  bool isarr = false;
  uint32_t count = 0;
  if (!sf_is_null(env, argv[3])) {
    if (!sf_buffer(env, argv[3], &p, &n) || n != 16)
      {
      *why = "smallFile: md5 must be a 16-byte Buffer";
      return 0;
    }
    memcpy(w->expect, p, 16);
    w->has_expect = 1;
  }
  if (!sf_buffer(env, argv[4], &p, &n) || n < SF_OUT_IN)
    {
      *why = "smallFile: out must be a Buffer of at least 208 bytes";
      return 0;
    }
  w->out = p;
  memcpy(w->nums, w->out + SF_OUT, sizeof w->nums);
  napi_create_reference(env, argv[4], 1, &w->out_ref);
  if (napi_is_array(env, argv[5], &isarr) == napi_ok && isarr) {
    napi_value e;
    if (napi_get_element(env, argv[5], 0, &e) == napi_ok) w->import_name = sf_string(env, e);
    if (napi_get_element(env, argv[5], 1, &e) == napi_ok) w->hsm_name = sf_string(env, e);
    uint32_t names = 0;
    napi_get_array_length(env, argv[5], &names);
    if (names >= 4) {
      if (napi_get_element(env, argv[5], 2, &e) == napi_ok) w->pending_name = sf_string(env, e);
      if (napi_get_element(env, argv[5], 3, &e) == napi_ok) w->pending_job = sf_string(env, e);
    }
  }
  if (!sf_is_null(env, argv[6])) {
    if (napi_is_array(env, argv[6], &isarr) != napi_ok || !isarr ||
        napi_get_array_length(env, argv[6], &count) != napi_ok || count > 16)
      {
      *why = "smallFile: xattrs must be an array of at most 16 [name, Buffer]";
      return 0;
    }
    w->xattrs = calloc(count ? count : 1, sizeof *w->xattrs);
    if (!w->xattrs) {
      *why = "smallFile: out of memory";
      return 0;
    }
    for (uint32_t i = 0; i < count; i++) {
      napi_value pair, nv, vv;
      napi_get_element(env, argv[6], i, &pair);
      napi_get_element(env, pair, 0, &nv);
      napi_get_element(env, pair, 1, &vv);
      sf_xattr *x = &w->xattrs[w->nxattrs++];
      x->name = sf_string(env, nv);
      if (!x->name || !sf_buffer(env, vv, &p, &n))
        {
      *why = "smallFile: an xattr is not [name, Buffer]";
      return 0;
    }
      x->value = malloc(n ? n : 1);
      if (!x->value) {
      *why = "smallFile: out of memory";
      return 0;
    }
      memcpy(x->value, p, n);
      x->len = n;
    }
  }
  int flags = (int)w->nums[1];
  if ((flags & (SF_WRITE | SF_HASH | SF_VERIFY)) && !w->data_ref)
    {
      *why = "smallFile: data missing";
      return 0;
    }
  if ((flags & SF_PENDING_RESTORE) &&
      (!w->pending_name || !w->pending_name[0] || !w->pending_job || !w->pending_job[0] ||
       !(flags & SF_KEEP_TIMES))) {
      *why = "smallFile: a pending restore record needs names[2], names[3] and keep-times";
      return 0;
  }
  if ((flags & SF_VERIFY) && !w->has_expect) {
      *why = "smallFile: md5 missing";
      return 0;
    }
  return 1;
}

static napi_value js_small_file(napi_env env, napi_callback_info info) {
  size_t argc = 7;
  napi_value argv[7];
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok) return NULL;
  sf_work *w = calloc(1, sizeof *w);
  if (!w) {
    napi_throw_error(env, NULL, "hsmfleet_fs: out of memory");
    return NULL;
  }
  if (argc < 7) return sf_bad(env, w, "smallFile(rootFd, rel, data, md5, out, names, xattrs)");
  const char *why = NULL;
  if (!sf_parse(env, argv, w, &why)) return sf_bad(env, w, why);
  napi_value promise, name;
  napi_create_promise(env, &w->deferred, &promise);
  napi_create_string_utf8(env, "hsmfleet_fs.smallFile", NAPI_AUTO_LENGTH, &name);
  if (napi_create_async_work(env, NULL, name, sf_execute, sf_complete, w, &w->aw) != napi_ok ||
      napi_queue_async_work(env, w->aw) != napi_ok) {
    napi_value msg, err;
    napi_create_string_utf8(env, "hsmfleet_fs: cannot queue smallFile", NAPI_AUTO_LENGTH, &msg);
    napi_create_error(env, NULL, msg, &err);
    napi_reject_deferred(env, w->deferred, err);
    if (w->data_ref) napi_delete_reference(env, w->data_ref);
    if (w->out_ref) napi_delete_reference(env, w->out_ref);
    sf_free(w);
  }
  return promise;
}

#define SF_BATCH_MAX 256

/*
 * One batch (smallFiles, inspectFiles): 1 to 256 items, each an array of `arity` arguments parsed
 * as the single call parses them, run one after the other in one threadpool job; the promise
 * resolves with each item's result or the Error it would have rejected with. What differs between
 * the two is this table.
 */
typedef struct {
  const char *name;     /* "smallFiles": the async resource name's tail, the cancelled syscall */
  const char *usage;    /* the TypeError of a bad items array */
  const char *bad_item; /* the TypeError of an item that is not an array of `arity` */
  uint32_t arity;
  size_t size;          /* of one item's work struct (calloc'ed, then parse) */
  int (*parse)(napi_env env, napi_value *argv, void *w, const char **why);
  void (*execute)(napi_env env, void *w);
  /* the item's value in the resolved array; `cancelled`: the job did not run */
  napi_value (*result)(napi_env env, void *w, int cancelled);
  void (*release)(napi_env env, void *w); /* its references and memory */
} batch_kind;

typedef struct {
  napi_async_work aw;
  napi_deferred deferred;
  const batch_kind *kind;
  void **items;
  size_t n;
} batch;

static void batch_free(napi_env env, batch *b) {
  for (size_t i = 0; i < b->n; i++) b->kind->release(env, b->items[i]);
  free(b->items);
  free(b);
}

static void batch_execute(napi_env env, void *data) {
  batch *b = data;
  for (size_t i = 0; i < b->n; i++) b->kind->execute(env, b->items[i]);
}

static void batch_complete(napi_env env, napi_status status, void *data) {
  batch *b = data;
  napi_value arr;
  napi_create_array_with_length(env, b->n, &arr);
  for (size_t i = 0; i < b->n; i++)
    napi_set_element(env, arr, (uint32_t)i, b->kind->result(env, b->items[i], status != napi_ok));
  napi_resolve_deferred(env, b->deferred, arr);
  napi_delete_async_work(env, b->aw);
  batch_free(env, b);
}

static napi_value batch_start(napi_env env, napi_callback_info info, const batch_kind *k) {
  size_t argc = 1;
  napi_value argv[1];
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok) return NULL;
  bool isarr = false;
  uint32_t count = 0;
  if (argc < 1 || napi_is_array(env, argv[0], &isarr) != napi_ok || !isarr ||
      napi_get_array_length(env, argv[0], &count) != napi_ok || count == 0 ||
      count > SF_BATCH_MAX) {
    napi_throw_type_error(env, NULL, k->usage);
    return NULL;
  }
  batch *b = calloc(1, sizeof *b);
  if (b) b->items = calloc(count, sizeof *b->items);
  if (!b || !b->items) {
    free(b);
    napi_throw_error(env, NULL, "hsmfleet_fs: out of memory");
    return NULL;
  }
  b->kind = k;
  for (uint32_t i = 0; i < count; i++) {
    napi_value item, a[8];
    bool ok = false;
    uint32_t len = 0;
    napi_get_element(env, argv[0], i, &item);
    if (napi_is_array(env, item, &ok) == napi_ok && ok &&
        napi_get_array_length(env, item, &len) == napi_ok && len == k->arity) {
      for (uint32_t j = 0; j < k->arity; j++) napi_get_element(env, item, j, &a[j]);
    } else {
      ok = false;
    }
    void *w = calloc(1, k->size);
    if (w) b->items[b->n++] = w;
    const char *why = k->bad_item;
    if (!w || !ok || !k->parse(env, a, w, &why)) {
      batch_free(env, b);
      napi_throw_type_error(env, NULL, w ? why : "hsmfleet_fs: out of memory");
      return NULL;
    }
  }
  napi_value promise, name, msg, err;
  char text[64];
  napi_create_promise(env, &b->deferred, &promise);
  snprintf(text, sizeof text, "hsmfleet_fs.%s", k->name);
  napi_create_string_utf8(env, text, NAPI_AUTO_LENGTH, &name);
  if (napi_create_async_work(env, NULL, name, batch_execute, batch_complete, b, &b->aw) != napi_ok ||
      napi_queue_async_work(env, b->aw) != napi_ok) {
    snprintf(text, sizeof text, "hsmfleet_fs: cannot queue %s", k->name);
    napi_create_string_utf8(env, text, NAPI_AUTO_LENGTH, &msg);
    napi_create_error(env, NULL, msg, &err);
    napi_reject_deferred(env, b->deferred, err);
    batch_free(env, b);
  }
  return promise;
}

/*
 * smallFiles(items: Array<[rootFd, rel, data, md5, out, names, xattrs]>):
 *   Promise<Array<number | Error>>
 *   The same for several files in ONE threadpool job, one after the other (issue 17: a job's
 *   round trip — the pool's wake-up, the loop's completion — is paid once per batch, not per
 *   file). Each item resolves to its own number, or an Error as smallFile would reject with.
 */
static int sfb_parse(napi_env env, napi_value *argv, void *w, const char **why) {
  return sf_parse(env, argv, w, why);
}

static napi_value sfb_result(napi_env env, void *item, int cancelled) {
  sf_work *w = item;
  napi_value v;
  if (cancelled) {
    w->err = ECANCELED;
    w->syscall = "smallFiles";
  }
  if (w->err != 0) return sf_error(env, w->err, w->syscall, w->at);
  napi_create_int32(env, w->result, &v);
  return v;
}

static void sfb_release(napi_env env, void *item) {
  sf_work *w = item;
  if (w->data_ref) napi_delete_reference(env, w->data_ref);
  if (w->out_ref) napi_delete_reference(env, w->out_ref);
  sf_free(w);
}

static const batch_kind small_files_kind = {
    "smallFiles",
    "smallFiles(items): 1 to 256 items",
    "smallFiles: an item is not [rootFd, rel, data, md5, out, names, xattrs]",
    7,
    sizeof(sf_work),
    sfb_parse,
    sf_execute,
    sfb_result,
    sfb_release,
};

static napi_value js_small_files(napi_env env, napi_callback_info info) {
  return batch_start(env, info, &small_files_kind);
}

/*
 * inspectFile(rootFd, rel, fallback, names: string[], out: Buffer): Promise<number[]>
 *   opens rel beneath rootFd read-only (nothing followed), fstat (the 64-byte record at out[0,64)),
 *   fgetxattr of each name (its value at out[64 + 4096 * i), at most 4096 bytes), close. Resolves
 *   with each value's length, -1 when absent. One job instead of an lstat, an open and a job per
 *   xattr. Not a regular file: errno EINVAL, syscall "open".
 */
#define INSPECT_MAX 8
#define INSPECT_VALUE 4096

typedef struct {
  napi_async_work aw;
  napi_deferred deferred;
  napi_ref out_ref;
  int rootfd;
  int fallback;
  char *rel;
  size_t rel_len;
  char *names[INSPECT_MAX];
  size_t nnames;
  uint8_t *out;
  ssize_t lens[INSPECT_MAX];
  int err;
  const char *syscall;
  size_t at;
} in_work;

static void in_free(in_work *w) {
  free(w->rel);
  for (size_t i = 0; i < w->nnames; i++) free(w->names[i]);
  free(w);
}

static void in_execute(napi_env env, void *data) {
  (void)env;
  in_work *w = data;
  int err = 0;
  size_t at = 0;
  int fd = hsmfleet_open_beneath_at(w->rootfd, w->rel, w->rel_len, O_RDONLY | O_NONBLOCK | O_NOCTTY,
                                    0, w->fallback, &err, &at);
  if (fd < 0) {
    w->err = err;
    w->syscall = "openat";
    w->at = at;
    return;
  }
  struct stat st;
  if (fstat(fd, &st) != 0) {
    w->err = errno;
    w->syscall = "fstat";
  } else if (!S_ISREG(st.st_mode)) {
    w->err = EINVAL;
    w->syscall = "open";
  } else {
    hsmfleet_put_stat(w->out, &st);
    for (size_t i = 0; i < w->nnames; i++) {
      ssize_t n = fgetxattr(fd, w->names[i], w->out + 64 + INSPECT_VALUE * i, INSPECT_VALUE);
      if (n < 0 && errno != ENODATA) {
        w->err = errno;
        w->syscall = "fgetxattr";
        break;
      }
      w->lens[i] = n < 0 ? -1 : n;
    }
  }
  if (w->err) w->at = w->rel_len;
  close(fd);
}

static napi_value in_result(napi_env env, in_work *w);

static void in_complete(napi_env env, napi_status status, void *data) {
  in_work *w = data;
  if (w->out_ref) napi_delete_reference(env, w->out_ref);
  w->out_ref = NULL;
  if (status != napi_ok) {
    w->err = ECANCELED;
    w->syscall = "inspectFile";
  }
  napi_value v = in_result(env, w);
  if (w->err == 0) napi_resolve_deferred(env, w->deferred, v);
  else napi_reject_deferred(env, w->deferred, v);
  napi_delete_async_work(env, w->aw);
  in_free(w);
}

/* The arguments of one inspectFile (argv[0..5)) into w; 0 + *why when bad (a TypeError). */
static int in_parse(napi_env env, napi_value *argv, in_work *w, const char **why) {
  int32_t rootfd = -1;
  bool fallback = false, isarr = false;
  uint32_t count = 0;
  void *p = NULL;
  size_t n = 0;
  if (napi_get_value_int32(env, argv[0], &rootfd) != napi_ok || rootfd < 0 ||
      !sf_buffer(env, argv[1], &p, &n) || n == 0 || memchr(p, 0, n) != NULL ||
      napi_get_value_bool(env, argv[2], &fallback) != napi_ok ||
      napi_is_array(env, argv[3], &isarr) != napi_ok || !isarr ||
      napi_get_array_length(env, argv[3], &count) != napi_ok || count > INSPECT_MAX) {
    *why = "inspectFile(rootFd, rel, fallback, names (<= 8), out)";
    return 0;
  }
  w->rootfd = rootfd;
  w->fallback = fallback;
  w->rel = malloc(n + 1);
  if (!w->rel) {
    *why = "hsmfleet_fs: out of memory";
    return 0;
  }
  memcpy(w->rel, p, n);
  w->rel[n] = 0;
  w->rel_len = n;
  for (uint32_t i = 0; i < count; i++) {
    napi_value e;
    napi_get_element(env, argv[3], i, &e);
    char *name = sf_string(env, e);
    if (!name) {
      *why = "inspectFile: names must be non-empty strings";
      return 0;
    }
    w->names[w->nnames++] = name;
  }
  if (!sf_buffer(env, argv[4], &p, &n) || n < 64 + (size_t)INSPECT_VALUE * count) {
    *why = "inspectFile: out must hold 64 + 4096 bytes per name";
    return 0;
  }
  w->out = p;
  napi_create_reference(env, argv[4], 1, &w->out_ref);
  return 1;
}

/* What one inspected file resolves with (its values' lengths) or rejects with. */
static napi_value in_result(napi_env env, in_work *w) {
  napi_value arr, v;
  if (w->err != 0) return sf_error(env, w->err, w->syscall, w->at);
  napi_create_array_with_length(env, w->nnames, &arr);
  for (size_t i = 0; i < w->nnames; i++) {
    napi_create_int32(env, (int32_t)w->lens[i], &v);
    napi_set_element(env, arr, (uint32_t)i, v);
  }
  return arr;
}

static napi_value js_inspect_file(napi_env env, napi_callback_info info) {
  size_t argc = 5;
  napi_value argv[5];
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok) return NULL;
  in_work *w = calloc(1, sizeof *w);
  if (!w) {
    napi_throw_error(env, NULL, "hsmfleet_fs: out of memory");
    return NULL;
  }
  const char *why = "inspectFile(rootFd, rel, fallback, names (<= 8), out)";
  if (argc < 5 || !in_parse(env, argv, w, &why)) {
    if (w->out_ref) napi_delete_reference(env, w->out_ref);
    in_free(w);
    napi_throw_type_error(env, NULL, why);
    return NULL;
  }
  napi_value promise, name;
  napi_create_promise(env, &w->deferred, &promise);
  napi_create_string_utf8(env, "hsmfleet_fs.inspectFile", NAPI_AUTO_LENGTH, &name);
  if (napi_create_async_work(env, NULL, name, in_execute, in_complete, w, &w->aw) != napi_ok ||
      napi_queue_async_work(env, w->aw) != napi_ok) {
    napi_value msg, err;
    napi_create_string_utf8(env, "hsmfleet_fs: cannot queue inspectFile", NAPI_AUTO_LENGTH, &msg);
    napi_create_error(env, NULL, msg, &err);
    napi_reject_deferred(env, w->deferred, err);
    napi_delete_reference(env, w->out_ref);
    in_free(w);
  }
  return promise;
}

/*
 * inspectFiles(items: Array<[rootFd, rel, fallback, names, out]>): several inspectFile calls (1 to
 * 256) in ONE job, one after the other; each item's lengths array, or the Error it would have
 * rejected with.
 */
static int inb_parse(napi_env env, napi_value *argv, void *w, const char **why) {
  return in_parse(env, argv, w, why);
}

static napi_value inb_result(napi_env env, void *item, int cancelled) {
  in_work *w = item;
  if (cancelled) {
    w->err = ECANCELED;
    w->syscall = "inspectFiles";
  }
  return in_result(env, w);
}

static void inb_release(napi_env env, void *item) {
  in_work *w = item;
  if (w->out_ref) napi_delete_reference(env, w->out_ref);
  in_free(w);
}

static const batch_kind inspect_files_kind = {
    "inspectFiles",
    "inspectFiles(items): 1 to 256 items",
    "inspectFiles: an item is not [rootFd, rel, fallback, names, out]",
    5,
    sizeof(in_work),
    inb_parse,
    in_execute,
    inb_result,
    inb_release,
};

static napi_value js_inspect_files(napi_env env, napi_callback_info info) {
  return batch_start(env, info, &inspect_files_kind);
}

napi_status hsmfleet_register_smallfile(napi_env env, napi_value exports) {
  napi_property_descriptor p[] = {
      {"smallFile", NULL, js_small_file, NULL, NULL, NULL, napi_enumerable, NULL},
      {"inspectFile", NULL, js_inspect_file, NULL, NULL, NULL, napi_enumerable, NULL},
      {"smallFiles", NULL, js_small_files, NULL, NULL, NULL, napi_enumerable, NULL},
      {"inspectFiles", NULL, js_inspect_files, NULL, NULL, NULL, napi_enumerable, NULL},
  };
  return napi_define_properties(env, exports, 4, p);
}
