import test from "ava";
import { JobKind, newJobSpec, newJobStatus } from "@hsmfleet/protocol";
import type { Chunk } from "@hsmfleet/protocol";
import {
  UnsafeWorkItemError,
  UnsolicitedWorkItemError,
  UndecodableWorkItemError,
  blobNameFor,
  checkChunk,
  checkWalkShard,
  decodeWorkItem,
  jobOfWorkSubject,
  unsafePathReason,
} from "../src/item-checks.js";

const b = (s: string) => Buffer.from(s);

test("only relative, normalized paths without '..' pass", (t) => {
  for (const ok of ["a", "a/b", "a/b/c.txt", "..a", "a..", ".hidden", "a/.b/c"])
    t.is(unsafePathReason(b(ok)), undefined, ok);
  t.is(unsafePathReason(b(""), true), undefined, "the root where allowed");
  for (const bad of [
    "",
    "/etc/shadow",
    "../etc",
    "a/../../etc",
    "a/..",
    "./a",
    "a/./b",
    "a//b",
    "a/",
    "a\0b",
  ])
    t.not(unsafePathReason(b(bad)), undefined, JSON.stringify(bad));
  t.not(unsafePathReason(Buffer.alloc(5000, 0x61)), undefined, "too long");
});

test("walk shards and chunks that leave the root are refused with named errors", (t) => {
  const subject = "hsmfleet.work.j1.walk";
  t.throws(
    () =>
      checkWalkShard(subject, { jobId: "j1", paths: [b("../../etc/ssl")], depth: 1, shardId: "x" }),
    {
      instanceOf: UnsafeWorkItemError,
      message: /'\.\.' path component/,
    },
  );
  t.throws(() => checkWalkShard(subject, { jobId: "j1", paths: [], depth: 1, shardId: "x" }), {
    instanceOf: UnsafeWorkItemError,
  });
  const job = newJobStatus(
    newJobSpec({ jobId: "j1", kind: JobKind.Export, root: b("/r"), prefix: "p" }),
  );
  const chunk: Chunk = {
    jobId: "j1",
    chunkId: "c",
    path: b("d/big"),
    offset: 0,
    length: 10,
    firstBlock: 0,
    blockCount: 1,
    blockSize: 10,
    fileSize: 10,
    fileMtimeSec: 0,
    fileMtimeNsec: 0,
    index: 0,
    count: 1,
    blobName: "p/d/big",
    etag: "",
    contentMd5: Buffer.alloc(0),
    mode: 0o100644,
    uid: 0,
    gid: 0,
  };
  t.notThrows(() => checkChunk("hsmfleet.work.j1.chunk", chunk, job));
  t.is(blobNameFor(job, chunk.path), "p/d/big");
  t.throws(() => checkChunk("s", { ...chunk, blobName: "stolen/shadow" }, job), {
    instanceOf: UnsafeWorkItemError,
    message: /blob name "stolen\/shadow" is not the one of path/,
  });
  t.throws(() => checkChunk("s", { ...chunk, path: b("../../../etc/shadow"), blobName: "" }, job), {
    instanceOf: UnsafeWorkItemError,
  });
  t.throws(() => checkChunk("s", { ...chunk, offset: 5 }, job), {
    instanceOf: UnsafeWorkItemError,
  });
  t.throws(() => checkChunk("s", { ...chunk, index: 1 }, job), { instanceOf: UnsafeWorkItemError });
  // Import chunks are byte ranges without blocks, named by the whole blob name.
  const imp = newJobStatus(newJobSpec({ jobId: "j1", kind: JobKind.Import, root: b("/t") }));
  const byteRange = { ...chunk, firstBlock: 0, blockCount: 0, blockSize: 0, blobName: "d/big" };
  t.notThrows(() => checkChunk("s", byteRange, imp));
  t.throws(() => checkChunk("s", { ...byteRange, blobName: "p/d/big" }, imp), {
    instanceOf: UnsafeWorkItemError,
  });
});

test("undecodable payloads and subjects without a job are named errors, marked terminal", (t) => {
  const err = t.throws(() =>
    decodeWorkItem("hsmfleet.work.j.walk", Buffer.from("0a05616263", "hex"), "walk shard", () => {
      throw new RangeError("index out of range: 2 + 5 > 5");
    }),
  );
  t.true(err instanceof UndecodableWorkItemError);
  t.is((err as UndecodableWorkItemError).terminal, true);
  t.is((err as UndecodableWorkItemError).code, "UNDECODABLE_WORK_ITEM");
  t.is(jobOfWorkSubject("hsmfleet.work.j-1.xfer"), "j-1");
  t.throws(() => jobOfWorkSubject("hsmfleet.work.a.b.c"), { instanceOf: UnsolicitedWorkItemError });
  t.throws(() => jobOfWorkSubject("hsmfleet.result.j.item"), {
    instanceOf: UnsolicitedWorkItemError,
  });
});
