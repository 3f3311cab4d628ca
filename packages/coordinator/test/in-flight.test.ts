import test from "ava";
import { connectBus, sealHeaders } from "@hsmfleet/bus";
import {
  emptyExportCounters,
  emptyInFlightCounters,
  encodeJobProgress,
  newItemKey,
  subjects,
} from "@hsmfleet/protocol";
import type { JobProgress } from "@hsmfleet/protocol";
import { startNatsServer } from "@hsmfleet/testkit";
import { InFlightItems, RECENTLY_DONE } from "../src/in-flight.js";

const item = (itemId: string, attempt: number, files: number, bytes: number) => ({
  itemId,
  attempt,
  done: {
    ...emptyInFlightCounters(),
    items: 1,
    export: { ...emptyExportCounters(), filesExported: files, bytesExported: bytes },
  },
});

test("items in flight: summed from workers' progress, dropped when reported, later attempts win, other jobs, unsealed messages and junk ignored", async (t) => {
  const server = await startNatsServer();
  t.teardown(() => server.stop());
  const nc = await connectBus({ servers: server.url, reconnectForever: false });
  t.teardown(() => nc.close());
  const key = newItemKey();
  const live = new InFlightItems(nc, "export-a", key);
  t.teardown(() => live.stop());
  // Workers seal their progress with the job's key, like its work items and results.
  const send = async (p: JobProgress, jobId = p.jobId, sealKey: Uint8Array = key) => {
    const subject = subjects.progress(jobId);
    const data = encodeJobProgress(p);
    nc.publish(subject, data, { headers: sealHeaders(sealKey, subject, data) });
    await nc.flush();
    await new Promise((r) => setTimeout(r, 50));
  };

  await send({ jobId: "export-a", workerId: "w1", items: [item("b1", 1, 3, 300)] });
  await send({ jobId: "export-a", workerId: "w2", items: [item("b2", 1, 1, 50)] });
  t.like(live.totals(), { items: 2, export: { filesExported: 4, bytesExported: 350 } });

  // A redelivered item on another worker starts over: its figures replace the old attempt's.
  await send({ jobId: "export-a", workerId: "w3", items: [item("b1", 2, 1, 100)] });
  // An older attempt's late message does not bring the old figures back.
  await send({ jobId: "export-a", workerId: "w1", items: [item("b1", 1, 9, 900)] });
  t.like(live.totals(), { items: 2, export: { filesExported: 2, bytesExported: 150 } });

  // Reported: its work is in the record now; a progress message sent before the result and
  // arriving after it is ignored.
  live.itemDone("b1");
  await send({ jobId: "export-a", workerId: "w3", items: [item("b1", 2, 5, 500)] });
  t.is(live.size, 1);

  // Figures without the job's seal (forged, or sealed with another job's key) are ignored.
  const forged = { jobId: "export-a", workerId: "w9", items: [item("f", 1, 9, 9)] };
  nc.publish(subjects.progress("export-a"), encodeJobProgress(forged));
  await send(forged, "export-a", newItemKey());
  // Another job's figures (even on this subject), over-long ids and garbage are ignored.
  await send({ jobId: "export-b", workerId: "w1", items: [item("x", 1, 7, 7)] }, "export-a");
  await send({ jobId: "export-a", workerId: "w1", items: [item("y".repeat(300), 1, 7, 7)] });
  nc.publish(subjects.progress("export-a"), new Uint8Array([0xff, 0xff, 0xff]));
  await nc.flush();
  await new Promise((r) => setTimeout(r, 50));
  t.like(live.totals(), { items: 1, export: { filesExported: 1, bytesExported: 50 } });
});

test("items in flight: the ids remembered as reported stay bounded however many items a job folds (issue 22)", async (t) => {
  const server = await startNatsServer();
  t.teardown(() => server.stop());
  const nc = await connectBus({ servers: server.url, reconnectForever: false });
  t.teardown(() => nc.close());
  const live = new InFlightItems(nc, "export-a", newItemKey());
  t.teardown(() => live.stop());
  // A 1B-file job at 1,000-file batches folds a million items: the memory must not follow them.
  const items = RECENTLY_DONE * 4;
  for (let i = 0; i < items; i++) {
    live.add({ jobId: "export-a", workerId: "w1", items: [item(`b${i}`, 1, 1, 1)] });
    live.itemDone(`b${i}`);
  }
  t.is(live.size, 0);
  t.is(live.recentlyDone, RECENTLY_DONE);
  // The most recent ones are still refused when a late progress message names them.
  live.add({ jobId: "export-a", workerId: "w1", items: [item(`b${items - 1}`, 1, 9, 9)] });
  t.is(live.size, 0);
});
