/*
 * hsmfleet_fs: fast directory reader and xattr helpers for @hsmfleet/fs.
 *
 * Every system call runs in napi_async_work execute callbacks (libuv threadpool), never on the
 * JS thread. A directory batch crosses into JS as ONE packed Buffer; src/dir-reader.ts parses it.
 *
 * Packed batch format (little-endian; the build refuses big-endian hosts):
 *   batch header (8 bytes):  u32 count, u16 format version (2), u16 flags (bit0: end of
 *                            directory reached, the DIR is already closed)
 *   then `count` records, each 8-byte aligned:
 *     struct rec_hdr (96 bytes, layout below) followed by name_len name bytes, zero-padded so
 *     rec_len (header + name + padding) is a multiple of 8.
 * Errno values are raw positive numbers; TS maps them to code names (util.getSystemErrorName).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#ifndef NAPI_VERSION
#define NAPI_VERSION 8
#endif
#include <node_api.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <stdatomic.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "beneath.h"
#include "batch-arena.h"
#include "hsmbatch.h"

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "hsmfleet_fs writes native integers into the packed format and needs a little-endian host"
#endif

#define FORMAT_VERSION 2
#define BATCH_HDR_SIZE 8
#define BATCH_FLAG_EOF 0x1

#define HSM_ATTRS_SIZE 24

#define TYPE_FILE 1
#define TYPE_DIRECTORY 2
#define TYPE_SYMLINK 3
#define TYPE_OTHER 4

#define REC_FLAG_HSM 0x1
#define REC_FLAG_ERROR 0x2
#define REC_FLAG_HSM_UNREAD 0x4 /* a regular file whose size is outside the handle's xattr range */

#define ERR_OP_LSTAT 1
#define ERR_OP_GETXATTR 2

struct rec_hdr {
  uint32_t rec_len;    /* 0: whole record incl. name and padding */
  uint32_t name_len;   /* 4 */
  uint64_t size;       /* 8 */
  uint64_t ino;        /* 16 */
  int64_t mtime_sec;   /* 24 */
  uint64_t nlink;      /* 32 */
  uint32_t mtime_nsec; /* 40 */
  uint32_t mode;       /* 44: full st_mode (type bits + permissions) */
  uint32_t uid;        /* 48 */
  uint32_t gid;        /* 52 */
  uint8_t type;        /* 56: 1 file, 2 dir, 3 symlink, 4 other */
  uint8_t flags;       /* 57: REC_FLAG_* */
  uint8_t err_op;      /* 58: ERR_OP_* when REC_FLAG_ERROR */
  uint8_t reserved;    /* 59 */
  int32_t err_no;      /* 60: errno when REC_FLAG_ERROR */
  uint8_t hsm[HSM_ATTRS_SIZE]; /* 64: raw struct hsm_attrs bytes when REC_FLAG_HSM */
  int64_t atime_sec;   /* 88: last access (policies order releases by it) */
};                     /* 96 */

_Static_assert(sizeof(struct rec_hdr) == 96, "rec_hdr layout");
_Static_assert(offsetof(struct rec_hdr, atime_sec) == 88, "rec_hdr layout");
_Static_assert(offsetof(struct rec_hdr, mtime_nsec) == 40, "rec_hdr layout");
_Static_assert(offsetof(struct rec_hdr, type) == 56, "rec_hdr layout");
_Static_assert(offsetof(struct rec_hdr, err_no) == 60, "rec_hdr layout");
_Static_assert(offsetof(struct rec_hdr, hsm) == 64, "rec_hdr layout");

/* ------------------------------------------------------------------------------------------ */
/* growable output buffer (used off the JS thread: plain malloc only)                          */

typedef struct {
  uint8_t *data;
  size_t len;
  size_t cap;
} outbuf;

static int ob_reserve(outbuf *ob, size_t extra) {
  if (ob->len + extra <= ob->cap) return 0;
  size_t cap = ob->cap ? ob->cap : 64 * 1024;
  while (cap < ob->len + extra) cap *= 2;
  uint8_t *p = realloc(ob->data, cap);
  if (!p) return ENOMEM;
  ob->data = p;
  ob->cap = cap;
  return 0;
}

/* ------------------------------------------------------------------------------------------ */
/* directory handle                                                                            */

typedef struct {
  DIR *dir;
  char *xattr;      /* NULL: don't read xattrs */
  int xsizes;       /* 1: read the xattr only of regular files with xmin <= size <= xmax */
  uint64_t xmin;
  uint64_t xmax;
  char *xpath;      /* "<dirpath>/" prefix buffer with room for one name */
  size_t xprefix;   /* length of the prefix in xpath */
  uint32_t batch;
  int eof;
  int pending_err;  /* readdir error seen after a partial batch: reported by the next read */
  /* JS-thread-only state */
  int busy;
  int closed;
} dir_handle;

static void handle_free(dir_handle *h) {
  if (!h) return;
  if (h->dir) closedir(h->dir);
  free(h->xattr);
  free(h->xpath);
  free(h);
}

/* Tags our externals so a foreign external passed from JS is rejected instead of misused. */
static const napi_type_tag DIR_HANDLE_TAG = {0x68736d666c656574ULL, 0x6469727363616e31ULL};

static void handle_finalize(napi_env env, void *data, void *hint) {
  (void)env;
  (void)hint;
  handle_free((dir_handle *)data); /* closes the DIR if JS never called close() */
}

/* ------------------------------------------------------------------------------------------ */
/* async work                                                                                  */

enum work_kind {
  W_OPENDIR,
  W_OPENDIRS,
  W_READ,
  W_CLOSE,
  W_STAT,
  W_GETXATTR,
  W_SETXATTR,
  W_REMOVEXATTR
};

typedef struct work_s {
  napi_async_work aw;
  napi_deferred deferred;
  enum work_kind kind;
  /* result */
  int err;
  const char *syscall;
  /* inputs */
  char *path;
  char *name;
  uint8_t *value;
  size_t value_len;
  uint32_t batch;
  int rootfd;      /* W_OPENDIR: >= 0: path is relative to this job root fd (beneath.c) */
  int fallback;    /* W_OPENDIR beneath: force the openat walk */
  int xsizes;      /* W_OPENDIR: the xattr size range below applies */
  int read_first;  /* W_OPENDIR: also read the first batch (one threadpool trip, not two) */
  uint64_t xmin;
  uint64_t xmax;
  dir_handle *h;   /* W_OPENDIR: created in execute; others: borrowed, kept alive by href */
  napi_ref href;
  /* outputs */
  outbuf out;
  void *out_owner; /* out.data is a batch-arena copy (batch-arena.c) held by this; NULL: malloc */
  int none;        /* W_GETXATTR: attribute absent; W_READ: nothing left */
  int eof_flag;
  /* W_OPENDIRS: one W_OPENDIR (read_first) per directory, run in this job one after the other */
  struct work_s **subs;
  uint32_t nsubs;
  uint32_t reached; /* subs run before the entry budget (`batch`) was spent */
} work_t;

static void work_free(work_t *w) {
  for (uint32_t i = 0; i < w->nsubs; i++) {
    if (!w->subs[i]) continue;
    handle_free(w->subs[i]->h); /* NULL once handed to JS */
    work_free(w->subs[i]);
  }
  free(w->subs);
  free(w->path);
  free(w->name);
  free(w->value);
  if (w->out_owner) hsmfleet_batch_release(w->out_owner);
  else free(w->out.data);
  free(w);
}

static uint8_t type_of_mode(mode_t m) {
  if (S_ISREG(m)) return TYPE_FILE;
  if (S_ISDIR(m)) return TYPE_DIRECTORY;
  if (S_ISLNK(m)) return TYPE_SYMLINK;
  return TYPE_OTHER;
}

static uint8_t type_of_dtype(unsigned char d) {
  switch (d) {
    case DT_REG: return TYPE_FILE;
    case DT_DIR: return TYPE_DIRECTORY;
    case DT_LNK: return TYPE_SYMLINK;
    default: return TYPE_OTHER;
  }
}

static void fill_stat(struct rec_hdr *r, const struct stat *st) {
  r->size = (uint64_t)st->st_size;
  r->ino = (uint64_t)st->st_ino;
  r->mtime_sec = (int64_t)st->st_mtim.tv_sec;
  r->mtime_nsec = (uint32_t)st->st_mtim.tv_nsec;
  r->atime_sec = (int64_t)st->st_atim.tv_sec;
  r->nlink = (uint64_t)st->st_nlink;
  r->mode = (uint32_t)st->st_mode;
  r->uid = (uint32_t)st->st_uid;
  r->gid = (uint32_t)st->st_gid;
  r->type = type_of_mode(st->st_mode);
}

/* getxattrat(2) (Linux 6.13): reads an xattr of `name` relative to a directory fd, with one
 * component looked up, instead of a path walk through "/proc/self/fd/N/name" or from the root
 * (the walk's cost per regular file was dominated by that lookup). The number is the same on
 * every architecture of the unified syscall table (x86_64, aarch64). */
#ifndef __NR_getxattrat
#if defined(__x86_64__) || defined(__aarch64__)
#define __NR_getxattrat 464
#endif
#endif

struct hsmfleet_xattr_args {
  uint64_t value;
  uint32_t size;
  uint32_t flags;
};

/* 1 until getxattrat answered ENOSYS (an older kernel): then every read takes the path. */
static atomic_int getxattrat_works = 1;

/* lgetxattr of `nm` in directory `dfd` (dfd < 0: of `path`), as lgetxattr returns and sets
 * errno. `path` names the same file for the fallback (no getxattrat). */
static ssize_t get_xattr(int dfd, const char *nm, const char *path, const char *xname, void *buf,
                         size_t size) {
#ifdef __NR_getxattrat
  if (dfd >= 0 && atomic_load_explicit(&getxattrat_works, memory_order_relaxed)) {
    struct hsmfleet_xattr_args args = {(uint64_t)(uintptr_t)buf, (uint32_t)size, 0};
    long n = syscall(__NR_getxattrat, dfd, nm, AT_SYMLINK_NOFOLLOW, xname, &args, sizeof args);
    if (n >= 0 || (errno != ENOSYS && errno != EPERM)) return (ssize_t)n;
    /* ENOSYS: an older kernel. EPERM: maybe a seccomp filter that does not know the call (some
       container profiles answer EPERM): the path decides, and unless it says EPERM too, the
       fallback is kept for good. */
    int first = errno;
    ssize_t m = lgetxattr(path, xname, buf, size);
    if (first == ENOSYS || m >= 0 || errno != EPERM)
      atomic_store_explicit(&getxattrat_works, 0, memory_order_relaxed);
    return m;
  }
#else
  (void)dfd;
  (void)nm;
#endif
  return lgetxattr(path, xname, buf, size);
}

/* Reads `xname` of the entry `nm` of directory `dfd` (dfd < 0: of `path`; `path` names the same
 * file for kernels without getxattrat), not following symlinks, into r->hsm. Absent (ENODATA,
 * ENOTSUP) leaves the record untouched; other failures mark the record with err_op getxattr. A
 * value shorter than struct hsm_attrs is reported as EBADMSG. */
static void read_hsm(struct rec_hdr *r, int dfd, const char *nm, const char *path,
                     const char *xname) {
  ssize_t n = get_xattr(dfd, nm, path, xname, r->hsm, HSM_ATTRS_SIZE);
  int e = n < 0 ? errno : 0;
  if (n < 0 && e == ERANGE) {
    /* Larger than struct hsm_attrs (a newer layout?): read it whole and keep the known prefix. */
    ssize_t want = get_xattr(dfd, nm, path, xname, NULL, 0);
    if (want < 0) {
      e = errno;
    } else {
      uint8_t *tmp = malloc((size_t)want + 1);
      if (!tmp) {
        e = ENOMEM;
      } else {
        n = get_xattr(dfd, nm, path, xname, tmp, (size_t)want + 1);
        e = n < 0 ? errno : 0;
        if (n >= HSM_ATTRS_SIZE) memcpy(r->hsm, tmp, HSM_ATTRS_SIZE);
        free(tmp);
      }
    }
  }
  if (n < 0) {
    if (e == ENODATA || e == ENOTSUP) return;
    memset(r->hsm, 0, HSM_ATTRS_SIZE);
    r->flags |= REC_FLAG_ERROR;
    r->err_op = ERR_OP_GETXATTR;
    r->err_no = e;
    return;
  }
  if (n < HSM_ATTRS_SIZE) {
    memset(r->hsm, 0, HSM_ATTRS_SIZE);
    r->flags |= REC_FLAG_ERROR;
    r->err_op = ERR_OP_GETXATTR;
    r->err_no = EBADMSG;
    return;
  }
  r->flags |= REC_FLAG_HSM;
}

static int append_batch_header(outbuf *ob) {
  int e = ob_reserve(ob, BATCH_HDR_SIZE);
  if (e) return e;
  memset(ob->data, 0, BATCH_HDR_SIZE);
  ob->len = BATCH_HDR_SIZE;
  return 0;
}

static void set_batch_header(outbuf *ob, uint32_t count, uint16_t flags) {
  uint16_t version = FORMAT_VERSION;
  memcpy(ob->data, &count, 4);
  memcpy(ob->data + 4, &version, 2);
  memcpy(ob->data + 6, &flags, 2);
}

/* Reserves and zeroes one record for a name of `name_len` bytes; returns it or NULL (ENOMEM). */
static struct rec_hdr *append_record(outbuf *ob, const char *name, size_t name_len) {
  size_t rec_len = (sizeof(struct rec_hdr) + name_len + 7) & ~(size_t)7;
  if (ob_reserve(ob, rec_len)) return NULL;
  uint8_t *p = ob->data + ob->len;
  memset(p, 0, rec_len);
  memcpy(p + sizeof(struct rec_hdr), name, name_len);
  struct rec_hdr *r = (struct rec_hdr *)p;
  r->rec_len = (uint32_t)rec_len;
  r->name_len = (uint32_t)name_len;
  ob->len += rec_len;
  return r;
}

static void exec_opendir(work_t *w) {
  int fd;
  if (w->rootfd >= 0) {
    /* Beneath the job root: no symlink followed on any component (issue 14). */
    int err = 0;
    size_t len = strlen(w->path);
    fd = len == 0 ? openat(w->rootfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC)
                  : hsmfleet_open_beneath(w->rootfd, w->path, len, O_RDONLY | O_DIRECTORY,
                                          w->fallback, &err);
    if (fd < 0 && len == 0) err = errno;
    if (fd < 0) {
      w->err = err;
      w->syscall = "open";
      return;
    }
  } else {
    fd = open(w->path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) {
      w->err = errno;
      w->syscall = "open";
      return;
    }
  }
  dir_handle *h = calloc(1, sizeof *h);
  if (!h) {
    close(fd);
    w->err = ENOMEM;
    w->syscall = "open";
    return;
  }
  h->batch = w->batch;
  h->xsizes = w->xsizes;
  h->xmin = w->xmin;
  h->xmax = w->xmax;
  h->dir = fdopendir(fd);
  if (!h->dir) {
    w->err = errno;
    w->syscall = "fdopendir";
    close(fd);
    free(h);
    return;
  }
  if (w->name) {
    size_t plen = strlen(w->path);
    char procbuf[64];
    const char *prefix = w->path;
    if (w->rootfd >= 0 || plen + 2 + NAME_MAX + 1 > PATH_MAX) {
      /* Beneath a root, or too long for a path-based lgetxattr: through the directory fd (a
         magic link to the very directory read, never re-walked). */
      snprintf(procbuf, sizeof procbuf, "/proc/self/fd/%d", fd);
      prefix = procbuf;
      plen = strlen(procbuf);
    }
    h->xattr = w->name;
    w->name = NULL;
    h->xpath = malloc(plen + 2 + NAME_MAX + 1);
    if (!h->xpath) {
      handle_free(h);
      w->err = ENOMEM;
      w->syscall = "open";
      return;
    }
    memcpy(h->xpath, prefix, plen);
    if (plen == 0 || h->xpath[plen - 1] != '/') h->xpath[plen++] = '/';
    h->xprefix = plen;
  }
  w->h = h;
}

/*
 * Each threadpool thread builds its batches in a scratch buffer of its own, kept for its next
 * batch (its pages touched once), and a finished batch is copied into huge-page memory
 * (batch-arena.c): fresh 4 KiB pages for every batch were ~6,000 page faults per 226k-entry scan.
 */
static __thread outbuf scratch;

static void exec_read_into(work_t *w);

/* Reads one batch of a work whose `out` is still empty (every W_OPENDIR and W_READ work). */
static void exec_read(work_t *w) {
  w->out = scratch;
  w->out.len = 0;
  exec_read_into(w);
  outbuf built = w->out;
  scratch = built;
  w->out = (outbuf){0};
  if (w->err || built.len == 0) return; /* nothing of it is handed on */
  uint8_t *copy = hsmfleet_batch_copy(built.data, built.len, &w->out_owner);
  if (copy == NULL) {
    copy = malloc(built.len);
    if (copy == NULL) {
      w->err = ENOMEM;
      w->syscall = "readdir";
      return;
    }
    memcpy(copy, built.data, built.len);
  }
  w->out.data = copy;
  w->out.len = w->out.cap = built.len;
}

static void exec_read_into(work_t *w) {
  dir_handle *h = w->h;
  if ((w->err = append_batch_header(&w->out))) {
    w->syscall = "readdir";
    return;
  }
  if (h->pending_err) {
    w->err = h->pending_err;
    w->syscall = "readdir";
    h->pending_err = 0;
    return;
  }
  if (!h->dir || h->eof) {
    w->none = 1;
    w->eof_flag = 1;
    return;
  }
  int dfd = dirfd(h->dir);
  uint32_t count = 0;
  while (count < h->batch) {
    errno = 0;
    struct dirent *de = readdir(h->dir);
    if (!de) {
      if (errno) {
        if (count == 0) {
          w->err = errno;
          w->syscall = "readdir";
          return;
        }
        h->pending_err = errno;
      } else {
        h->eof = 1;
      }
      break;
    }
    const char *nm = de->d_name;
    if (nm[0] == '.' && (nm[1] == 0 || (nm[1] == '.' && nm[2] == 0))) continue;
    size_t nlen = strlen(nm);
    struct rec_hdr *r = append_record(&w->out, nm, nlen);
    if (!r) {
      w->err = ENOMEM;
      w->syscall = "readdir";
      return;
    }
    struct stat st;
    if (fstatat(dfd, nm, &st, AT_SYMLINK_NOFOLLOW) != 0) {
      r->type = type_of_dtype(de->d_type); /* a hint only; stat fields stay 0 */
      r->flags = REC_FLAG_ERROR;
      r->err_op = ERR_OP_LSTAT;
      r->err_no = errno;
    } else {
      fill_stat(r, &st);
      if (h->xattr && S_ISREG(st.st_mode)) {
        if (h->xsizes && ((uint64_t)st.st_size < h->xmin || (uint64_t)st.st_size > h->xmax)) {
          r->flags |= REC_FLAG_HSM_UNREAD; /* the caller needs no HSM state at this size */
        } else {
          memcpy(h->xpath + h->xprefix, nm, nlen + 1);
          read_hsm(r, dfd, nm, h->xpath, h->xattr);
        }
      }
    }
    count++;
  }
  uint16_t flags = 0;
  if (h->eof) {
    /* Release the descriptor as soon as the end is seen; close() is then a no-op. */
    closedir(h->dir);
    h->dir = NULL;
    flags |= BATCH_FLAG_EOF;
    w->eof_flag = 1;
  }
  if (count == 0) w->none = 1;
  set_batch_header(&w->out, count, flags);
}

static void exec_stat(work_t *w) {
  struct stat st;
  if (fstatat(AT_FDCWD, w->path, &st, AT_SYMLINK_NOFOLLOW) != 0) {
    w->err = errno;
    w->syscall = "lstat";
    return;
  }
  if ((w->err = append_batch_header(&w->out))) {
    w->syscall = "lstat";
    return;
  }
  struct rec_hdr *r = append_record(&w->out, "", 0);
  if (!r) {
    w->err = ENOMEM;
    w->syscall = "lstat";
    return;
  }
  fill_stat(r, &st);
  if (w->name && S_ISREG(st.st_mode)) read_hsm(r, -1, NULL, w->path, w->name);
  set_batch_header(&w->out, 1, 0);
}

static void exec_getxattr(work_t *w) {
  size_t cap = 4096;
  for (int attempt = 0; attempt < 8; attempt++) {
    uint8_t *grown = realloc(w->out.data, cap ? cap : 1);
    if (!grown) {
      w->err = ENOMEM;
      w->syscall = "lgetxattr";
      return;
    }
    w->out.data = grown;
    w->out.cap = cap;
    ssize_t n = lgetxattr(w->path, w->name, w->out.data, cap);
    if (n >= 0) {
      w->out.len = (size_t)n;
      return;
    }
    int e = errno;
    if (e == ENODATA) {
      w->none = 1;
      return;
    }
    if (e != ERANGE) {
      w->err = e;
      w->syscall = "lgetxattr";
      return;
    }
    ssize_t want = lgetxattr(w->path, w->name, NULL, 0); /* grew meanwhile: ask for the size */
    if (want < 0) {
      e = errno;
      if (e == ENODATA) {
        w->none = 1;
        return;
      }
      w->err = e;
      w->syscall = "lgetxattr";
      return;
    }
    cap = (size_t)want + 1;
  }
  w->err = ERANGE;
  w->syscall = "lgetxattr";
}

/* Opens a directory and, with read_first, reads its first batch in the same job. */
static void exec_opendir_first(work_t *w) {
  exec_opendir(w);
  if (!w->err && w->read_first) {
    exec_read(w);
    if (w->err) {
      /* Reported by the next read, as a read of its own would have: the open succeeded. */
      w->h->pending_err = w->err;
      w->err = 0;
      w->syscall = NULL;
      w->out.len = 0;
      w->none = 1;
    }
  }
}

static void execute(napi_env env, void *data) {
  (void)env;
  work_t *w = data;
  switch (w->kind) {
    case W_OPENDIR:
      exec_opendir_first(w);
      break;
    case W_OPENDIRS: {
      /* A walk shard's directories, in order, until about one batch of entries was read: the
         rest are left to the caller (bounded memory per job, as one opendir's first batch). */
      uint64_t entries = 0;
      for (uint32_t i = 0; i < w->nsubs && (i == 0 || entries < w->batch); i++) {
        work_t *sub = w->subs[i];
        if (!sub->err) exec_opendir_first(sub); /* err already set: refused on the JS thread */
        if (!sub->err && sub->out.len >= BATCH_HDR_SIZE) {
          uint32_t count;
          memcpy(&count, sub->out.data, 4);
          entries += count;
        }
        w->reached = i + 1;
      }
      break;
    }
    case W_READ:
      exec_read(w);
      break;
    case W_CLOSE:
      if (w->h->dir) closedir(w->h->dir);
      w->h->dir = NULL;
      break;
    case W_STAT:
      exec_stat(w);
      break;
    case W_GETXATTR:
      exec_getxattr(w);
      break;
    case W_SETXATTR:
      if (lsetxattr(w->path, w->name, w->value, w->value_len, 0) != 0) {
        w->err = errno;
        w->syscall = "lsetxattr";
      }
      break;
    case W_REMOVEXATTR:
      if (lremovexattr(w->path, w->name) != 0) {
        w->err = errno;
        w->syscall = "lremovexattr";
      }
      break;
  }
}

/* Error object: message = strerror text, `errno` = positive errno, `syscall` = failing call. */
static napi_value make_errno_error(napi_env env, int err, const char *syscall) {
  char buf[256];
  const char *msg = strerror_r(err, buf, sizeof buf);
  napi_value message, error, num, sys;
  napi_create_string_utf8(env, msg, NAPI_AUTO_LENGTH, &message);
  napi_create_error(env, NULL, message, &error);
  napi_create_int32(env, err, &num);
  napi_set_named_property(env, error, "errno", num);
  napi_create_string_utf8(env, syscall ? syscall : "unknown", NAPI_AUTO_LENGTH, &sys);
  napi_set_named_property(env, error, "syscall", sys);
  return error;
}

static void free_external_buffer(napi_env env, void *data, void *hint) {
  (void)env;
  (void)hint;
  free(data);
}

static void release_arena_buffer(napi_env env, void *data, void *hint) {
  (void)env;
  (void)data;
  hsmfleet_batch_release(hint);
}

/* Moves w->out into a JS Buffer (zero-copy when external buffers are allowed). */
static napi_status take_buffer(napi_env env, work_t *w, napi_value *result) {
  if (w->out.len == 0) return napi_create_buffer(env, 0, NULL, result);
  napi_status s =
      w->out_owner
          ? napi_create_external_buffer(env, w->out.len, w->out.data, release_arena_buffer,
                                        w->out_owner, result)
          : napi_create_external_buffer(env, w->out.len, w->out.data, free_external_buffer, NULL,
                                        result);
  if (s == napi_ok) {
    w->out.data = NULL;
    w->out_owner = NULL;
    return s;
  }
  /* Runtimes that forbid external buffers: copy. Clear the pending exception first. */
  napi_value ignored;
  bool pending = false;
  napi_is_exception_pending(env, &pending);
  if (pending) napi_get_and_clear_last_exception(env, &ignored);
  return napi_create_buffer_copy(env, w->out.len, w->out.data, NULL, result);
}

/* A directory handle for JS; the external's finalizer owns `h` from here on. */
static napi_status wrap_handle(napi_env env, dir_handle *h, napi_value *out) {
  napi_status s = napi_create_external(env, h, handle_finalize, NULL, out);
  if (s != napi_ok) {
    handle_free(h);
    return s;
  }
  return napi_type_tag_object(env, *out, &DIR_HANDLE_TAG);
}

/*
 * W_OPENDIRS' result, one element per directory: undefined (not reached: the entry budget was
 * spent), an errno Error (its open failed), null (read whole: no entries), a Buffer (read whole:
 * its only batch), or [handle, Buffer | null] (more to read with readBatch, then closeDir).
 */
static napi_status opendirs_result(napi_env env, work_t *w, napi_value *result) {
  napi_status s = napi_create_array_with_length(env, w->nsubs, result);
  for (uint32_t i = 0; s == napi_ok && i < w->nsubs; i++) {
    work_t *sub = w->subs[i];
    napi_value el, first;
    if (i >= w->reached) {
      s = napi_get_undefined(env, &el);
    } else if (sub->err) {
      el = make_errno_error(env, sub->err, sub->syscall);
    } else {
      s = sub->none ? napi_get_null(env, &first) : take_buffer(env, sub, &first);
      if (s != napi_ok) break;
      if (!sub->h->dir && !sub->h->pending_err) {
        handle_free(sub->h); /* the end was read: the DIR is closed already */
        sub->h = NULL;
        el = first;
      } else {
        napi_value handle;
        dir_handle *h = sub->h;
        sub->h = NULL;
        s = wrap_handle(env, h, &handle);
        if (s == napi_ok) s = napi_create_array_with_length(env, 2, &el);
        if (s == napi_ok) s = napi_set_element(env, el, 0, handle);
        if (s == napi_ok) s = napi_set_element(env, el, 1, first);
      }
    }
    if (s == napi_ok) s = napi_set_element(env, *result, i, el);
  }
  return s;
}

static void complete(napi_env env, napi_status status, void *data) {
  work_t *w = data;
  napi_value result = NULL;
  int reject = 0;

  if (w->href) {
    napi_delete_reference(env, w->href);
    w->href = NULL;
  }
  if (w->kind != W_OPENDIR && w->h) w->h->busy = 0;

  if (status == napi_cancelled) {
    if (w->kind == W_OPENDIR) handle_free(w->h);
    w->h = NULL;
    napi_delete_async_work(env, w->aw);
    work_free(w);
    return;
  }

  if (w->err) {
    result = make_errno_error(env, w->err, w->syscall);
    reject = 1;
  } else {
    napi_status s = napi_ok;
    switch (w->kind) {
      case W_OPENDIR: {
        napi_value handle;
        s = napi_create_external(env, w->h, handle_finalize, NULL, &handle);
        if (s != napi_ok) {
          handle_free(w->h);
        } else {
          s = napi_type_tag_object(env, handle, &DIR_HANDLE_TAG); /* finalizer owns h now */
        }
        w->h = NULL;
        result = handle;
        if (s == napi_ok && w->read_first) {
          /* [handle, first batch or null] */
          napi_value first;
          if (w->none) {
            s = napi_get_null(env, &first);
          } else {
            s = take_buffer(env, w, &first);
          }
          if (s == napi_ok) s = napi_create_array_with_length(env, 2, &result);
          if (s == napi_ok) s = napi_set_element(env, result, 0, handle);
          if (s == napi_ok) s = napi_set_element(env, result, 1, first);
        }
        break;
      }
      case W_OPENDIRS:
        s = opendirs_result(env, w, &result);
        break;
      case W_READ: {
        if (w->none) {
          napi_get_null(env, &result);
        } else {
          s = take_buffer(env, w, &result);
        }
        break;
      }
      case W_STAT:
        s = take_buffer(env, w, &result);
        break;
      case W_GETXATTR:
        if (w->none) {
          napi_get_null(env, &result);
        } else {
          s = take_buffer(env, w, &result);
        }
        break;
      default:
        napi_get_undefined(env, &result);
        break;
    }
    if (s != napi_ok) {
      result = make_errno_error(env, ENOMEM, "napi");
      reject = 1;
    }
  }
  if (reject) {
    napi_reject_deferred(env, w->deferred, result);
  } else {
    napi_resolve_deferred(env, w->deferred, result);
  }
  napi_delete_async_work(env, w->aw);
  work_free(w);
}

/* ------------------------------------------------------------------------------------------ */
/* argument helpers (JS thread)                                                                */

/* Copies a Buffer/Uint8Array into a NUL-terminated C string; *has_nul when it contains a 0. */
static napi_status copy_bytes(napi_env env, napi_value v, char **out, size_t *len, int *has_nul) {
  bool is_buf = false;
  void *data = NULL;
  size_t n = 0;
  napi_status s = napi_is_buffer(env, v, &is_buf);
  if (s != napi_ok) return s;
  if (is_buf) {
    s = napi_get_buffer_info(env, v, &data, &n);
  } else {
    bool is_ta = false;
    s = napi_is_typedarray(env, v, &is_ta);
    if (s != napi_ok) return s;
    if (!is_ta) return napi_invalid_arg;
    napi_typedarray_type t;
    napi_value ab;
    size_t off;
    s = napi_get_typedarray_info(env, v, &t, &n, &data, &ab, &off);
    if (s == napi_ok && t != napi_uint8_array) return napi_invalid_arg;
  }
  if (s != napi_ok) return s;
  char *p = malloc(n + 1);
  if (!p) return napi_generic_failure;
  if (n) memcpy(p, data, n);
  p[n] = 0;
  *out = p;
  if (len) *len = n;
  if (has_nul) *has_nul = n ? memchr(p, 0, n) != NULL : 0;
  return napi_ok;
}

/* Copies a JS string (UTF-8); null/undefined => *out NULL. */
static napi_status copy_optional_string(napi_env env, napi_value v, char **out, int *has_nul) {
  napi_valuetype t;
  napi_status s = napi_typeof(env, v, &t);
  *out = NULL;
  *has_nul = 0;
  if (s != napi_ok) return s;
  if (t == napi_null || t == napi_undefined) return napi_ok;
  if (t != napi_string) return napi_string_expected;
  size_t n = 0;
  s = napi_get_value_string_utf8(env, v, NULL, 0, &n);
  if (s != napi_ok) return s;
  char *p = malloc(n + 1);
  if (!p) return napi_generic_failure;
  s = napi_get_value_string_utf8(env, v, p, n + 1, &n);
  if (s != napi_ok) {
    free(p);
    return s;
  }
  *has_nul = strlen(p) != n;
  *out = p;
  return napi_ok;
}

/* Queues w and returns its promise; on failure to queue, rejects immediately. */
static napi_value start(napi_env env, work_t *w, const char *resource) {
  napi_value promise, name;
  if (napi_create_promise(env, &w->deferred, &promise) != napi_ok) {
    work_free(w);
    napi_throw_error(env, NULL, "hsmfleet_fs: cannot create a promise");
    return NULL;
  }
  napi_create_string_utf8(env, resource, NAPI_AUTO_LENGTH, &name);
  if (napi_create_async_work(env, NULL, name, execute, complete, w, &w->aw) != napi_ok ||
      napi_queue_async_work(env, w->aw) != napi_ok) {
    napi_reject_deferred(env, w->deferred, make_errno_error(env, ENOMEM, "napi"));
    if (w->href) napi_delete_reference(env, w->href);
    if (w->kind != W_OPENDIR && w->h) w->h->busy = 0;
    work_free(w);
  }
  return promise;
}

/* A promise already rejected with an errno error (argument problems found on the JS thread). */
static napi_value rejected(napi_env env, work_t *w, int err, const char *syscall) {
  napi_value promise;
  napi_deferred d;
  work_free(w);
  napi_create_promise(env, &d, &promise);
  napi_reject_deferred(env, d, make_errno_error(env, err, syscall));
  return promise;
}

static work_t *new_work(enum work_kind kind) {
  work_t *w = calloc(1, sizeof *w);
  if (w) w->kind = kind;
  return w;
}

#define GET_ARGS(n)                                                                  \
  size_t argc = (n);                                                                 \
  napi_value argv[(n) > 0 ? (n) : 1];                                                \
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok) return NULL;  \
  for (size_t i_ = argc; i_ < (n); i_++) napi_get_undefined(env, &argv[i_])

#define ALLOC_WORK(w, kind)                                        \
  work_t *w = new_work(kind);                                      \
  if (!w) {                                                        \
    napi_throw_error(env, NULL, "hsmfleet_fs: out of memory");     \
    return NULL;                                                   \
  }

#define TYPE_FAIL(w, msg)                      \
  do {                                         \
    work_free(w);                              \
    napi_throw_type_error(env, NULL, (msg));   \
    return NULL;                               \
  } while (0)

/* ------------------------------------------------------------------------------------------ */
/* exported functions                                                                          */

/* A size bound from JS: a non-negative number (Infinity: no bound above). */
static int size_bound(napi_env env, napi_value v, uint64_t *out) {
  double d = 0;
  if (napi_get_value_double(env, v, &d) != napi_ok || !(d >= 0)) return 0;
  *out = d >= 18446744073709551615.0 ? UINT64_MAX : (uint64_t)d;
  return 1;
}

/*
 * opendir(path: Buffer, xattr: string | null, batchSize: number, rootFd?: number,
 *         fallback?: boolean, xattrMinSize?: number, xattrMaxSize?: number,
 *         readFirst?: boolean): Promise<External> (readFirst: Promise<[External, Buffer | null]>,
 *         the first batch read in the same threadpool job, null when it had no entries).
 * With rootFd, path is relative to it (empty: the root itself) and opened beneath it with no
 * symlink followed (beneath.c). With the two sizes, the xattr is read only of regular files whose
 * size is within them; the others carry REC_FLAG_HSM_UNREAD.
 */
static napi_value js_opendir(napi_env env, napi_callback_info info) {
  GET_ARGS(8);
  ALLOC_WORK(w, W_OPENDIR);
  w->rootfd = -1;
  {
    napi_valuetype t;
    bool first = false;
    napi_typeof(env, argv[7], &t);
    if (t == napi_boolean) napi_get_value_bool(env, argv[7], &first);
    w->read_first = first ? 1 : 0;
  }
  {
    napi_valuetype t;
    napi_typeof(env, argv[3], &t);
    if (t == napi_number) {
      int32_t fd = -1;
      napi_get_value_int32(env, argv[3], &fd);
      if (fd < 0) TYPE_FAIL(w, "rootFd must be a non-negative integer");
      w->rootfd = fd;
      bool fb = false;
      napi_typeof(env, argv[4], &t);
      if (t == napi_boolean) napi_get_value_bool(env, argv[4], &fb);
      w->fallback = fb ? 1 : 0;
    }
  }
  {
    napi_valuetype t5, t6;
    napi_typeof(env, argv[5], &t5);
    napi_typeof(env, argv[6], &t6);
    if (t5 == napi_number || t6 == napi_number) {
      if (!size_bound(env, argv[5], &w->xmin) || !size_bound(env, argv[6], &w->xmax) ||
          w->xmin > w->xmax)
        TYPE_FAIL(w, "xattr sizes must be numbers with 0 <= min <= max");
      w->xsizes = 1;
    }
  }
  int nul = 0, xnul = 0;
  if (copy_bytes(env, argv[0], &w->path, NULL, &nul) != napi_ok) TYPE_FAIL(w, "path must be a Buffer");
  if (copy_optional_string(env, argv[1], &w->name, &xnul) != napi_ok)
    TYPE_FAIL(w, "xattr name must be a string or null");
  uint32_t batch = 0;
  if (napi_get_value_uint32(env, argv[2], &batch) != napi_ok || batch == 0)
    TYPE_FAIL(w, "batchSize must be a positive integer");
  w->batch = batch;
  if (nul || xnul) return rejected(env, w, EINVAL, "open");
  return start(env, w, "hsmfleet_fs.opendir");
}

/*
 * opendirs(rels: Buffer[], xattr: string | null, batchSize: number, rootFd: number,
 *          fallback: boolean, xattrMinSize?: number, xattrMaxSize?: number): Promise<Array<...>>
 * Opens each directory beneath rootFd (as opendir with rootFd) and reads its first batch, one
 * after the other in ONE threadpool job, until about batchSize entries were read in all (a walk
 * shard's sibling directories: one hand-off instead of one per directory). See opendirs_result
 * for the elements.
 */
static napi_value js_opendirs(napi_env env, napi_callback_info info) {
  GET_ARGS(7);
  ALLOC_WORK(w, W_OPENDIRS);
  bool is_array = false;
  uint32_t count = 0;
  if (napi_is_array(env, argv[0], &is_array) != napi_ok || !is_array ||
      napi_get_array_length(env, argv[0], &count) != napi_ok)
    TYPE_FAIL(w, "rels must be an array of Buffers");
  char *xattr = NULL;
  int xnul = 0;
  if (copy_optional_string(env, argv[1], &xattr, &xnul) != napi_ok)
    TYPE_FAIL(w, "xattr name must be a string or null");
  w->name = xattr; /* freed with w; each directory gets a copy */
  uint32_t batch = 0;
  if (napi_get_value_uint32(env, argv[2], &batch) != napi_ok || batch == 0)
    TYPE_FAIL(w, "batchSize must be a positive integer");
  w->batch = batch;
  int32_t fd = -1;
  if (napi_get_value_int32(env, argv[3], &fd) != napi_ok || fd < 0)
    TYPE_FAIL(w, "rootFd must be a non-negative integer");
  bool fallback = false;
  napi_get_value_bool(env, argv[4], &fallback);
  {
    napi_valuetype t5, t6;
    napi_typeof(env, argv[5], &t5);
    napi_typeof(env, argv[6], &t6);
    if (t5 == napi_number || t6 == napi_number) {
      if (!size_bound(env, argv[5], &w->xmin) || !size_bound(env, argv[6], &w->xmax) ||
          w->xmin > w->xmax)
        TYPE_FAIL(w, "xattr sizes must be numbers with 0 <= min <= max");
      w->xsizes = 1;
    }
  }
  if (xnul) return rejected(env, w, EINVAL, "open");
  w->subs = calloc(count ? count : 1, sizeof *w->subs);
  if (!w->subs) TYPE_FAIL(w, "out of memory");
  w->nsubs = count;
  for (uint32_t i = 0; i < count; i++) {
    work_t *sub = new_work(W_OPENDIR);
    if (!sub) TYPE_FAIL(w, "out of memory");
    w->subs[i] = sub;
    sub->rootfd = fd;
    sub->fallback = fallback ? 1 : 0;
    sub->read_first = 1;
    sub->batch = batch;
    sub->xsizes = w->xsizes;
    sub->xmin = w->xmin;
    sub->xmax = w->xmax;
    if (xattr && !(sub->name = strdup(xattr))) TYPE_FAIL(w, "out of memory");
    napi_value el;
    int nul = 0;
    if (napi_get_element(env, argv[0], i, &el) != napi_ok ||
        copy_bytes(env, el, &sub->path, NULL, &nul) != napi_ok)
      TYPE_FAIL(w, "rels must be an array of Buffers");
    if (nul) {
      sub->err = EINVAL; /* as opendir refuses it: this directory's error, not the job's */
      sub->syscall = "open";
    }
  }
  return start(env, w, "hsmfleet_fs.opendirs");
}

static dir_handle *get_handle(napi_env env, napi_value v) {
  napi_valuetype t;
  void *p = NULL;
  bool tagged = false;
  if (napi_typeof(env, v, &t) != napi_ok || t != napi_external) return NULL;
  if (napi_check_object_type_tag(env, v, &DIR_HANDLE_TAG, &tagged) != napi_ok || !tagged) return NULL;
  if (napi_get_value_external(env, v, &p) != napi_ok) return NULL;
  return p;
}

/* readBatch(handle): Promise<Buffer | null> */
static napi_value js_read_batch(napi_env env, napi_callback_info info) {
  GET_ARGS(1);
  ALLOC_WORK(w, W_READ);
  dir_handle *h = get_handle(env, argv[0]);
  if (!h) TYPE_FAIL(w, "not a directory handle");
  if (h->closed) return rejected(env, w, EBADF, "readdir");
  if (h->busy) return rejected(env, w, EBUSY, "readdir");
  if (napi_create_reference(env, argv[0], 1, &w->href) != napi_ok) TYPE_FAIL(w, "bad handle");
  h->busy = 1;
  w->h = h;
  return start(env, w, "hsmfleet_fs.readdir");
}

/* closeDir(handle): Promise<void>; closing twice is fine. */
static napi_value js_close_dir(napi_env env, napi_callback_info info) {
  GET_ARGS(1);
  ALLOC_WORK(w, W_CLOSE);
  dir_handle *h = get_handle(env, argv[0]);
  if (!h) TYPE_FAIL(w, "not a directory handle");
  if (h->busy) return rejected(env, w, EBUSY, "closedir");
  h->closed = 1;
  if (!h->dir) {
    napi_value promise, undef;
    napi_deferred d;
    work_free(w);
    napi_create_promise(env, &d, &promise);
    napi_get_undefined(env, &undef);
    napi_resolve_deferred(env, d, undef);
    return promise;
  }
  if (napi_create_reference(env, argv[0], 1, &w->href) != napi_ok) TYPE_FAIL(w, "bad handle");
  h->busy = 1;
  w->h = h;
  return start(env, w, "hsmfleet_fs.closedir");
}

/* statPath(path: Buffer, xattr: string | null): Promise<Buffer> (one-record batch) */
static napi_value js_stat_path(napi_env env, napi_callback_info info) {
  GET_ARGS(2);
  ALLOC_WORK(w, W_STAT);
  int nul = 0, xnul = 0;
  if (copy_bytes(env, argv[0], &w->path, NULL, &nul) != napi_ok) TYPE_FAIL(w, "path must be a Buffer");
  if (copy_optional_string(env, argv[1], &w->name, &xnul) != napi_ok)
    TYPE_FAIL(w, "xattr name must be a string or null");
  if (nul || xnul) return rejected(env, w, EINVAL, "lstat");
  return start(env, w, "hsmfleet_fs.lstat");
}

/* getXattr(path: Buffer, name: string): Promise<Buffer | null> (null: ENODATA) */
static napi_value js_get_xattr(napi_env env, napi_callback_info info) {
  GET_ARGS(2);
  ALLOC_WORK(w, W_GETXATTR);
  int nul = 0, xnul = 0;
  if (copy_bytes(env, argv[0], &w->path, NULL, &nul) != napi_ok) TYPE_FAIL(w, "path must be a Buffer");
  if (copy_optional_string(env, argv[1], &w->name, &xnul) != napi_ok || !w->name)
    TYPE_FAIL(w, "xattr name must be a string");
  if (nul || xnul) return rejected(env, w, EINVAL, "lgetxattr");
  return start(env, w, "hsmfleet_fs.getxattr");
}

/* setXattr(path: Buffer, name: string, value: Buffer): Promise<void> */
static napi_value js_set_xattr(napi_env env, napi_callback_info info) {
  GET_ARGS(3);
  ALLOC_WORK(w, W_SETXATTR);
  int nul = 0, xnul = 0;
  if (copy_bytes(env, argv[0], &w->path, NULL, &nul) != napi_ok) TYPE_FAIL(w, "path must be a Buffer");
  if (copy_optional_string(env, argv[1], &w->name, &xnul) != napi_ok || !w->name)
    TYPE_FAIL(w, "xattr name must be a string");
  if (copy_bytes(env, argv[2], (char **)&w->value, &w->value_len, NULL) != napi_ok)
    TYPE_FAIL(w, "xattr value must be a Buffer");
  if (nul || xnul) return rejected(env, w, EINVAL, "lsetxattr");
  return start(env, w, "hsmfleet_fs.setxattr");
}

/* removeXattr(path: Buffer, name: string): Promise<void> */
static napi_value js_remove_xattr(napi_env env, napi_callback_info info) {
  GET_ARGS(2);
  ALLOC_WORK(w, W_REMOVEXATTR);
  int nul = 0, xnul = 0;
  if (copy_bytes(env, argv[0], &w->path, NULL, &nul) != napi_ok) TYPE_FAIL(w, "path must be a Buffer");
  if (copy_optional_string(env, argv[1], &w->name, &xnul) != napi_ok || !w->name)
    TYPE_FAIL(w, "xattr name must be a string");
  if (nul || xnul) return rejected(env, w, EINVAL, "lremovexattr");
  return start(env, w, "hsmfleet_fs.removexattr");
}

/* readfile.c */
napi_status hsmfleet_register_readfile(napi_env env, napi_value exports);
napi_status hsmfleet_register_writehash(napi_env env, napi_value exports);
napi_status hsmfleet_register_inotify(napi_env env, napi_value exports);
napi_status hsmfleet_register_smallfile(napi_env env, napi_value exports);
napi_status hsmfleet_register_hugebuf(napi_env env, napi_value exports);
napi_status hsmfleet_register_mtimes(napi_env env, napi_value exports);
napi_status hsmfleet_register_tally(napi_env env, napi_value exports);
napi_status hsmfleet_register_batch_arena(napi_env env, napi_value exports);

static napi_value init(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
      {"opendir", NULL, js_opendir, NULL, NULL, NULL, napi_enumerable, NULL},
      {"opendirs", NULL, js_opendirs, NULL, NULL, NULL, napi_enumerable, NULL},
      {"readBatch", NULL, js_read_batch, NULL, NULL, NULL, napi_enumerable, NULL},
      {"closeDir", NULL, js_close_dir, NULL, NULL, NULL, napi_enumerable, NULL},
      {"statPath", NULL, js_stat_path, NULL, NULL, NULL, napi_enumerable, NULL},
      {"getXattr", NULL, js_get_xattr, NULL, NULL, NULL, napi_enumerable, NULL},
      {"setXattr", NULL, js_set_xattr, NULL, NULL, NULL, napi_enumerable, NULL},
      {"removeXattr", NULL, js_remove_xattr, NULL, NULL, NULL, napi_enumerable, NULL},
  };
  if (napi_define_properties(env, exports, sizeof props / sizeof props[0], props) != napi_ok)
    return NULL;
  if (hsmfleet_batch_init(env, exports) != napi_ok) return NULL;
  if (hsmfleet_register_readfile(env, exports) != napi_ok) return NULL;
  if (hsmfleet_register_writehash(env, exports) != napi_ok) return NULL;
  if (hsmfleet_register_inotify(env, exports) != napi_ok) return NULL;
  if (hsmfleet_register_smallfile(env, exports) != napi_ok) return NULL;
  if (hsmfleet_register_hugebuf(env, exports) != napi_ok) return NULL;
  if (hsmfleet_register_mtimes(env, exports) != napi_ok) return NULL;
  if (hsmfleet_register_tally(env, exports) != napi_ok) return NULL;
  if (hsmfleet_register_batch_arena(env, exports) != napi_ok) return NULL;
  napi_value v;
  napi_create_uint32(env, FORMAT_VERSION, &v);
  napi_set_named_property(env, exports, "formatVersion", v);
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
