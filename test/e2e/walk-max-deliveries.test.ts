/**
 * A walk shard that no worker finishes within its deliveries: the coordinator's MAX_DELIVERIES
 * advisory stands in for the dead worker with a failed result, so the job ends with a named error
 * instead of waiting for ever. The "worker" here takes the shard and never answers (as one killed
 * each time would), and, before its last delivery, stores what a run that claimed a higher attempt
 * than the server's count stores while it replays: an empty notice under the result id of the
 * server's last delivery (claim-attempt.ts, declarations.ts). That id must not be the failure's.
 */
import { mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import test from "ava";
import { jetstream } from "@hsmfleet/bus";
import { runScanJob } from "@hsmfleet/coordinator";
import {
  WALK_CONSUMER,
  WORK_STREAM,
  decodeWalkShard,
  encodeItemResult,
  newItemResult,
  subjects,
  walkResultId,
} from "@hsmfleet/protocol";
import { tempDir } from "@hsmfleet/testkit";
import { startBus } from "./helpers.js";

const topology = { ackWaitMs: 1000, maxDeliver: 2, update: true };

test("a walk shard that runs out of deliveries ends the job with a named error, though a run stored an empty notice under the last delivery's result id", async (t) => {
  const { nc } = await startBus(t, topology);
  const dir = await tempDir();
  t.teardown(() => dir.cleanup());
  const root = dir.path;
  await mkdir(join(root, "d"));
  await writeFile(join(root, "d", "f"), "x");
  const jobId = "scan-maxdel1";

  const js = jetstream(nc);
  const consumer = await js.consumers.get(WORK_STREAM, WALK_CONSUMER);
  const deliveries: number[] = [];
  let jobOver = false;
  const deadWorker = (async () => {
    // Keeps asking, as a fleet's workers do: the server sends the advisory at a pull after the
    // last delivery's ack wait.
    while (!jobOver) {
      const m = await consumer.next({ expires: 1000 });
      if (m === null) continue;
      const shard = decodeWalkShard(m.data);
      deliveries.push(m.info.deliveryCount);
      if (m.info.deliveryCount === 1) {
        // A later run's replay probes the earlier attempts' result ids with empty spawn notices.
        const id = walkResultId(shard.shardId, topology.maxDeliver);
        const probe = newItemResult({
          jobId,
          itemId: id,
          kind: "spawn",
          parentId: shard.shardId,
          workerId: "w-dead",
          attempt: topology.maxDeliver + 1,
        });
        await js.publish(subjects.itemResult(jobId), encodeItemResult(probe), { msgID: id });
      }
      // Never acknowledged: the server redelivers after the ack wait, then gives up.
    }
  })();

  const timeout = new Promise<"hung">((resolve) => {
    const timer = setTimeout(() => resolve("hung"), 20_000);
    t.teardown(() => clearTimeout(timer));
  });
  const summary = await Promise.race([
    runScanJob({ nc, root, jobId, topology, checkpointIntervalMs: 200 }),
    timeout,
  ]);
  jobOver = true;
  await deadWorker;
  t.deepEqual(deliveries, [1, 2]);
  if (summary === "hung") return t.fail("the job waited for a shard nobody will report");
  t.is(summary.errors, 1);
  t.regex(
    summary.errorSamples[0]?.message ?? "",
    /no worker finished this directory in 2 deliveries/,
  );
});
