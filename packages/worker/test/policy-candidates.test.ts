import test from "ava";
import { EntryType, HsmFlag, PolicyEvaluator, TopK } from "@hsmfleet/core";
import type { PolicyEvaluation, ResolvedPolicy } from "@hsmfleet/core";
import type { DirEntry } from "@hsmfleet/fs";
import { candidateBefore, decodePolicyCandidates } from "@hsmfleet/protocol";
import type { PolicyCandidate } from "@hsmfleet/protocol";
import { CandidateGate } from "../src/policy/candidate-gate.js";
import { CANDIDATES_PER_MESSAGE, policyVisitor } from "../src/policy/policy-visitor.js";
import type { ShardScope } from "../src/walk/walk-shard.js";

/** Deterministic pseudo-random numbers (a test must give the same answer every run). */
const rng = (seed: number) => () => {
  seed = (seed * 1_103_515_245 + 12_345) % 2 ** 31;
  return seed / 2 ** 31;
};

const K = CANDIDATES_PER_MESSAGE + 100; // a shard's list takes two messages
const NOW_MS = 2_000_000_000_000;

const evaluation: PolicyEvaluation = {
  policy: {
    name: "p",
    action: "archive",
    root: "/r",
    rules: [{ name: "small", classes: ["small"], lastModOlderMs: 0 }],
    ignoreClasses: [],
  } as unknown as ResolvedPolicy,
  classes: [
    { name: "small", match: { maxSize: 1024 }, exclude: [], noArchive: false, noRelease: false },
  ],
  nowMs: NOW_MS,
  topK: K,
  backend: "lustre",
};

interface File {
  path: Buffer;
  e: DirEntry;
}

/** Shards of files with few distinct mtimes (many ties, ordered by path then). */
const makeShards = (shards: number, perShard: number): File[][] => {
  const r = rng(7);
  return Array.from({ length: shards }, (_, s) =>
    Array.from({ length: perShard }, (_, i): File => {
      const state = Math.floor(r() * 3);
      return {
        path: Buffer.from(`d${s}/f${i}`),
        e: {
          name: Buffer.from(`f${i}`),
          type: EntryType.File,
          size: [0, 100, 4096][Math.floor(r() * 3)]!,
          mode: 0o100644,
          uid: 0,
          gid: 0,
          nlink: 1,
          ino: 1n,
          mtimeSec: 1_700_000_000 + Math.floor(r() * 500),
          mtimeNsec: 0,
          atimeSec: 1_700_000_000,
          ...(state === 0
            ? {}
            : {
                hsm: {
                  compat: 0,
                  flags: HsmFlag.Exists | HsmFlag.Archived | (state === 1 ? HsmFlag.Dirty : 0),
                  archiveId: 1n,
                  archiveVersion: 0n,
                },
              }),
        },
      };
    }),
  );
};

/** The results stream as the coordinator sees it: JetStream drops a message id seen before. */
class Stream {
  readonly ids = new Set<string>();
  readonly batches: ReturnType<typeof decodePolicyCandidates>[] = [];
  publish(data: Uint8Array, id: string): void {
    if (this.ids.has(id)) return;
    this.ids.add(id);
    this.batches.push(decodePolicyCandidates(data));
  }
}

/** One attempt at a shard on a worker; `dieAfter` messages published, the worker dies. */
const attempt = async (
  stream: Stream,
  gate: CandidateGate,
  evaluator: PolicyEvaluator,
  shard: number,
  files: File[],
  dieAfter = Infinity,
): Promise<void> => {
  let sent = 0;
  const scope = {
    shard: { jobId: "j", shardId: `j.s${shard}`, paths: [Buffer.from(`d${shard}`)], depth: 1 },
    publisher: {
      publish: (_subject: string, data: Uint8Array, id: string) => {
        if (sent++ >= dieAfter) return Promise.reject(new Error("worker died"));
        stream.publish(data, id);
        return Promise.resolve();
      },
    },
  } as unknown as ShardScope;
  const v = policyVisitor(evaluation, evaluator, gate)(scope);
  for (const f of files) await v.entry(f.path, f.e);
  await v.end().catch(() => undefined);
};

test("workers' candidate gates send far fewer candidates and the merged top-K stays exact, redeliveries included", async (t) => {
  const shards = makeShards(40, 2500);
  const evaluator = new PolicyEvaluator(evaluation);
  // Brute force: every eligible file, best first.
  const all: PolicyCandidate[] = [];
  for (const files of shards)
    for (const f of files) {
      const flags = f.e.hsm?.flags ?? 0;
      const mtimeMs = f.e.mtimeSec * 1000;
      const facts = { path: "", size: f.e.size, uid: 0, gid: 0, mtimeMs, atimeMs: 0, flags };
      if (evaluator.ruleIndex(facts) >= 0)
        all.push({ ...facts, path: f.path, key: mtimeMs, rule: "small" });
    }
  const want = [...all].sort((a, b) => (candidateBefore(a, b) ? -1 : 1)).slice(0, K);

  for (const workers of [1, 3]) {
    const stream = new Stream();
    const gates = Array.from({ length: workers }, () => new CandidateGate(K));
    const order = rng(11);
    for (let s = 0; s < shards.length; s++) {
      const w = Math.floor(order() * gates.length);
      if (s % 7 === 3) {
        // The worker dies after the shard's first message; another worker does it again.
        await attempt(stream, gates[w]!, evaluator, s, shards[s]!, 1);
        await attempt(stream, gates[(w + 1) % gates.length]!, evaluator, s, shards[s]!);
      } else if (s % 7 === 5) {
        // Redelivered to the same worker (its gate has seen these paths already).
        await attempt(stream, gates[w]!, evaluator, s, shards[s]!, 1);
        await attempt(stream, gates[w]!, evaluator, s, shards[s]!);
      } else await attempt(stream, gates[w]!, evaluator, s, shards[s]!);
    }

    // The coordinator's merge (policy-job.ts).
    const merged = new TopK<PolicyCandidate>(K, candidateBefore);
    let eligible = 0;
    let sent = 0;
    for (const b of stream.batches) {
      eligible += b.eligible;
      sent += b.candidates.length;
      for (const c of b.candidates.slice(0, K)) merged.offer(c);
    }
    const got = merged.sorted();
    t.is(eligible, all.length);
    t.is(got.length, K);
    t.deepEqual(
      got.map((c) => `${c.key} ${c.path.toString()}`),
      want.map((c) => `${c.key} ${c.path.toString()}`),
    );
    t.true(sent < all.length / 2, `${sent} candidates sent for ${all.length} eligible files`);
    t.log(
      `${workers} workers: ${sent} candidates sent for ${all.length} eligible files (K = ${K})`,
    );
  }
});

test("candidate gate: keeps the K best distinct paths, a path offered again is not counted twice", (t) => {
  const gate = new CandidateGate(2);
  t.true(gate.offer(5, Buffer.from("b")));
  t.true(gate.offer(5, Buffer.from("b"))); // the same file again: still one of the two
  t.true(gate.offer(7, Buffer.from("c")));
  t.is(gate.size, 2);
  t.false(gate.offer(8, Buffer.from("d"))); // two better distinct files are known
  t.true(gate.offer(5, Buffer.from("a"))); // same key, smaller path: pushes out c
  t.false(gate.holds(Buffer.from("c")));
  t.true(gate.holds(Buffer.from("a")));
  t.true(gate.holds(Buffer.from("b")));
  t.false(gate.offer(5, Buffer.from("c")));
  t.false(new CandidateGate(0).offer(1, Buffer.from("x")));
  // mayKeep: false exactly when offer() must say false whatever the path (no path needed).
  t.true(gate.mayKeep(5)); // a tie: the path decides
  t.true(gate.mayKeep(4));
  t.false(gate.mayKeep(6));
  t.false(gate.offer(6, Buffer.from("0")));
  t.true(new CandidateGate(1).mayKeep(Number.MAX_SAFE_INTEGER)); // not full yet
  t.false(new CandidateGate(0).mayKeep(0));
});
