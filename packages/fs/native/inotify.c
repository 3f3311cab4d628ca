/*
 * Kernel file system events for `hsmfleet sync` (posix source): an inotify instance read by a
 * thread of its own, which hands each read's bytes (packed `struct inotify_event`s) to a JS
 * callback through a thread-safe function. No polling: the thread blocks in poll(2) on the inotify
 * fd and on an eventfd that stop() signals.
 *
 * Watches are added on a directory fd the caller opened beneath the job root (no symlink
 * followed): inotify_add_watch takes a path, so the watch is added on /proc/self/fd/<fd>, which
 * names exactly that open directory.
 */
#include <node_api.h>

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/inotify.h>
#include <unistd.h>

typedef struct {
  int fd;
  int stop_fd;
  pthread_t thread;
  int running;
  napi_threadsafe_function tsfn;
} watcher_t;

typedef struct {
  size_t len;
  char *data;
  int error;
} chunk_t;

static napi_value throw_errno(napi_env env, int err, const char *syscall) {
  char msg[160];
  snprintf(msg, sizeof msg, "%s: %s", syscall, strerror(err));
  napi_value message, error, code;
  napi_create_string_utf8(env, msg, NAPI_AUTO_LENGTH, &message);
  napi_create_error(env, NULL, message, &error);
  napi_create_int32(env, err, &code);
  napi_set_named_property(env, error, "errno", code);
  napi_value sc;
  napi_create_string_utf8(env, syscall, NAPI_AUTO_LENGTH, &sc);
  napi_set_named_property(env, error, "syscall", sc);
  napi_throw(env, error);
  return NULL;
}

static void call_js(napi_env env, napi_value cb, void *context, void *data) {
  chunk_t *chunk = data;
  if (env != NULL && chunk != NULL) {
    napi_value undefined, args[2];
    napi_get_undefined(env, &undefined);
    if (chunk->error != 0) {
      napi_create_int32(env, chunk->error, &args[0]);
      napi_get_null(env, &args[1]);
    } else {
      void *out;
      napi_get_null(env, &args[0]);
      napi_create_buffer_copy(env, chunk->len, chunk->data, &out, &args[1]);
    }
    napi_call_function(env, undefined, cb, 2, args, NULL);
  }
  if (chunk != NULL) {
    free(chunk->data);
    free(chunk);
  }
}

static void *reader(void *arg) {
  watcher_t *w = arg;
  const size_t size = 256 * 1024;
  char *buf = malloc(size);
  struct pollfd fds[2] = {{w->fd, POLLIN, 0}, {w->stop_fd, POLLIN, 0}};
  for (;;) {
    int n = poll(fds, 2, -1);
    if (n < 0) {
      if (errno == EINTR) continue;
      break;
    }
    if (fds[1].revents) break;
    if (!(fds[0].revents & POLLIN)) continue;
    ssize_t got = read(w->fd, buf, size);
    if (got < 0) {
      if (errno == EAGAIN || errno == EINTR) continue;
      chunk_t *c = calloc(1, sizeof *c);
      c->error = errno;
      napi_call_threadsafe_function(w->tsfn, c, napi_tsfn_blocking);
      break;
    }
    chunk_t *c = calloc(1, sizeof *c);
    c->len = (size_t)got;
    c->data = malloc((size_t)got);
    memcpy(c->data, buf, (size_t)got);
    napi_call_threadsafe_function(w->tsfn, c, napi_tsfn_blocking);
  }
  free(buf);
  return NULL;
}

static void finalize_watcher(napi_env env, void *data, void *hint) {
  watcher_t *w = data;
  if (w->running) {
    uint64_t one = 1;
    (void)!write(w->stop_fd, &one, sizeof one);
    pthread_join(w->thread, NULL);
    w->running = 0;
  }
  if (w->fd >= 0) close(w->fd);
  if (w->stop_fd >= 0) close(w->stop_fd);
  free(w);
}

/* inotifyStart(callback(errno|null, Buffer|null)) -> handle */
static napi_value js_start(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  watcher_t *w = calloc(1, sizeof *w);
  w->fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
  if (w->fd < 0) {
    int err = errno;
    free(w);
    return throw_errno(env, err, "inotify_init1");
  }
  w->stop_fd = eventfd(0, EFD_CLOEXEC);
  if (w->stop_fd < 0) {
    int err = errno;
    close(w->fd);
    free(w);
    return throw_errno(env, err, "eventfd");
  }
  napi_value name;
  napi_create_string_utf8(env, "hsmfleet.inotify", NAPI_AUTO_LENGTH, &name);
  if (napi_create_threadsafe_function(env, argv[0], NULL, name, 0, 1, NULL, NULL, NULL, call_js,
                                      &w->tsfn) != napi_ok) {
    close(w->fd);
    close(w->stop_fd);
    free(w);
    return NULL;
  }
  if (pthread_create(&w->thread, NULL, reader, w) != 0) {
    int err = errno;
    napi_release_threadsafe_function(w->tsfn, napi_tsfn_abort);
    close(w->fd);
    close(w->stop_fd);
    free(w);
    return throw_errno(env, err, "pthread_create");
  }
  w->running = 1;
  napi_value handle;
  napi_create_external(env, w, finalize_watcher, NULL, &handle);
  return handle;
}

static watcher_t *get_watcher(napi_env env, napi_value v) {
  void *data = NULL;
  if (napi_get_value_external(env, v, &data) != napi_ok) return NULL;
  return data;
}

/* inotifyAddWatch(handle, dirFd, mask) -> wd */
static napi_value js_add_watch(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  watcher_t *w = get_watcher(env, argv[0]);
  int32_t dfd = -1;
  uint32_t mask = 0;
  napi_get_value_int32(env, argv[1], &dfd);
  napi_get_value_uint32(env, argv[2], &mask);
  if (w == NULL || w->fd < 0) return throw_errno(env, EBADF, "inotify_add_watch");
  char path[64];
  snprintf(path, sizeof path, "/proc/self/fd/%d", (int)dfd);
  int wd = inotify_add_watch(w->fd, path, mask | IN_ONLYDIR);
  if (wd < 0) return throw_errno(env, errno, "inotify_add_watch");
  napi_value out;
  napi_create_int32(env, wd, &out);
  return out;
}

/* inotifyRmWatch(handle, wd) */
static napi_value js_rm_watch(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  watcher_t *w = get_watcher(env, argv[0]);
  int32_t wd = -1;
  napi_get_value_int32(env, argv[1], &wd);
  if (w != NULL && w->fd >= 0) (void)inotify_rm_watch(w->fd, wd);
  return NULL;
}

/* inotifyStop(handle): the reader thread ends; the callback is released. */
static napi_value js_stop(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  watcher_t *w = get_watcher(env, argv[0]);
  if (w != NULL && w->running) {
    uint64_t one = 1;
    (void)!write(w->stop_fd, &one, sizeof one);
    pthread_join(w->thread, NULL);
    w->running = 0;
    napi_release_threadsafe_function(w->tsfn, napi_tsfn_abort);
    close(w->fd);
    w->fd = -1;
  }
  return NULL;
}

napi_status hsmfleet_register_inotify(napi_env env, napi_value exports);
napi_status hsmfleet_register_inotify(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
      {"inotifyStart", NULL, js_start, NULL, NULL, NULL, napi_enumerable, NULL},
      {"inotifyAddWatch", NULL, js_add_watch, NULL, NULL, NULL, napi_enumerable, NULL},
      {"inotifyRmWatch", NULL, js_rm_watch, NULL, NULL, NULL, napi_enumerable, NULL},
      {"inotifyStop", NULL, js_stop, NULL, NULL, NULL, napi_enumerable, NULL},
  };
  return napi_define_properties(env, exports, sizeof props / sizeof props[0], props);
}
