/*
 * The scan benchmark's floor (test/bench/scan.bench.ts; compiled by it with `cc` when one is
 * installed): the kernel work a scan that reads HSM states cannot avoid, and nothing else —
 * readdir, fstatat(AT_SYMLINK_NOFOLLOW) of every entry and getxattrat(2) of the HSM xattr of every
 * regular file (the same calls as packages/fs/native/dirscan.c), directories shared by N threads
 * through one queue, no output. Its wall time is what any implementation on this machine could
 * reach with no start-up, messages or bookkeeping; its CPU time is what each scan must spend.
 *
 *   scan-floor ROOT THREADS XATTR      (XATTR "" = lstat only, find's own work)
 *
 * Prints "<entries> <regular files> <xattrs read>" (entries include ROOT itself, as find's).
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifndef __NR_getxattrat
#define __NR_getxattrat 464
#endif

struct xattr_args {
  uint64_t value;
  uint32_t size;
  uint32_t flags;
};

static const char *xattr_name;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t more = PTHREAD_COND_INITIALIZER;
static int *queue;
static size_t queued, cap;
static int busy; /* threads reading a directory (they may queue more) */
static long entries = 1, files, xattrs;

static void push(int fd) {
  pthread_mutex_lock(&lock);
  if (queued == cap) {
    cap = cap ? cap * 2 : 1024;
    queue = realloc(queue, cap * sizeof *queue);
    if (!queue) abort();
  }
  queue[queued++] = fd;
  pthread_cond_signal(&more);
  pthread_mutex_unlock(&lock);
}

static void read_dir(int dfd, long *n, long *f, long *x) {
  DIR *d = fdopendir(dfd);
  if (!d) {
    close(dfd);
    return;
  }
  struct dirent *de;
  char buf[256];
  while ((de = readdir(d)) != NULL) {
    const char *nm = de->d_name;
    if (nm[0] == '.' && (nm[1] == 0 || (nm[1] == '.' && nm[2] == 0))) continue;
    (*n)++;
    struct stat st;
    if (fstatat(dfd, nm, &st, AT_SYMLINK_NOFOLLOW) != 0) continue;
    if (S_ISDIR(st.st_mode)) {
      int sub = openat(dfd, nm, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
      if (sub >= 0) push(sub);
    } else if (S_ISREG(st.st_mode)) {
      (*f)++;
      if (xattr_name[0] == 0) continue;
      struct xattr_args a = {(uint64_t)(uintptr_t)buf, sizeof buf, 0};
      if (syscall(__NR_getxattrat, dfd, nm, AT_SYMLINK_NOFOLLOW, xattr_name, &a, sizeof a) >= 0)
        (*x)++;
    }
  }
  closedir(d);
}

static void *run(void *arg) {
  (void)arg;
  long n = 0, f = 0, x = 0;
  for (;;) {
    pthread_mutex_lock(&lock);
    while (queued == 0 && busy > 0) pthread_cond_wait(&more, &lock);
    if (queued == 0) { /* nothing queued and nobody reading: done */
      pthread_cond_broadcast(&more);
      pthread_mutex_unlock(&lock);
      break;
    }
    int fd = queue[--queued];
    busy++;
    pthread_mutex_unlock(&lock);
    read_dir(fd, &n, &f, &x);
    pthread_mutex_lock(&lock);
    busy--;
    if (busy == 0 && queued == 0) pthread_cond_broadcast(&more);
    pthread_mutex_unlock(&lock);
  }
  pthread_mutex_lock(&lock);
  entries += n;
  files += f;
  xattrs += x;
  pthread_mutex_unlock(&lock);
  return NULL;
}

int main(int argc, char **argv) {
  if (argc != 4) {
    fprintf(stderr, "usage: scan-floor ROOT THREADS XATTR\n");
    return 2;
  }
  int threads = atoi(argv[2]);
  if (threads < 1 || threads > 256) {
    fprintf(stderr, "scan-floor: THREADS must be 1..256\n");
    return 2;
  }
  xattr_name = argv[3];
  int root = open(argv[1], O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (root < 0) {
    fprintf(stderr, "scan-floor: open %s: %s\n", argv[1], strerror(errno));
    return 1;
  }
  push(root);
  pthread_t t[256];
  for (int i = 0; i < threads; i++) pthread_create(&t[i], NULL, run, NULL);
  for (int i = 0; i < threads; i++) pthread_join(t[i], NULL);
  printf("%ld %ld %ld\n", entries, files, xattrs);
  return 0;
}
