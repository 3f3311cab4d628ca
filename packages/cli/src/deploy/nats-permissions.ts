/**
 * NATS permissions of the fleet's two users, the same lists as deploy/nats/hsmfleet-permissions.conf
 * (docs/security.md; a test fails when the two differ): the coordinator side (every hsmfleet
 * command and service) and the workers.
 */
export interface NatsPermissions {
  publish: readonly string[];
  subscribe: readonly string[];
}

export const COORDINATOR_PERMISSIONS: NatsPermissions = {
  publish: [
    "$JS.API.>",
    "$KV.hsmfleet-jobs.>",
    "$KV.hsmfleet-locks.>",
    "$KV.hsmfleet-ledger.>",
    "$KV.hsmfleet-chunks.>",
    "$KV.hsmfleet-autoimport.>",
    "$JS.ACK.HSMFLEET_RESULTS.>",
    "hsmfleet.work.>",
    "hsmfleet.hsm.>",
    "hsmfleet.result.>",
    "hsmfleet.hsmcancel",
    "hsmfleet.jobcancel.*",
    "hsmfleet.hbping",
  ],
  subscribe: [
    "_INBOX.>",
    "hsmfleet.hb.*",
    "hsmfleet.hsmprogress.*",
    "hsmfleet.progress.*",
    "hsmfleet.result.*.autoimport",
    "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.>",
  ],
};

export const WORKER_PERMISSIONS: NatsPermissions = {
  publish: [
    "$JS.API.INFO",
    "$JS.API.STREAM.INFO.*",
    "$JS.API.STREAM.NAMES",
    "$JS.API.STREAM.LIST",
    "$JS.API.STREAM.CREATE.KV_hsmfleet-jobs",
    "$JS.API.STREAM.CREATE.KV_hsmfleet-chunks",
    "$JS.API.STREAM.CREATE.KV_hsmfleet-locks",
    "$JS.API.STREAM.CREATE.KV_hsmfleet-ledger",
    "$JS.API.STREAM.CREATE.KV_hsmfleet-autoimport",
    "$JS.API.STREAM.MSG.GET.KV_hsmfleet-jobs",
    "$JS.API.STREAM.MSG.GET.KV_hsmfleet-chunks",
    "$JS.API.STREAM.MSG.GET.KV_hsmfleet-autoimport",
    "$JS.API.STREAM.MSG.GET.HSMFLEET_WORK",
    "$JS.API.STREAM.MSG.GET.HSMFLEET_RESULTS",
    "$JS.API.STREAM.MSG.DELETE.HSMFLEET_WORK",
    "$JS.API.DIRECT.GET.KV_hsmfleet-jobs.>",
    "$JS.API.DIRECT.GET.KV_hsmfleet-chunks.>",
    "$JS.API.DIRECT.GET.KV_hsmfleet-autoimport.>",
    "$JS.API.CONSUMER.INFO.*.*",
    "$JS.API.CONSUMER.LIST.*",
    "$JS.API.CONSUMER.NAMES.*",
    "$JS.API.CONSUMER.MSG.NEXT.HSMFLEET_WORK.*",
    "$JS.API.CONSUMER.MSG.NEXT.HSMFLEET_HSM.*",
    "$JS.API.CONSUMER.CREATE.KV_hsmfleet-jobs",
    "$JS.API.CONSUMER.CREATE.KV_hsmfleet-jobs.>",
    "$JS.API.CONSUMER.DELETE.KV_hsmfleet-jobs.*",
    "$KV.hsmfleet-chunks.>",
    "$KV.hsmfleet-autoimport.*.b.*",
    "$JS.ACK.HSMFLEET_WORK.>",
    "$JS.ACK.HSMFLEET_HSM.>",
    "hsmfleet.work.>",
    "hsmfleet.result.>",
    "hsmfleet.hb.*",
    "hsmfleet.hbping",
    "hsmfleet.hsmprogress.*",
    "hsmfleet.progress.*",
  ],
  subscribe: [
    "_INBOX.>",
    "hsmfleet.hb.*",
    "hsmfleet.hbping",
    "hsmfleet.hsmcancel",
    "hsmfleet.jobcancel.*",
  ],
};
