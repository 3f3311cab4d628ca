/**
 * A job whose outstanding frontier is wide (issue 14 item 6 follow-up): the ResultLedger's ids
 * must checkpoint without the job record passing NATS's max_payload (1 MiB by default), and a
 * coordinator killed with SIGKILL must resume from them exactly.
 *
 * A real scan with 30,000 outstanding walk shards needs ~500,000 directories (16 per shard), far
 * too slow here; so the fleet is played by the test: it publishes sealed results of the job's
 * root (announcing 32,768 children, like a wide directory's spawn notices) and later of every
 * child, on the real results stream, to a real CLI coordinator that is SIGKILLed in between.
 */
import test from "ava";
import { JobStore, ensureTopology, jetstream, sealHeaders } from "@hsmfleet/bus";
import type { JetStreamClient, KV } from "@hsmfleet/bus";
import {
  JobState,
  emptyScanCounters,
  encodeItemResult,
  newItemResult,
  rootWalkShard,
  shardIdFor,
  subjects,
} from "@hsmfleet/protocol";
import type { ItemResult } from "@hsmfleet/protocol";
import { tempDir } from "@hsmfleet/testkit";
import { exitOf, runCli, spawnCli, startBus, waitFor } from "./helpers.js";

/** Children announced per notice (the ledger's MAX_CHILDREN_PER_RESULT). */
const PER_NOTICE = 4096;
const NOTICES = 8;
const CHILDREN = PER_NOTICE * NOTICES;

const publishAll = async (js: JetStreamClient, key: Uint8Array, results: ItemResult[]) => {
  const subject = subjects.itemResult(results[0]!.jobId);
  for (let i = 0; i < results.length; i += 512) {
    await Promise.all(
      results.slice(i, i + 512).map((r) => {
        const data = encodeItemResult(r);
        return js.publish(subject, data, {
          msgID: `${r.itemId}.r`,
          headers: sealHeaders(key, subject, data),
        });
      }),
    );
  }
};

/** The job's keys in the ledger bucket and their sizes. */
const ledgerKeys = async (kv: KV, jobId: string): Promise<Map<string, number>> => {
  const out = new Map<string, number>();
  for await (const k of await kv.keys(`${jobId}.>`)) {
    const e = await kv.get(k);
    if (e?.operation === "PUT") out.set(k, e.value.length);
  }
  return out;
};

test("a frontier of 32,768 ids checkpoints, survives a SIGKILLed coordinator and ends exactly", async (t) => {
  t.timeout(180_000);
  const dir = await tempDir();
  t.teardown(() => dir.cleanup());
  const { server, nc } = await startBus(t);
  const js = jetstream(nc);
  const { jobs, ledger } = await ensureTopology(nc);
  const store = new JobStore(jobs);
  const first = spawnCli(["--nats", server.url, "--workers", "0", "scan", dir.path, "--json"]);
  let firstErr = "";
  first.stderr?.on("data", (d: Buffer) => (firstErr += d.toString()));
  t.teardown(() => {
    first.kill("SIGKILL");
  });
  let jobId = "";
  await waitFor("the job record", async () => {
    jobId = (await store.list())[0]?.spec.jobId ?? "";
    return jobId !== "";
  });
  const { itemKey: key } = (await store.require(jobId)).spec;
  const root = rootWalkShard(jobId).shardId;
  const childIds = Array.from({ length: CHILDREN }, (_, i) =>
    shardIdFor(jobId, [Buffer.from(`wide/d${i}`)]),
  );
  // The root's spawn notices, then its own result (one directory): 32,768 ids outstanding.
  const scan = emptyScanCounters();
  scan.directories = 1;
  await publishAll(js, key, [
    ...Array.from({ length: NOTICES }, (_, n) => {
      const ids = childIds.slice(n * PER_NOTICE, (n + 1) * PER_NOTICE);
      return newItemResult({
        jobId,
        itemId: `${root}.s${n}`,
        kind: "spawn",
        parentId: root,
        children: ids.length,
        childIds: ids,
        workerId: "test-fleet",
      });
    }),
    newItemResult({ jobId, itemId: root, kind: "walk", scan, workerId: "test-fleet" }),
  ]);
  let ticks = 0;
  // The coordinator checkpoints the wide frontier: the record says so, and stays small.
  await waitFor(
    "a checkpoint of the wide frontier",
    async () => {
      // The follower checkpoints as messages come: a tick it drops (no seal) keeps them coming.
      await js.publish(subjects.itemResult(jobId), Buffer.from("tick"), {
        msgID: `tick-${ticks++}`,
      });
      const s = await store.require(jobId);
      return s.published === CHILDREN + 1 && s.completed === 1;
    },
    60_000,
  ).catch((err: unknown) => {
    throw new Error(
      `${String(err)}; coordinator stderr: ${firstErr
        .split("\n")
        .filter((l) => !l.includes("no valid seal"))
        .join("\n")
        .slice(-2000)}`,
    );
  });
  const recordBytes = (await jobs.get(jobId))!.value.length;
  t.log(`record of a job with ${CHILDREN} outstanding ids: ${recordBytes} bytes`);
  t.true(recordBytes < 64 * 1024, `the job record is ${recordBytes} bytes`);
  const saved = await ledgerKeys(ledger, jobId);
  const savedBytes = [...saved.values()].reduce((a, b) => a + b, 0);
  t.log(`ledger bucket: ${saved.size} keys, ${savedBytes} bytes`);
  t.true(saved.size > 0, "the frontier is in the ledger bucket");

  first.kill("SIGKILL");
  await exitOf(first);
  t.is((await store.require(jobId)).state, JobState.Running);

  // Every child reports one file; then a fresh coordinator resumes and must end exactly.
  await publishAll(
    js,
    key,
    childIds.map((id) => {
      const c = emptyScanCounters();
      c.directories = 1;
      c.files = 1;
      c.bytes = 3;
      return newItemResult({ jobId, itemId: id, kind: "walk", scan: c, workerId: "test-fleet" });
    }),
  );
  const resumed = await runCli(
    ["--nats", server.url, "--workers", "0", "scan", "--resume", jobId, "--json"],
    { timeoutMs: 120_000 },
  );
  t.is(resumed.code, 0, resumed.stderr);
  t.like(JSON.parse(resumed.stdout), {
    state: "succeeded",
    files: CHILDREN,
    directories: CHILDREN + 1,
    bytes: 3 * CHILDREN,
  });
  const end = await store.require(jobId);
  t.is(end.published, CHILDREN + 1);
  t.is(end.completed, CHILDREN + 1);
  t.is((await ledgerKeys(ledger, jobId)).size, 0, "the ledger of an ended job is deleted");
});
