/*
 * hsmfleet_fs: path operations beneath a job root directory fd, never following a symlink and
 * never leaving the root (issue 14: a root-run mover on a multi-user file system).
 *
 * Every operation takes the root's directory fd and a relative raw-byte path ('/'-separated, no
 * empty, "." or ".." segment, no NUL: checked here again, the JS side checks first). The parent
 * directory is reached with ONE openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS |
 * RESOLVE_NO_MAGICLINKS) where the kernel has it (probed once), otherwise by walking component by
 * component with openat(O_DIRECTORY | O_NOFOLLOW). The final component is then used relative to
 * that parent fd with the *at call that never follows it (openat O_NOFOLLOW, mkdirat, symlinkat,
 * unlinkat, fstatat AT_SYMLINK_NOFOLLOW, readlinkat, renameat2 RENAME_NOREPLACE) or through an fd
 * of the entry itself (fchown, fchmod, futimens, fsetxattr, fgetxattr). A directory swapped for a
 * symlink at any time therefore fails with ELOOP instead of being followed.
 *
 * beneath(op, rootFd, rel, nums: number[], data: Buffer | null, out: Buffer | null,
 *         name: string | null): Promise<number>
 *   nums[0] is always "force the openat fallback" (0/1); the others depend on op (see OP_*).
 *   Resolves with a number (an fd, a length, or 0); rejects with an Error carrying errno, syscall
 *   and `at` (bytes of rel that were resolved when the failure happened: the failing component
 *   ends there or at the next '/').
 * beneathProbe(): boolean — whether openat2 is in use (false when the kernel lacks it).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <node_api.h>

#include <errno.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "beneath.h"

#ifndef RENAME_NOREPLACE
#define RENAME_NOREPLACE (1 << 0)
#endif

enum {
  OP_OPEN = 1,     /* nums: [fb, flags, mode]; out: 64-byte stat; resolves with the fd */
  OP_MKDIRS = 2,   /* nums: [fb, mode]: every component of rel, missing ones made */
  OP_MKDIR = 3,    /* nums: [fb, mode] */
  OP_SYMLINK = 4,  /* data: the link target */
  OP_UNLINK = 5,   /* nums: [fb, isDir] */
  OP_LSTAT = 6,    /* out: 64-byte stat */
  OP_READLINK = 7, /* out: target buffer; resolves with the length */
  OP_SETATTR = 8,  /* nums: [fb, uid, gid, mode (-1: keep), mtimeSec, mtimeNsec] */
  OP_SETXATTR = 9, /* name, data = value (regular files and directories only) */
  OP_GETXATTR = 10, /* name, out; resolves with the length, -1 when absent */
  OP_RENAME = 11,  /* data: the new relative path (RENAME_NOREPLACE) */
};

/* Stat record written into `out` (little-endian): u64 dev, u64 ino, u32 mode, u32 uid, u32 gid,
 * u32 nlink, u64 size, i64 mtime sec, u32 mtime nsec, u32 reserved, u64 blocks (512-byte units). 64 bytes. */
#define STAT_REC 64

static int openat2_state = 0; /* 0 unknown, 1 available, -1 not */

static int have_openat2(void) {
  if (openat2_state == 0) {
    struct open_how how = {.flags = O_RDONLY | O_DIRECTORY | O_CLOEXEC,
                           .resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS};
    int fd = (int)syscall(SYS_openat2, AT_FDCWD, ".", &how, sizeof how);
    if (fd >= 0) {
      close(fd);
      openat2_state = 1;
    } else {
      openat2_state = (errno == ENOSYS || errno == EPERM || errno == EINVAL) ? -1 : 1;
    }
  }
  return openat2_state == 1;
}

typedef struct {
  napi_async_work aw;
  napi_deferred deferred;
  napi_ref out_ref;
  int op;
  int rootfd;
  int fallback;
  char *rel;
  size_t rel_len;
  char *data; /* symlink target / rename destination (NUL-terminated) or xattr value */
  size_t data_len;
  char *name;
  double nums[8];
  uint8_t *out;
  size_t out_len;
  /* results */
  double result;
  int err;
  const char *syscall;
  size_t at;
} bw_work;

static void bw_free(bw_work *w) {
  if (!w) return;
  free(w->rel);
  free(w->data);
  free(w->name);
  free(w);
}

static int fail(bw_work *w, int err, const char *sc, size_t at) {
  w->err = err;
  w->syscall = sc;
  w->at = at;
  return -1;
}

/* Checks the syntax of a relative path: no empty, "." or ".." segment, not absolute. */
static int check_rel(const char *rel, size_t len) {
  if (len == 0 || rel[0] == '/') return 0;
  size_t start = 0;
  for (size_t i = 0; i <= len; i++) {
    if (i < len && rel[i] != '/') continue;
    size_t n = i - start;
    if (n == 0) return 0;
    if (n == 1 && rel[start] == '.') return 0;
    if (n == 2 && rel[start] == '.' && rel[start + 1] == '.') return 0;
    start = i + 1;
  }
  return 1;
}

void hsmfleet_put_stat(uint8_t *o, const struct stat *st) {
  uint64_t dev = st->st_dev, ino = st->st_ino, size = (uint64_t)st->st_size,
           blocks = (uint64_t)st->st_blocks;
  int64_t sec = st->st_mtim.tv_sec;
  uint32_t mode = st->st_mode, uid = st->st_uid, gid = st->st_gid, nlink = (uint32_t)st->st_nlink,
           nsec = (uint32_t)st->st_mtim.tv_nsec, zero = 0;
  memcpy(o, &dev, 8);
  memcpy(o + 8, &ino, 8);
  memcpy(o + 16, &mode, 4);
  memcpy(o + 20, &uid, 4);
  memcpy(o + 24, &gid, 4);
  memcpy(o + 28, &nlink, 4);
  memcpy(o + 32, &size, 8);
  memcpy(o + 40, &sec, 8);
  memcpy(o + 48, &nsec, 4);
  memcpy(o + 52, &zero, 4);
  memcpy(o + 56, &blocks, 8);
}

/*
 * Opens directory rel[0..len) beneath rootfd (len 0: a duplicate of rootfd). With `create`,
 * missing components are made with `mode` (walk only). Returns the fd or -1 (w->err set).
 */
static int open_dir_beneath(bw_work *w, const char *rel, size_t len, int create, mode_t mode) {
  if (len == 0) {
    int fd = fcntl(w->rootfd, F_DUPFD_CLOEXEC, 3);
    if (fd < 0) return fail(w, errno, "fcntl", 0);
    return fd;
  }
  char *dir = strndup(rel, len);
  if (!dir) return fail(w, ENOMEM, "malloc", 0);
  if (!w->fallback && have_openat2()) {
    struct open_how how = {.flags = O_RDONLY | O_DIRECTORY | O_CLOEXEC,
                           .resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS};
    for (int tries = 0; tries < 8; tries++) {
      int fd = (int)syscall(SYS_openat2, w->rootfd, dir, &how, sizeof how);
      if (fd >= 0) {
        free(dir);
        return fd;
      }
      if (errno == EAGAIN || errno == EINTR) continue;
      if (errno == ENOENT && create) break; /* the walk below makes what is missing */
      /* Name the component: the walk finds it (and fails the same way, without following). */
      break;
    }
  }
  /* Component-by-component walk (also used to find which component failed). */
  int cur = fcntl(w->rootfd, F_DUPFD_CLOEXEC, 3);
  if (cur < 0) {
    free(dir);
    return fail(w, errno, "fcntl", 0);
  }
  size_t start = 0;
  for (size_t i = 0; i <= len; i++) {
    if (i < len && dir[i] != '/') continue;
    dir[i] = 0;
    const char *comp = dir + start;
    int nfd = -1;
    for (int attempt = 0; attempt < 2 && nfd < 0; attempt++) {
      do {
        nfd = openat(cur, comp, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
      } while (nfd < 0 && errno == EINTR);
      if (nfd >= 0) break;
      int e = errno;
      if (e == ENOENT && create && attempt == 0) {
        if (mkdirat(cur, comp, mode) != 0 && errno != EEXIST) {
          int me = errno;
          close(cur);
          free(dir);
          return fail(w, me, "mkdirat", start);
        }
        continue;
      }
      struct stat st;
      if ((e == ENOTDIR || e == ELOOP) && fstatat(cur, comp, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
          S_ISLNK(st.st_mode))
        e = ELOOP;
      close(cur);
      free(dir);
      return fail(w, e, "openat", start);
    }
    close(cur);
    cur = nfd;
    if (i < len) dir[i] = '/';
    start = i + 1;
  }
  free(dir);
  return cur;
}

/* Splits rel into parent (returned fd) and last component (*last). */
static int open_parent(bw_work *w, const char *rel, size_t len, const char **last, int create) {
  size_t slash = len;
  while (slash > 0 && rel[slash - 1] != '/') slash--;
  *last = rel + slash;
  return open_dir_beneath(w, rel, slash == 0 ? 0 : slash - 1, create, 0755);
}

static size_t last_at(const char *rel, size_t len) {
  size_t slash = len;
  while (slash > 0 && rel[slash - 1] != '/') slash--;
  return slash;
}

/* Opens the final entry (not a symlink) for attribute changes; -1 + err ELOOP for a symlink. */
static int open_entry(bw_work *w, int pfd, const char *last, size_t at, struct stat *st) {
  if (fstatat(pfd, last, st, AT_SYMLINK_NOFOLLOW) != 0) return fail(w, errno, "fstatat", at);
  if (S_ISLNK(st->st_mode)) return fail(w, ELOOP, "openat", at);
  if (!S_ISREG(st->st_mode) && !S_ISDIR(st->st_mode)) return fail(w, EINVAL, "openat", at);
  int fd;
  do {
    fd = openat(pfd, last, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
  } while (fd < 0 && errno == EINTR);
  if (fd < 0) return fail(w, errno, "openat", at);
  struct stat now;
  if (fstat(fd, &now) != 0 || now.st_dev != st->st_dev || now.st_ino != st->st_ino) {
    close(fd);
    return fail(w, ESTALE, "fstat", at); /* replaced between the stat and the open */
  }
  return fd;
}

static void bw_execute(napi_env env, void *data) {
  (void)env;
  bw_work *w = data;
  const char *rel = w->rel;
  size_t len = w->rel_len;
  if (!check_rel(rel, len)) {
    fail(w, EINVAL, "path", 0);
    return;
  }
  if (w->op == OP_MKDIRS) {
    int fd = open_dir_beneath(w, rel, len, 1, (mode_t)w->nums[1]);
    if (fd >= 0) close(fd);
    return;
  }
  if (w->op == OP_OPEN && !w->fallback && have_openat2()) {
    /* One openat2 for the whole path; on failure the walk below names the component. */
    int flags = (int)w->nums[1];
    struct open_how how = {.flags = (uint64_t)(flags | O_NOFOLLOW | O_CLOEXEC),
                           .mode = (flags & O_CREAT) ? (uint64_t)w->nums[2] : 0,
                           .resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS};
    int fd;
    int tries = 0;
    do {
      fd = (int)syscall(SYS_openat2, w->rootfd, rel, &how, sizeof how);
    } while (fd < 0 && (errno == EINTR || errno == EAGAIN) && ++tries < 16);
    if (fd >= 0) {
      struct stat st;
      if (w->out && w->out_len >= STAT_REC) {
        if (fstat(fd, &st) != 0) {
          fail(w, errno, "fstat", 0);
          close(fd);
          return;
        }
        hsmfleet_put_stat(w->out, &st);
      }
      w->result = fd;
      return;
    }
    if (errno == EEXIST) {
      fail(w, errno, "openat2", last_at(rel, len));
      return;
    }
  }
  const char *last;
  size_t at = last_at(rel, len);
  int pfd = open_parent(w, rel, len, &last, 0);
  if (pfd < 0) return;
  switch (w->op) {
    case OP_OPEN: {
      int flags = (int)w->nums[1];
      int fd;
      if (!w->fallback && have_openat2()) {
        struct open_how how = {.flags = (uint64_t)(flags | O_NOFOLLOW | O_CLOEXEC),
                               .mode = (flags & O_CREAT) ? (uint64_t)w->nums[2] : 0,
                               .resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS |
                                          RESOLVE_NO_MAGICLINKS};
        int tries = 0;
        do {
          fd = (int)syscall(SYS_openat2, pfd, last, &how, sizeof how);
        } while (fd < 0 && (errno == EINTR || errno == EAGAIN) && ++tries < 16);
        if (fd < 0 && errno == EAGAIN) /* renames all the time: the plain no-follow open */
          fd = openat(pfd, last, flags | O_NOFOLLOW | O_CLOEXEC, (mode_t)w->nums[2]);
      } else {
        do {
          fd = openat(pfd, last, flags | O_NOFOLLOW | O_CLOEXEC, (mode_t)w->nums[2]);
        } while (fd < 0 && errno == EINTR);
      }
      if (fd < 0) {
        fail(w, errno, "openat", at);
        break;
      }
      if (w->out && w->out_len >= STAT_REC) {
        struct stat st;
        if (fstat(fd, &st) != 0) {
          fail(w, errno, "fstat", at);
          close(fd);
          break;
        }
        hsmfleet_put_stat(w->out, &st);
      }
      w->result = fd;
      break;
    }
    case OP_MKDIR:
      if (mkdirat(pfd, last, (mode_t)w->nums[1]) != 0) fail(w, errno, "mkdirat", at);
      break;
    case OP_SYMLINK:
      if (symlinkat(w->data, pfd, last) != 0) fail(w, errno, "symlinkat", at);
      break;
    case OP_UNLINK:
      if (unlinkat(pfd, last, w->nums[1] != 0 ? AT_REMOVEDIR : 0) != 0)
        fail(w, errno, "unlinkat", at);
      break;
    case OP_LSTAT: {
      struct stat st;
      if (fstatat(pfd, last, &st, AT_SYMLINK_NOFOLLOW) != 0) {
        fail(w, errno, "fstatat", at);
        break;
      }
      if (w->out && w->out_len >= STAT_REC) hsmfleet_put_stat(w->out, &st);
      break;
    }
    case OP_READLINK: {
      ssize_t n = readlinkat(pfd, last, (char *)w->out, w->out_len);
      if (n < 0) fail(w, errno, "readlinkat", at);
      else w->result = (double)n;
      break;
    }
    case OP_SETATTR: {
      uid_t uid = (uid_t)w->nums[1];
      gid_t gid = (gid_t)w->nums[2];
      double mode = w->nums[3];
      struct timespec ts[2];
      ts[0].tv_sec = ts[1].tv_sec = (time_t)w->nums[4];
      ts[0].tv_nsec = ts[1].tv_nsec = (long)w->nums[5];
      struct stat st;
      if (fstatat(pfd, last, &st, AT_SYMLINK_NOFOLLOW) != 0) {
        fail(w, errno, "fstatat", at);
        break;
      }
      if (S_ISLNK(st.st_mode)) {
        /* A symlink: its own owner and times, by name relative to the pinned parent. */
        if (fchownat(pfd, last, uid, gid, AT_SYMLINK_NOFOLLOW) != 0) fail(w, errno, "fchownat", at);
        else if (utimensat(pfd, last, ts, AT_SYMLINK_NOFOLLOW) != 0)
          fail(w, errno, "utimensat", at);
        break;
      }
      int fd = open_entry(w, pfd, last, at, &st);
      if (fd < 0) break;
      if (fchown(fd, uid, gid) != 0) fail(w, errno, "fchown", at);
      else if (mode >= 0 && fchmod(fd, (mode_t)mode & 07777) != 0) fail(w, errno, "fchmod", at);
      else if (futimens(fd, ts) != 0) fail(w, errno, "futimens", at);
      close(fd);
      break;
    }
    case OP_SETXATTR:
    case OP_GETXATTR: {
      struct stat st;
      int fd = open_entry(w, pfd, last, at, &st);
      if (fd < 0) break;
      if (w->op == OP_SETXATTR) {
        if (fsetxattr(fd, w->name, w->data, w->data_len, 0) != 0) fail(w, errno, "fsetxattr", at);
      } else {
        ssize_t n = fgetxattr(fd, w->name, w->out, w->out_len);
        if (n >= 0) w->result = (double)n;
        else if (errno == ENODATA) w->result = -1;
        else fail(w, errno, "fgetxattr", at);
      }
      close(fd);
      break;
    }
    case OP_RENAME: {
      if (!check_rel(w->data, w->data_len)) {
        fail(w, EINVAL, "path", 0);
        break;
      }
      const char *to_last;
      size_t keep_err = 0;
      int tfd = open_parent(w, w->data, w->data_len, &to_last, 0);
      if (tfd < 0) break;
      if (syscall(SYS_renameat2, pfd, last, tfd, to_last, RENAME_NOREPLACE) != 0)
        fail(w, errno, "renameat2", keep_err);
      close(tfd);
      break;
    }
    default:
      fail(w, EINVAL, "op", 0);
  }
  close(pfd);
}

static void bw_complete(napi_env env, napi_status status, void *data) {
  bw_work *w = data;
  if (w->out_ref) napi_delete_reference(env, w->out_ref);
  if (status != napi_ok) {
    w->err = ECANCELED;
    w->syscall = "beneath";
  }
  if (w->err == 0) {
    napi_value v;
    napi_create_double(env, w->result, &v);
    napi_resolve_deferred(env, w->deferred, v);
  } else {
    char text[160];
    snprintf(text, sizeof text, "%s: %s", w->syscall, strerror(w->err));
    napi_value msg, err, v;
    napi_create_string_utf8(env, text, NAPI_AUTO_LENGTH, &msg);
    napi_create_error(env, NULL, msg, &err);
    napi_create_int32(env, w->err, &v);
    napi_set_named_property(env, err, "errno", v);
    napi_create_string_utf8(env, w->syscall, NAPI_AUTO_LENGTH, &v);
    napi_set_named_property(env, err, "syscall", v);
    napi_create_uint32(env, (uint32_t)w->at, &v);
    napi_set_named_property(env, err, "at", v);
    napi_reject_deferred(env, w->deferred, err);
  }
  napi_delete_async_work(env, w->aw);
  bw_free(w);
}

static int copy_buffer(napi_env env, napi_value v, char **out, size_t *len, int allow_null) {
  napi_valuetype t;
  napi_typeof(env, v, &t);
  if (allow_null && (t == napi_null || t == napi_undefined)) return 1;
  bool isbuf = false;
  void *p = NULL;
  size_t n = 0;
  if (napi_is_buffer(env, v, &isbuf) != napi_ok || !isbuf ||
      napi_get_buffer_info(env, v, &p, &n) != napi_ok)
    return 0;
  *out = malloc(n + 1);
  if (!*out) return 0;
  memcpy(*out, p, n);
  (*out)[n] = 0;
  *len = n;
  return 1;
}

/* beneath(op, rootFd, rel, nums, data, out, name): Promise<number> */
static napi_value js_beneath(napi_env env, napi_callback_info info) {
  size_t argc = 7;
  napi_value argv[7];
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok) return NULL;
  if (argc < 7) {
    napi_throw_type_error(env, NULL, "beneath(op, rootFd, rel, nums, data, out, name)");
    return NULL;
  }
  bw_work *w = calloc(1, sizeof *w);
  if (!w) {
    napi_throw_error(env, NULL, "hsmfleet_fs: out of memory");
    return NULL;
  }
  int32_t op = 0, rootfd = -1;
  bool isarr = false;
  uint32_t n = 0;
  if (napi_get_value_int32(env, argv[0], &op) != napi_ok ||
      napi_get_value_int32(env, argv[1], &rootfd) != napi_ok || rootfd < 0 ||
      !copy_buffer(env, argv[2], &w->rel, &w->rel_len, 0) ||
      memchr(w->rel, 0, w->rel_len) != NULL || napi_is_array(env, argv[3], &isarr) != napi_ok ||
      !isarr || napi_get_array_length(env, argv[3], &n) != napi_ok || n > 8 ||
      !copy_buffer(env, argv[4], &w->data, &w->data_len, 1)) {
    bw_free(w);
    napi_throw_type_error(env, NULL, "beneath: bad arguments (rel must be a Buffer without NUL)");
    return NULL;
  }
  for (uint32_t i = 0; i < n; i++) {
    napi_value e;
    napi_get_element(env, argv[3], i, &e);
    napi_get_value_double(env, e, &w->nums[i]);
  }
  napi_valuetype t;
  napi_typeof(env, argv[5], &t);
  if (t != napi_null && t != napi_undefined) {
    bool isbuf = false;
    void *p;
    if (napi_is_buffer(env, argv[5], &isbuf) != napi_ok || !isbuf ||
        napi_get_buffer_info(env, argv[5], &p, &w->out_len) != napi_ok) {
      bw_free(w);
      napi_throw_type_error(env, NULL, "beneath: out must be a Buffer or null");
      return NULL;
    }
    w->out = p;
    napi_create_reference(env, argv[5], 1, &w->out_ref);
  }
  napi_typeof(env, argv[6], &t);
  if (t == napi_string) {
    size_t sl = 0;
    napi_get_value_string_utf8(env, argv[6], NULL, 0, &sl);
    w->name = malloc(sl + 1);
    napi_get_value_string_utf8(env, argv[6], w->name, sl + 1, &sl);
  }
  w->op = op;
  w->rootfd = rootfd;
  w->fallback = w->nums[0] != 0;
  if ((op == OP_SETXATTR || op == OP_GETXATTR) && !w->name) {
    if (w->out_ref) napi_delete_reference(env, w->out_ref);
    bw_free(w);
    napi_throw_type_error(env, NULL, "beneath: xattr name missing");
    return NULL;
  }
  if ((op == OP_SYMLINK || op == OP_RENAME) && !w->data) {
    if (w->out_ref) napi_delete_reference(env, w->out_ref);
    bw_free(w);
    napi_throw_type_error(env, NULL, "beneath: data missing");
    return NULL;
  }
  napi_value promise, name;
  napi_create_promise(env, &w->deferred, &promise);
  napi_create_string_utf8(env, "hsmfleet_fs.beneath", NAPI_AUTO_LENGTH, &name);
  if (napi_create_async_work(env, NULL, name, bw_execute, bw_complete, w, &w->aw) != napi_ok ||
      napi_queue_async_work(env, w->aw) != napi_ok) {
    napi_value msg, err;
    napi_create_string_utf8(env, "hsmfleet_fs: cannot queue beneath", NAPI_AUTO_LENGTH, &msg);
    napi_create_error(env, NULL, msg, &err);
    napi_reject_deferred(env, w->deferred, err);
    if (w->out_ref) napi_delete_reference(env, w->out_ref);
    bw_free(w);
  }
  return promise;
}

static napi_value js_probe(napi_env env, napi_callback_info info) {
  (void)info;
  napi_value v;
  napi_get_boolean(env, have_openat2(), &v);
  return v;
}

/* Used by readfile.c: opens rel beneath rootfd for reading (O_NOFOLLOW everywhere). */
int hsmfleet_open_beneath(int rootfd, const char *rel, size_t len, int flags, int fallback,
                          int *err) {
  return hsmfleet_open_beneath_at(rootfd, rel, len, flags, 0, fallback, err, NULL);
}

/*
 * Used by smallfile.c: the same with a creation mode (for O_CREAT) and, with `at`, on failure the
 * bytes of rel resolved when it failed (as the beneath() rejections' `at`: the component walk
 * names it). Without `at` a failed openat2 is returned as it is (readfile.c's fast path).
 */
int hsmfleet_open_beneath_at(int rootfd, const char *rel, size_t len, int flags, int mode,
                             int fallback, int *err, size_t *at) {
  bw_work w;
  memset(&w, 0, sizeof w);
  w.rootfd = rootfd;
  w.fallback = fallback;
  if (at) *at = 0;
  if (!check_rel(rel, len)) {
    *err = EINVAL;
    return -1;
  }
  uint64_t how_mode = (flags & O_CREAT) ? (uint64_t)mode : 0;
  if (!fallback && have_openat2()) {
    struct open_how how = {.flags = (uint64_t)(flags | O_NOFOLLOW | O_CLOEXEC),
                           .mode = how_mode,
                           .resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS};
    int fd;
    int tries = 0;
    do {
      fd = (int)syscall(SYS_openat2, rootfd, rel, &how, sizeof how);
    } while (fd < 0 && (errno == EINTR || errno == EAGAIN) && ++tries < 16);
    if (fd >= 0) return fd;
    if (!at && errno != EAGAIN) {
      *err = errno;
      return -1;
    }
    if (errno == EEXIST) {
      *err = errno;
      *at = last_at(rel, len);
      return -1;
    }
    /* Any other failure: the walk below names the component (and fails the same way). */
  }
  const char *last;
  int pfd = open_parent(&w, rel, len, &last, 0);
  if (pfd < 0) {
    *err = w.err;
    if (at) *at = w.at;
    return -1;
  }
  int fd;
  if (!fallback && have_openat2()) {
    struct open_how how = {.flags = (uint64_t)(flags | O_NOFOLLOW | O_CLOEXEC),
                           .mode = how_mode,
                           .resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS};
    int tries = 0;
    do {
      fd = (int)syscall(SYS_openat2, pfd, last, &how, sizeof how);
    } while (fd < 0 && (errno == EINTR || errno == EAGAIN) && ++tries < 16);
    if (fd < 0 && errno == EAGAIN) fd = openat(pfd, last, flags | O_NOFOLLOW | O_CLOEXEC, mode);
  } else {
    do {
      fd = openat(pfd, last, flags | O_NOFOLLOW | O_CLOEXEC, mode);
    } while (fd < 0 && errno == EINTR);
  }
  if (fd < 0) {
    *err = errno;
    if (at) *at = last_at(rel, len);
  }
  close(pfd);
  return fd;
}

napi_status hsmfleet_register_beneath(napi_env env, napi_value exports) {
  napi_property_descriptor p[] = {
      {"beneath", NULL, js_beneath, NULL, NULL, NULL, napi_enumerable, NULL},
      {"beneathProbe", NULL, js_probe, NULL, NULL, NULL, napi_enumerable, NULL},
  };
  return napi_define_properties(env, exports, 2, p);
}
