/* beneath.c: operations beneath a job root fd (exports beneath, beneathProbe). */
#ifndef HSMFLEET_BENEATH_H
#define HSMFLEET_BENEATH_H
#include <node_api.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>

napi_status hsmfleet_register_beneath(napi_env env, napi_value exports);
/* Opens rel beneath rootfd, no symlink followed anywhere; -1 with *err set on failure. */
int hsmfleet_open_beneath(int rootfd, const char *rel, size_t len, int flags, int fallback,
                          int *err);
/* The same with a creation mode (O_CREAT) and, on failure, the bytes of rel resolved (*at). */
int hsmfleet_open_beneath_at(int rootfd, const char *rel, size_t len, int flags, int mode,
                             int fallback, int *err, size_t *at);

/* The 64-byte stat record of beneath.c's results (parsed by beneath-path.ts parseStat). */
void hsmfleet_put_stat(uint8_t *o, const struct stat *st);

#endif
