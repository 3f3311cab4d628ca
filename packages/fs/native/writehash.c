/*
 * writehash: the download direction's counterpart of readfile.c / preadCrc64 — data written into
 * an ALREADY-OPEN descriptor at an offset and hashed in the same libuv threadpool job, piece by
 * piece while each piece is still in the CPU cache: no MD5 on the JS thread, no second pass over
 * the file. The descriptor is the caller's (opened by TargetRoot / HsmEmulation, fd-relative, no
 * symlink followed); nothing here opens or closes anything by path.
 *
 *   md5Create(): Md5State                  a native MD5 context (an N-API external; freed on GC)
 *   md5Digest(state): Buffer               the 16-byte digest; the state is spent afterwards
 *   pwriteHash(fd, data, position, state|null): Promise<number>
 *       pwrite()s all of `data` at `position` (EINTR and short writes retried) and, with a state,
 *       feeds the same bytes to it, 1 MiB at a time right after each piece is written. Resolves
 *       with the bytes written (data.length).
 *   preadHash(fd, position, length, state): Promise<number>
 *       reads [position, position+length) through a private 1 MiB buffer (the JS heap never sees
 *       the data) and feeds it to the state; stops at the end of the file; resolves with the
 *       bytes read.
 *   writeWhole(fd, data, md5Out: Buffer|null): Promise<void>
 *       one small file in one job: pwrite of all of `data` at 0, ftruncate to data.length (a
 *       longer file is cut, a sized stub keeps no hole past it), MD5 of `data` into md5Out
 *       (16 bytes) when given.
 *
 * A state must not be used by two jobs at once: the caller orders its updates (download.ts feeds
 * ranges in file order). Failures reject with an Error carrying code (EIO, ENOSPC, …), errno
 * (negative) and syscall ("write", "read", "ftruncate"), as node:fs errors do.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <node_api.h>

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>

#include "pwrite-runs.h"

#include <openssl/evp.h>

#define PIECE (1024 * 1024)

typedef struct {
  EVP_MD_CTX *ctx;
  int busy;  /* a job is using it */
  int spent; /* digested */
} md5_state;

static void md5_finalize(napi_env env, void *data, void *hint) {
  (void)env;
  (void)hint;
  md5_state *s = data;
  if (s->ctx) EVP_MD_CTX_free(s->ctx);
  free(s);
}

static napi_value throw_type(napi_env env, const char *msg) {
  napi_throw_type_error(env, NULL, msg);
  return NULL;
}

static napi_value js_md5_create(napi_env env, napi_callback_info info) {
  (void)info;
  md5_state *s = calloc(1, sizeof *s);
  if (!s || !(s->ctx = EVP_MD_CTX_new()) || EVP_DigestInit_ex(s->ctx, EVP_md5(), NULL) != 1) {
    if (s && s->ctx) EVP_MD_CTX_free(s->ctx);
    free(s);
    napi_throw_error(env, NULL, "hsmfleet_fs: cannot make an MD5 context");
    return NULL;
  }
  napi_value v;
  if (napi_create_external(env, s, md5_finalize, NULL, &v) != napi_ok) {
    md5_finalize(env, s, NULL);
    napi_throw_error(env, NULL, "hsmfleet_fs: cannot make an MD5 context");
    return NULL;
  }
  return v;
}

static md5_state *get_state(napi_env env, napi_value v) {
  napi_valuetype t;
  void *p = NULL;
  if (napi_typeof(env, v, &t) != napi_ok || t != napi_external ||
      napi_get_value_external(env, v, &p) != napi_ok || p == NULL)
    return NULL;
  return p;
}

static napi_value js_md5_digest(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok) return NULL;
  md5_state *s = argc < 1 ? NULL : get_state(env, argv[0]);
  if (!s) return throw_type(env, "md5Digest(state): state from md5Create");
  if (s->busy || s->spent) return throw_type(env, "md5Digest: the state is in use or spent");
  uint8_t out[16];
  unsigned int len = 0;
  s->spent = 1;
  if (EVP_DigestFinal_ex(s->ctx, out, &len) != 1 || len != 16) {
    napi_throw_error(env, NULL, "hsmfleet_fs: MD5 digest failed");
    return NULL;
  }
  napi_value buf;
  void *dst;
  if (napi_create_buffer_copy(env, 16, out, &dst, &buf) != napi_ok) return NULL;
  return buf;
}

enum { OP_PWRITE = 1, OP_PREAD = 2, OP_WHOLE = 3 };

typedef struct {
  napi_async_work aw;
  napi_deferred deferred;
  napi_ref data_ref; /* the data Buffer (and md5Out) kept alive while a pool thread uses them */
  napi_ref out_ref;
  napi_ref state_ref;
  int op;
  int fd;
  uint8_t *p;
  size_t n;
  int64_t position;
  md5_state *state;
  uint8_t *md5_out;
  size_t done;
  int err;
  const char *syscall;
  /* Sparse: HSMFLEET_SPARSE_BLOCK-aligned blocks (by file offset) of zeros are not written (holes). */
  int sparse;
} wh_work;

/* pwrite-runs.c's write into w's file; w->err and w->syscall set on failure. */
static int write_data(wh_work *w, const uint8_t *p, size_t n, int64_t at) {
  w->err = hsmfleet_pwrite_data(w->fd, p, n, at, w->sparse);
  if (w->err == 0) return 1;
  w->syscall = "write";
  return 0;
}

static void wh_execute(napi_env env, void *data) {
  (void)env;
  wh_work *w = data;
  EVP_MD_CTX *ctx = w->state ? w->state->ctx : NULL;
  if (w->op == OP_PWRITE) {
    while (w->done < w->n) {
      size_t piece = w->n - w->done;
      if (piece > PIECE) piece = PIECE;
      if (!write_data(w, w->p + w->done, piece, w->position + (int64_t)w->done)) return;
      if (ctx && EVP_DigestUpdate(ctx, w->p + w->done, piece) != 1) {
        w->err = EIO;
        w->syscall = "md5";
        return;
      }
      w->done += piece;
    }
  } else if (w->op == OP_PREAD) {
    uint8_t *buf = malloc(PIECE);
    if (!buf) {
      w->err = ENOMEM;
      w->syscall = "read";
      return;
    }
    while (w->done < w->n) {
      size_t want = w->n - w->done;
      if (want > PIECE) want = PIECE;
      ssize_t r = pread(w->fd, buf, want, (off_t)(w->position + (int64_t)w->done));
      if (r < 0) {
        if (errno == EINTR) continue;
        w->err = errno;
        w->syscall = "read";
        break;
      }
      if (r == 0) break;
      if (EVP_DigestUpdate(ctx, buf, (size_t)r) != 1) {
        w->err = EIO;
        w->syscall = "md5";
        break;
      }
      w->done += (size_t)r;
    }
    free(buf);
  } else {
    if (!write_data(w, w->p, w->n, 0)) return;
    w->done = w->n;
    while (ftruncate(w->fd, (off_t)w->n) != 0) {
      if (errno == EINTR) continue;
      w->err = errno;
      w->syscall = "ftruncate";
      return;
    }
    if (w->md5_out) {
      unsigned int len = 0;
      if (EVP_Digest(w->p, w->n, w->md5_out, &len, EVP_md5(), NULL) != 1 || len != 16) {
        w->err = EIO;
        w->syscall = "md5";
      }
    }
  }
}

static void wh_complete(napi_env env, napi_status status, void *data) {
  wh_work *w = data;
  if (w->state) w->state->busy = 0;
  napi_value v;
  if (status == napi_ok && w->err == 0) {
    if (w->op == OP_WHOLE)
      napi_get_undefined(env, &v);
    else
      napi_create_double(env, (double)w->done, &v);
    napi_resolve_deferred(env, w->deferred, v);
  } else {
    char text[256];
    const char *code = "ECANCELED";
    const char *syscall = w->syscall ? w->syscall : "write";
    if (status != napi_ok) {
      snprintf(text, sizeof text, "ECANCELED: the threadpool task was cancelled, %s", syscall);
    } else {
      code = uv_err_name(-w->err);
      snprintf(text, sizeof text, "%s: %s, %s", code, strerror(w->err), syscall);
    }
    napi_value msg, code_v, errno_v, syscall_v;
    napi_create_string_utf8(env, text, NAPI_AUTO_LENGTH, &msg);
    napi_create_error(env, NULL, msg, &v);
    napi_create_string_utf8(env, code, NAPI_AUTO_LENGTH, &code_v);
    napi_create_int32(env, status != napi_ok ? -ECANCELED : -w->err, &errno_v);
    napi_create_string_utf8(env, syscall, NAPI_AUTO_LENGTH, &syscall_v);
    napi_set_named_property(env, v, "code", code_v);
    napi_set_named_property(env, v, "errno", errno_v);
    napi_set_named_property(env, v, "syscall", syscall_v);
    napi_reject_deferred(env, w->deferred, v);
  }
  if (w->data_ref) napi_delete_reference(env, w->data_ref);
  if (w->out_ref) napi_delete_reference(env, w->out_ref);
  if (w->state_ref) napi_delete_reference(env, w->state_ref);
  if (w->aw) napi_delete_async_work(env, w->aw);
  free(w);
}

static napi_value wh_start(napi_env env, wh_work *w) {
  napi_value promise, name;
  if (napi_create_promise(env, &w->deferred, &promise) != napi_ok) {
    if (w->data_ref) napi_delete_reference(env, w->data_ref);
    if (w->out_ref) napi_delete_reference(env, w->out_ref);
    if (w->state_ref) napi_delete_reference(env, w->state_ref);
    free(w);
    napi_throw_error(env, NULL, "hsmfleet_fs: cannot start a write/hash job");
    return NULL;
  }
  if (w->state) w->state->busy = 1;
  napi_create_string_utf8(env, "hsmfleet_fs.writehash", NAPI_AUTO_LENGTH, &name);
  if (napi_create_async_work(env, NULL, name, wh_execute, wh_complete, w, &w->aw) != napi_ok ||
      napi_queue_async_work(env, w->aw) != napi_ok) {
    w->err = EAGAIN;
    w->syscall = "queue";
    /* Settle through the same path as a finished job. */
    wh_complete(env, napi_ok, w);
  }
  return promise;
}

static int get_bytes(napi_env env, napi_value v, uint8_t **p, size_t *n) {
  bool is_ta = false;
  napi_typedarray_type type;
  void *ptr = NULL;
  size_t len = 0;
  if (napi_is_typedarray(env, v, &is_ta) != napi_ok || !is_ta ||
      napi_get_typedarray_info(env, v, &type, &len, &ptr, NULL, NULL) != napi_ok ||
      type != napi_uint8_array)
    return 0;
  *p = ptr;
  *n = len;
  return 1;
}

/* Takes a usable state (or null) from `v` into w; 0 after throwing. */
static int take_state(napi_env env, napi_value v, wh_work *w, int required) {
  napi_valuetype t;
  if (napi_typeof(env, v, &t) != napi_ok) return 0;
  if (t == napi_null || t == napi_undefined) {
    if (!required) return 1;
    throw_type(env, "an MD5 state from md5Create is required");
    return 0;
  }
  md5_state *s = get_state(env, v);
  if (!s) {
    throw_type(env, "state must come from md5Create (or be null)");
    return 0;
  }
  if (s->busy || s->spent) {
    throw_type(env, "the MD5 state is in use by another job or already digested");
    return 0;
  }
  if (napi_create_reference(env, v, 1, &w->state_ref) != napi_ok) return 0;
  w->state = s;
  return 1;
}

/* Optional boolean argument (absent/undefined = false). */
static int get_flag(napi_env env, size_t argc, napi_value *argv, size_t i) {
  bool b = false;
  if (i >= argc) return 0;
  if (napi_get_value_bool(env, argv[i], &b) != napi_ok) return 0;
  return b ? 1 : 0;
}

/* pwriteHash(fd, data, position, state|null, sparse?): Promise<number> */
static napi_value js_pwrite_hash(napi_env env, napi_callback_info info) {
  size_t argc = 5;
  napi_value argv[5];
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok) return NULL;
  if (argc < 4) return throw_type(env, "pwriteHash(fd, data, position, state)");
  int32_t fd;
  int64_t position;
  if (napi_get_value_int32(env, argv[0], &fd) != napi_ok || fd < 0)
    return throw_type(env, "pwriteHash: fd must be a file descriptor");
  wh_work *w = calloc(1, sizeof *w);
  if (!w) {
    napi_throw_error(env, NULL, "hsmfleet_fs: out of memory");
    return NULL;
  }
  w->op = OP_PWRITE;
  w->fd = fd;
  w->sparse = get_flag(env, argc, argv, 4);
  if (!get_bytes(env, argv[1], &w->p, &w->n)) {
    free(w);
    return throw_type(env, "pwriteHash: data must be a Uint8Array");
  }
  if (napi_get_value_int64(env, argv[2], &position) != napi_ok || position < 0) {
    free(w);
    return throw_type(env, "pwriteHash: position must be an integer >= 0");
  }
  w->position = position;
  if (!take_state(env, argv[3], w, 0)) {
    free(w);
    return NULL;
  }
  if (napi_create_reference(env, argv[1], 1, &w->data_ref) != napi_ok) {
    if (w->state_ref) napi_delete_reference(env, w->state_ref);
    free(w);
    napi_throw_error(env, NULL, "hsmfleet_fs: cannot start pwriteHash");
    return NULL;
  }
  return wh_start(env, w);
}

/* preadHash(fd, position, length, state): Promise<number> */
static napi_value js_pread_hash(napi_env env, napi_callback_info info) {
  size_t argc = 4;
  napi_value argv[4];
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok) return NULL;
  if (argc < 4) return throw_type(env, "preadHash(fd, position, length, state)");
  int32_t fd;
  int64_t position, length;
  if (napi_get_value_int32(env, argv[0], &fd) != napi_ok || fd < 0)
    return throw_type(env, "preadHash: fd must be a file descriptor");
  if (napi_get_value_int64(env, argv[1], &position) != napi_ok || position < 0 ||
      napi_get_value_int64(env, argv[2], &length) != napi_ok || length < 0)
    return throw_type(env, "preadHash: position and length must be integers >= 0");
  wh_work *w = calloc(1, sizeof *w);
  if (!w) {
    napi_throw_error(env, NULL, "hsmfleet_fs: out of memory");
    return NULL;
  }
  w->op = OP_PREAD;
  w->fd = fd;
  w->position = position;
  w->n = (size_t)length;
  if (!take_state(env, argv[3], w, 1)) {
    free(w);
    return NULL;
  }
  return wh_start(env, w);
}

/* writeWhole(fd, data, md5Out: Buffer(16)|null, sparse?): Promise<void> */
static napi_value js_write_whole(napi_env env, napi_callback_info info) {
  size_t argc = 4;
  napi_value argv[4];
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok) return NULL;
  if (argc < 3) return throw_type(env, "writeWhole(fd, data, md5Out)");
  int32_t fd;
  if (napi_get_value_int32(env, argv[0], &fd) != napi_ok || fd < 0)
    return throw_type(env, "writeWhole: fd must be a file descriptor");
  wh_work *w = calloc(1, sizeof *w);
  if (!w) {
    napi_throw_error(env, NULL, "hsmfleet_fs: out of memory");
    return NULL;
  }
  w->op = OP_WHOLE;
  w->fd = fd;
  w->sparse = get_flag(env, argc, argv, 3);
  if (!get_bytes(env, argv[1], &w->p, &w->n)) {
    free(w);
    return throw_type(env, "writeWhole: data must be a Uint8Array");
  }
  napi_valuetype t;
  napi_typeof(env, argv[2], &t);
  if (t != napi_null && t != napi_undefined) {
    uint8_t *o;
    size_t on;
    if (!get_bytes(env, argv[2], &o, &on) || on < 16) {
      free(w);
      return throw_type(env, "writeWhole: md5Out must be a Uint8Array of 16 bytes, or null");
    }
    w->md5_out = o;
    if (napi_create_reference(env, argv[2], 1, &w->out_ref) != napi_ok) {
      free(w);
      napi_throw_error(env, NULL, "hsmfleet_fs: cannot start writeWhole");
      return NULL;
    }
  }
  if (napi_create_reference(env, argv[1], 1, &w->data_ref) != napi_ok) {
    if (w->out_ref) napi_delete_reference(env, w->out_ref);
    free(w);
    napi_throw_error(env, NULL, "hsmfleet_fs: cannot start writeWhole");
    return NULL;
  }
  return wh_start(env, w);
}

/* Called from the module's init (dirscan.c). */
napi_status hsmfleet_register_writehash(napi_env env, napi_value exports) {
  hsmfleet_init_write_max();
  napi_property_descriptor p[] = {
      {"md5Create", NULL, js_md5_create, NULL, NULL, NULL, napi_enumerable, NULL},
      {"md5Digest", NULL, js_md5_digest, NULL, NULL, NULL, napi_enumerable, NULL},
      {"pwriteHash", NULL, js_pwrite_hash, NULL, NULL, NULL, napi_enumerable, NULL},
      {"preadHash", NULL, js_pread_hash, NULL, NULL, NULL, napi_enumerable, NULL},
      {"writeWhole", NULL, js_write_whole, NULL, NULL, NULL, napi_enumerable, NULL},
  };
  return napi_define_properties(env, exports, 5, p);
}
