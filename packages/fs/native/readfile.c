/*
 * readSmallFile: one threadpool job per small file for the export's Put Blob path. It opens the
 * file (O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY), fstats it, reads it whole into the caller's
 * buffer when it fits, fstats it again, optionally computes the MD5 of what was read (OpenSSL's,
 * exported by Node), and closes it: the five threadpool round trips (open, fstat, read, fstat,
 * close) of the JS path become one, and the MD5 leaves the JS thread.
 *
 * readSmallFile(path: Buffer, out: Buffer, flags: number): Promise<void>
 *   out = 144-byte header + data capacity (out.length - 128). flags bit 0: compute the MD5.
 *   The promise resolves once the job is done; everything is reported in the header, as
 *   little-endian float64 slots (integers, exact):
 *     0 errno (0: ok)   1 failed call (1 open, 2 fstat, 3 read)   2 st_mode & S_IFMT (before)
 *     3 bytes read      4..8 before: size, mtime sec, mtime nsec, ctime sec, ctime nsec
 *     9..13 after: the same fields (second fstat, after the read)
 *     bytes 112..127: MD5 of the bytes read (flags bit 0, read complete)
 *     bytes 128..143: u64 st_dev, u64 st_ino of the opened file (first fstat)
 *   A file that is not regular, or larger than the capacity, is not read (bytes read 0, the
 *   "after" fields equal "before"); the caller decides what that means.
 * readSmallFiles(paths: Buffer[], outs: Buffer[], flags): Promise<void>: several files in one job.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <node_api.h>

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "beneath.h"

#define HDR 144

typedef struct {
  char *path;
  size_t path_len;
  int rootfd; /* >= 0: path is relative to this job root fd (beneath.c), else absolute */
  uint8_t *out;
  size_t cap; /* data capacity */
} rf_item;

typedef struct {
  napi_async_work aw;
  napi_deferred deferred;
  napi_ref outs_ref; /* the Buffer (or the array of Buffers) the results go into */
  uint32_t flags;
  uint32_t n;
  rf_item items[];
} rf_work;

static void rf_free(rf_work *w) {
  for (uint32_t i = 0; i < w->n; i++) free(w->items[i].path);
  free(w);
}

static void put(uint8_t *hdr, int slot, double v) { memcpy(hdr + slot * 8, &v, 8); }

static void put_stat(uint8_t *hdr, int first, const struct stat *st) {
  put(hdr, first, (double)st->st_size);
  put(hdr, first + 1, (double)st->st_mtim.tv_sec);
  put(hdr, first + 2, (double)st->st_mtim.tv_nsec);
  put(hdr, first + 3, (double)st->st_ctim.tv_sec);
  put(hdr, first + 4, (double)st->st_ctim.tv_nsec);
}

/* Reading a file to archive or export it must not make it look recently used: a release policy
 * orders files by atime (Lustre's copytool opens with O_NOATIME too). Only the owner or
 * CAP_FOWNER may ask for it, so only when running as root. */
static int noatime_flag(void) { return geteuid() == 0 ? O_NOATIME : 0; }

static void read_one(rf_item *w, uint32_t flags) {
  uint8_t *hdr = w->out;
  memset(hdr, 0, HDR);
  int fd, oerr = 0;
  if (w->rootfd >= 0) {
    fd = hsmfleet_open_beneath(w->rootfd, w->path, w->path_len,
                               O_RDONLY | O_NOCTTY | noatime_flag(), (flags & 2) != 0, &oerr);
  } else {
    do {
      fd = open(w->path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY | noatime_flag());
    } while (fd < 0 && errno == EINTR);
    oerr = errno;
  }
  if (fd < 0) {
    put(hdr, 0, oerr);
    put(hdr, 1, 1);
    return;
  }
  struct stat before, after;
  if (fstat(fd, &before) != 0) {
    put(hdr, 0, errno);
    put(hdr, 1, 2);
    close(fd);
    return;
  }
  put(hdr, 2, (double)(before.st_mode & S_IFMT));
  {
    uint64_t dev = before.st_dev, ino = before.st_ino;
    memcpy(hdr + 128, &dev, 8);
    memcpy(hdr + 136, &ino, 8);
  }
  put_stat(hdr, 4, &before);
  put_stat(hdr, 9, &before);
  if (!S_ISREG(before.st_mode) || before.st_size < 0 || (uint64_t)before.st_size > w->cap) {
    close(fd);
    return;
  }
  size_t want = (size_t)before.st_size, done = 0;
  uint8_t *dst = w->out + HDR;
  while (done < want) {
    ssize_t n = pread(fd, dst + done, want - done, (off_t)done);
    if (n < 0) {
      if (errno == EINTR) continue;
      put(hdr, 0, errno);
      put(hdr, 1, 3);
      close(fd);
      return;
    }
    if (n == 0) break;
    done += (size_t)n;
  }
  put(hdr, 3, (double)done);
  if (fstat(fd, &after) != 0) {
    put(hdr, 0, errno);
    put(hdr, 1, 2);
    close(fd);
    return;
  }
  put_stat(hdr, 9, &after);
  close(fd);
  if ((flags & 1) && done == want) {
    unsigned int len = 0;
    if (EVP_Digest(dst, done, hdr + 112, &len, EVP_md5(), NULL) != 1 || len != 16) {
      memset(hdr + 112, 0, 16);
      put(hdr, 0, EIO);
      put(hdr, 1, 4);
    }
  }
}

static void rf_execute(napi_env env, void *data) {
  (void)env;
  rf_work *w = data;
  for (uint32_t i = 0; i < w->n; i++) read_one(&w->items[i], w->flags);
}

static void rf_complete(napi_env env, napi_status status, void *data) {
  rf_work *w = data;
  napi_value undef;
  napi_get_undefined(env, &undef);
  if (w->outs_ref) napi_delete_reference(env, w->outs_ref);
  if (status == napi_ok) {
    napi_resolve_deferred(env, w->deferred, undef);
  } else {
    napi_value msg, err;
    napi_create_string_utf8(env, "hsmfleet_fs: readSmallFile was cancelled", NAPI_AUTO_LENGTH,
                            &msg);
    napi_create_error(env, NULL, msg, &err);
    napi_reject_deferred(env, w->deferred, err);
  }
  napi_delete_async_work(env, w->aw);
  rf_free(w);
}

/* Copies a path Buffer into a NUL-terminated string; NULL (and a TypeError) when unusable. */
static char *copy_path(napi_env env, napi_value v, size_t *len) {
  void *pdata = NULL;
  size_t plen = 0;
  bool isbuf = false;
  if (napi_is_buffer(env, v, &isbuf) != napi_ok || !isbuf ||
      napi_get_buffer_info(env, v, &pdata, &plen) != napi_ok) {
    napi_throw_type_error(env, NULL, "path must be a Buffer");
    return NULL;
  }
  if (plen == 0 || memchr(pdata, 0, plen) != NULL) {
    napi_throw_type_error(env, NULL, "path must be non-empty and free of NUL bytes");
    return NULL;
  }
  char *path = malloc(plen + 1);
  if (!path) {
    napi_throw_error(env, NULL, "hsmfleet_fs: out of memory");
    return NULL;
  }
  memcpy(path, pdata, plen);
  path[plen] = 0;
  if (len) *len = plen;
  return path;
}

static int get_out(napi_env env, napi_value v, rf_item *item) {
  void *odata = NULL;
  size_t olen = 0;
  bool isbuf = false;
  if (napi_is_buffer(env, v, &isbuf) != napi_ok || !isbuf ||
      napi_get_buffer_info(env, v, &odata, &olen) != napi_ok || olen < HDR) {
    napi_throw_type_error(env, NULL, "out must be a Buffer of at least 128 bytes");
    return 0;
  }
  item->out = odata;
  item->cap = olen - HDR;
  return 1;
}

static napi_value rf_start(napi_env env, rf_work *w, napi_value outs) {
  napi_value promise, name;
  if (napi_create_reference(env, outs, 1, &w->outs_ref) != napi_ok ||
      napi_create_promise(env, &w->deferred, &promise) != napi_ok) {
    if (w->outs_ref) napi_delete_reference(env, w->outs_ref);
    rf_free(w);
    napi_throw_error(env, NULL, "hsmfleet_fs: cannot start readSmallFile");
    return NULL;
  }
  napi_create_string_utf8(env, "hsmfleet_fs.readSmallFile", NAPI_AUTO_LENGTH, &name);
  if (napi_create_async_work(env, NULL, name, rf_execute, rf_complete, w, &w->aw) != napi_ok ||
      napi_queue_async_work(env, w->aw) != napi_ok) {
    napi_value msg, err;
    napi_create_string_utf8(env, "hsmfleet_fs: cannot queue readSmallFile", NAPI_AUTO_LENGTH,
                            &msg);
    napi_create_error(env, NULL, msg, &err);
    napi_reject_deferred(env, w->deferred, err);
    napi_delete_reference(env, w->outs_ref);
    rf_free(w);
  }
  return promise;
}

/* readSmallFile(path: Buffer, out: Buffer, flags: number): Promise<void> */
static napi_value js_read_small_file(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok) return NULL;
  if (argc < 3) {
    napi_throw_type_error(env, NULL, "readSmallFile(path, out, flags)");
    return NULL;
  }
  uint32_t flags = 0;
  if (napi_get_value_uint32(env, argv[2], &flags) != napi_ok) {
    napi_throw_type_error(env, NULL, "flags must be a number");
    return NULL;
  }
  rf_work *w = calloc(1, sizeof *w + sizeof(rf_item));
  if (!w) {
    napi_throw_error(env, NULL, "hsmfleet_fs: out of memory");
    return NULL;
  }
  w->flags = flags;
  w->items[0].rootfd = -1;
  if (!get_out(env, argv[1], &w->items[0]) || !(w->items[0].path = copy_path(env, argv[0], &w->items[0].path_len))) {
    rf_free(w);
    return NULL;
  }
  w->n = 1;
  return rf_start(env, w, argv[1]);
}

/*
 * readSmallFiles(paths: Buffer[], outs: Buffer[], flags: number): Promise<void>: the same for
 * several files, one after the other in ONE job (one threadpool wake-up for all of them).
 */
static napi_value read_small_files(napi_env env, napi_value *argv, size_t argc, int32_t rootfd) {
  bool a = false, b = false;
  uint32_t n = 0, m = 0, flags = 0;
  if (argc < 3 || napi_is_array(env, argv[0], &a) != napi_ok || !a ||
      napi_is_array(env, argv[1], &b) != napi_ok || !b ||
      napi_get_array_length(env, argv[0], &n) != napi_ok ||
      napi_get_array_length(env, argv[1], &m) != napi_ok || n != m || n == 0 || n > 4096 ||
      napi_get_value_uint32(env, argv[2], &flags) != napi_ok) {
    napi_throw_type_error(env, NULL,
                          "readSmallFiles(paths: Buffer[], outs: Buffer[], flags): arrays of the "
                          "same length, 1 to 4096");
    return NULL;
  }
  rf_work *w = calloc(1, sizeof *w + n * sizeof(rf_item));
  if (!w) {
    napi_throw_error(env, NULL, "hsmfleet_fs: out of memory");
    return NULL;
  }
  w->flags = flags;
  for (uint32_t i = 0; i < n; i++) {
    napi_value p, o;
    w->items[i].rootfd = rootfd;
    if (napi_get_element(env, argv[0], i, &p) != napi_ok ||
        napi_get_element(env, argv[1], i, &o) != napi_ok || !get_out(env, o, &w->items[i]) ||
        !(w->items[i].path = copy_path(env, p, &w->items[i].path_len))) {
      w->n = i;
      rf_free(w);
      return NULL;
    }
    w->n = i + 1;
  }
  return rf_start(env, w, argv[1]);
}

static napi_value js_read_small_files(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok) return NULL;
  return read_small_files(env, argv, argc, -1);
}

/*
 * readSmallFilesBeneath(rootFd, rels: Buffer[], outs: Buffer[], flags): the same with every path
 * relative to a job root fd, opened by hsmfleet_open_beneath (no symlink followed anywhere, never
 * outside the root). flags bit 1: force the openat walk instead of openat2.
 */
static napi_value js_read_small_files_beneath(napi_env env, napi_callback_info info) {
  size_t argc = 4;
  napi_value argv[4];
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok) return NULL;
  int32_t rootfd = -1;
  if (argc < 4 || napi_get_value_int32(env, argv[0], &rootfd) != napi_ok || rootfd < 0) {
    napi_throw_type_error(env, NULL, "readSmallFilesBeneath(rootFd, rels, outs, flags)");
    return NULL;
  }
  return read_small_files(env, argv + 1, argc - 1, rootfd);
}

/* Called from the module's init (dirscan.c). */
napi_status hsmfleet_register_readfile(napi_env env, napi_value exports) {
  napi_property_descriptor p[] = {
      {"readSmallFile", NULL, js_read_small_file, NULL, NULL, NULL, napi_enumerable, NULL},
      {"readSmallFiles", NULL, js_read_small_files, NULL, NULL, NULL, napi_enumerable, NULL},
      {"readSmallFilesBeneath", NULL, js_read_small_files_beneath, NULL, NULL, NULL,
       napi_enumerable, NULL},
  };
  if (napi_define_properties(env, exports, 3, p) != napi_ok) return napi_generic_failure;
  return hsmfleet_register_beneath(env, exports);
}
