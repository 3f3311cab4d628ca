/* hsmbatch.c: HSM batches (exports releaseBatch, fidBatch). */
#ifndef HSMFLEET_HSMBATCH_H
#define HSMFLEET_HSMBATCH_H
#include <node_api.h>

napi_status hsmfleet_batch_init(napi_env env, napi_value exports);

#endif
