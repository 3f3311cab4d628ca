#ifndef HSMFLEET_PWRITE_RUNS_H
#define HSMFLEET_PWRITE_RUNS_H
#include <stddef.h>
#include <stdint.h>

/* The file-system block a sparse write skips when it holds only zeros. */
#define HSMFLEET_SPARSE_BLOCK 4096

/*
 * Reads HSMFLEET_WRITE_PIECE_BYTES (4096 to 64 MiB) once; call when the addon loads. Without it
 * every pwrite(2) is at most 128 KiB (pwrite-runs.c says why).
 */
void hsmfleet_init_write_max(void);

/* pwrite all of p[0, n) at `at` in pieces (EINTR and short writes retried): 0, else an errno. */
int hsmfleet_pwrite_all(int fd, const uint8_t *p, size_t n, int64_t at);

/*
 * hsmfleet_pwrite_all, or with `sparse` only the runs between all-zero HSMFLEET_SPARSE_BLOCKs
 * (aligned on the file's offsets), each run written whole: the zero blocks stay holes. 0, else an
 * errno.
 */
int hsmfleet_pwrite_data(int fd, const uint8_t *p, size_t n, int64_t at, int sparse);

#endif
