import test from "ava";
import { UsageError } from "@hsmfleet/core";
import { redactPath, scrubSecrets, tracePathModeFromEnv } from "../src/index.js";

test("paths in spans: basename by default, full or none on request", (t) => {
  t.is(tracePathModeFromEnv({}), "basename");
  t.is(tracePathModeFromEnv({ HSMFLEET_TRACE_PATHS: "full" }), "full");
  t.throws(() => tracePathModeFromEnv({ HSMFLEET_TRACE_PATHS: "some" }), {
    instanceOf: UsageError,
  });
  const p = Buffer.from("project/run-7/out.dat");
  t.is(redactPath(p, "full"), "project/run-7/out.dat");
  t.is(redactPath(p, "basename"), "out.dat");
  t.is(redactPath(p, "none"), undefined);
  t.is(redactPath(Buffer.alloc(0), "basename"), ".");
});

test("secrets are scrubbed from free text", (t) => {
  const key =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";
  const conn = `DefaultEndpointsProtocol=https;AccountName=acct;AccountKey=${key};EndpointSuffix=core.windows.net`;
  const sas =
    "https://acct.blob.core.windows.net/data?sv=2022-11-02&ss=b&srt=co&sp=rwl&se=2030-01-01T00:00:00Z&sig=AbCdEf%2B123%3D";
  const text = scrubSecrets(
    `cannot connect with ${conn} or ${sas}: Bearer eyJ0eXAiOiJKV1Qi.abc.def`,
  );
  t.false(text.includes(key));
  t.false(text.includes("AbCdEf"));
  t.false(text.includes("eyJ0eXAiOiJKV1Qi"));
  t.true(text.includes("AccountName=acct"));
  t.true(text.includes("https://acct.blob.core.windows.net/data?[redacted]"));
});
