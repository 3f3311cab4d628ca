import { PolicyEvaluator } from "@hsmfleet/core";
import type { PolicyEvaluation } from "@hsmfleet/core";
import { JobKind } from "@hsmfleet/protocol";
import type { JobStatus } from "@hsmfleet/protocol";
import type { WorkerJobKind } from "../runtime/job-kind.js";
import { handleWalkShard } from "../walk/walk-shard.js";
import { CandidateGate } from "./candidate-gate.js";
import { policyVisitor } from "./policy-visitor.js";

/**
 * Compiled evaluators of the jobs seen lately (a job's walk reuses its compiled globs), each with
 * the worker's top-K of that job (candidate-gate.ts: at most K paths per job kept).
 */
const EVALUATORS_KEPT = 16;

/** Reads the evaluation a policy job carries (from its record, written by the coordinator). */
export const evaluationOf = (job: JobStatus): PolicyEvaluation => {
  let e: PolicyEvaluation;
  try {
    e = JSON.parse(job.spec.policy ?? "") as PolicyEvaluation;
  } catch (err) {
    throw new Error(`policy job ${job.spec.jobId}: its record holds no policy evaluation`, {
      cause: err,
    });
  }
  if (
    typeof e !== "object" ||
    e === null ||
    typeof e.nowMs !== "number" ||
    !Number.isSafeInteger(e.topK) ||
    e.topK < 0 ||
    (e.policy !== undefined && typeof e.policy !== "object") ||
    !Array.isArray(e.classes)
  )
    throw new Error(`policy job ${job.spec.jobId}: its policy evaluation is malformed`);
  return e;
};

/** Policy: walk shards evaluated against one policy; each shard sends back its top-K. */
export const policyKind: WorkerJobKind = {
  kind: JobKind.Policy,
  start: (ctx) => {
    const compiled = new Map<
      string,
      { e: PolicyEvaluation; evaluator: PolicyEvaluator; gate: CandidateGate }
    >();
    const forJob = (job: JobStatus) => {
      let c = compiled.get(job.spec.jobId);
      if (!c) {
        const e = evaluationOf(job);
        c = { e, evaluator: new PolicyEvaluator(e), gate: new CandidateGate(e.topK) };
        compiled.set(job.spec.jobId, c);
        if (compiled.size > EVALUATORS_KEPT) compiled.delete(compiled.keys().next().value!);
      }
      return c;
    };
    return {
      walk: (msg, shard, job) => {
        const { e, evaluator, gate } = forJob(job);
        return handleWalkShard(ctx.walk, msg, shard, job, policyVisitor(e, evaluator, gate));
      },
    };
  },
};
