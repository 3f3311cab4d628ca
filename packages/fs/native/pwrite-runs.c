/*
 * The one write path of the native download and import jobs (writehash.c, crc64.c, smallfile.c):
 * pwrite in bounded pieces, sparse runs between all-zero blocks.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "pwrite-runs.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <unistd.h>

/*
 * Bytes per pwrite(2). Measured (2 GiB into a new or ftruncate-sized ext4 file, Linux 6.18 in a
 * VM, alternating runs): 128 KiB writes cost 0.5-0.6 s of system time, 1 MiB and 8 MiB writes
 * 1.4-3.6 s — the kernel's copy into the page cache (copy_folio_from_iter_atomic) gets several
 * times slower per byte with large writes (large folios allocated fresh for them), 32 KiB writes
 * pay more per call. docs/benchmarks.md, issue 17. HSMFLEET_WRITE_PIECE_BYTES (4096 to 64 MiB, read
 * when the addon loads) changes it, for such measurements.
 */
static size_t write_max = 128 * 1024;

/*
 * HSMFLEET_FALLOCATE_RUNS=1 (read when the addon loads; off by default, for measurements): each
 * run of a sparse write is preallocated (fallocate FALLOC_FL_KEEP_SIZE, errors ignored) right
 * before it is written, so the zero blocks still stay holes. In a C loop it cost ~20 % less system
 * time than writing into delayed allocation (docs/benchmarks.md, "where the CPU goes now"); not on
 * by default: ranges arriving out of order would be allocated in arrival order, not file order.
 */
static int fallocate_runs = 0;

void hsmfleet_init_write_max(void) {
  const char *f = getenv("HSMFLEET_FALLOCATE_RUNS");
  fallocate_runs = f != NULL && strcmp(f, "1") == 0;
  const char *v = getenv("HSMFLEET_WRITE_PIECE_BYTES");
  if (v == NULL) return;
  char *end = NULL;
  unsigned long long n = strtoull(v, &end, 10);
  if (end != v && *end == '\0' && n >= 4096 && n <= 64ULL * 1024 * 1024) write_max = (size_t)n;
}

int hsmfleet_pwrite_all(int fd, const uint8_t *p, size_t n, int64_t at) {
  size_t off = 0;
  while (off < n) {
    size_t want = n - off;
    if (want > write_max) want = write_max;
    ssize_t r = pwrite(fd, p + off, want, (off_t)(at + (int64_t)off));
    if (r < 0) {
      if (errno == EINTR) continue;
      return errno;
    }
    if (r == 0) return EIO;
    off += (size_t)r;
  }
  return 0;
}

/* A run of a sparse write: preallocated first with HSMFLEET_FALLOCATE_RUNS=1, then written. */
static int write_run(int fd, const uint8_t *p, size_t n, int64_t at) {
  if (fallocate_runs && n > 0) (void)fallocate(fd, FALLOC_FL_KEEP_SIZE, (off_t)at, (off_t)n);
  return hsmfleet_pwrite_all(fd, p, n, at);
}

static int all_zero(const uint8_t *p, size_t n) {
  if (n == 0) return 1;
  return p[0] == 0 && memcmp(p, p + 1, n - 1) == 0;
}

int hsmfleet_pwrite_data(int fd, const uint8_t *p, size_t n, int64_t at, int sparse) {
  if (!sparse) return hsmfleet_pwrite_all(fd, p, n, at);
  size_t run = 0, off = 0;
  int in_run = 0, err;
  while (off < n) {
    size_t end = off + (size_t)(HSMFLEET_SPARSE_BLOCK -
                                (uint64_t)(at + (int64_t)off) % HSMFLEET_SPARSE_BLOCK);
    if (end > n) end = n;
    if (all_zero(p + off, end - off)) {
      if (in_run && (err = write_run(fd, p + run, off - run, at + (int64_t)run)) != 0)
        return err;
      in_run = 0;
    } else if (!in_run) {
      run = off;
      in_run = 1;
    }
    off = end;
  }
  if (in_run) return write_run(fd, p + run, n - run, at + (int64_t)run);
  return 0;
}
