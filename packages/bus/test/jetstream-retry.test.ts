import test from "ava";
import { NoRespondersError, RequestError } from "@nats-io/transport-node";
import { DependencyError } from "@hsmfleet/core";
import { isRetryableJetStreamError, withJetStreamRetry } from "../src/jetstream-retry.js";

const timeout = () => Object.assign(new Error("timeout"), { name: "TimeoutError" });

test("a call that times out is tried again until it answers", async (t) => {
  let calls = 0;
  const value = await withJetStreamRetry(
    "create a consumer",
    () => {
      calls += 1;
      return calls < 3 ? Promise.reject(timeout()) : Promise.resolve("created");
    },
    { initialDelayMs: 1 },
  );
  t.is(value, "created");
  t.is(calls, 3);
});

test("an error that is not a timeout is thrown at once", async (t) => {
  let calls = 0;
  const err = await t.throwsAsync(
    withJetStreamRetry("create a consumer", () => {
      calls += 1;
      return Promise.reject(new Error("consumer filter subject is not a valid subset"));
    }),
  );
  t.is(calls, 1);
  t.regex(err.message, /not a valid subset/);
});

test("after the deadline the error names what could not be done and why", async (t) => {
  const err = await t.throwsAsync(
    withJetStreamRetry("create the results consumer of job j1", () => Promise.reject(timeout()), {
      deadlineMs: 30,
      initialDelayMs: 5,
    }),
    { instanceOf: DependencyError },
  );
  t.regex(err.message, /could not create the results consumer of job j1: .*tries.*timeout/);
});

test("timeouts wrapped as a cause are retryable", (t) => {
  t.true(isRetryableJetStreamError(new Error("request failed", { cause: timeout() })));
  t.false(isRetryableJetStreamError(new Error("stream not found")));
});

test("no responders (a stream without a leader), also wrapped as a publish wraps it, is retryable", (t) => {
  const noResponders = new NoRespondersError("$JS.API.STREAM.INFO.x");
  t.true(isRetryableJetStreamError(noResponders));
  // nats.js's publish: JetStreamNotEnabled("jetstream is not enabled") ← RequestError ← NoResponders.
  const publishFailure = Object.assign(
    new Error("jetstream is not enabled", {
      cause: new RequestError(noResponders.message, { cause: noResponders }),
    }),
    { name: "JetStreamNotEnabled" },
  );
  t.true(isRetryableJetStreamError(publishFailure));
});
