/* hsmrelease.c: HSM release batches (exports releaseBatch). */
#ifndef HSMFLEET_HSMRELEASE_H
#define HSMFLEET_HSMRELEASE_H
#include <node_api.h>

napi_status hsmfleet_release_init(napi_env env, napi_value exports);

#endif
