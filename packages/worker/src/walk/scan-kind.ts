import { JobKind } from "@hsmfleet/protocol";
import type { WorkerJobKind } from "../runtime/job-kind.js";
import { scanVisitor } from "./scan-visitor.js";
import { handleWalkShard } from "./walk-shard.js";

/** Scan: walk shards whose entries are counted (and listed). */
export const scanKind: WorkerJobKind = {
  kind: JobKind.Scan,
  start: (ctx) => ({
    walk: (msg, shard, job) => handleWalkShard(ctx.walk, msg, shard, job, scanVisitor),
  }),
};
