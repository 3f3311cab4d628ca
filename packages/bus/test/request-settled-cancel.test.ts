import test from "ava";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { Kvm } from "@nats-io/kv";
import { RequestError, TimeoutError } from "@nats-io/transport-node";
import { startNatsServer } from "@hsmfleet/testkit";
import { connectBus } from "../src/connection.js";

// nats-core's own errors module (the one its request.js constructs RequestError from), reached by
// file path: the package exports only "." and "./internal".
const require = createRequire(import.meta.url);
const coreLib = dirname(
  require.resolve("@nats-io/nats-core", {
    paths: [dirname(require.resolve("@nats-io/transport-node"))],
  }),
);
const coreErrors = require(join(coreLib, "errors.js")) as { RequestError: typeof RequestError };

/** Counts RequestError constructions inside nats-core while `fn` runs. */
const countRequestErrors = async (fn: () => Promise<void>): Promise<number> => {
  const original = coreErrors.RequestError;
  let made = 0;
  coreErrors.RequestError = class Counted extends original {
    constructor(...args: ConstructorParameters<typeof RequestError>) {
      super(...args);
      made++;
    }
  };
  try {
    await fn();
  } finally {
    coreErrors.RequestError = original;
  }
  return made;
};

test("answered requests and KV reads make no RequestError; failures still reject as before", async (t) => {
  const server = await startNatsServer();
  t.teardown(() => server.stop());
  const nc = await connectBus({ servers: server.url });
  t.teardown(() => nc.close());
  nc.subscribe("echo", {
    callback: (_err, m) => {
      m.respond(m.data);
    },
  });
  const kv = await new Kvm(nc).create("settled-cancel");
  await kv.put("here", "v");
  await nc.flush();

  const made = await countRequestErrors(async () => {
    for (let i = 0; i < 50; i++) {
      const r = await nc.request("echo", `m${i}`, { timeout: 5_000 });
      t.is(r.string(), `m${i}`);
    }
    t.is((await kv.get("here"))?.string(), "v");
    t.is(await kv.get("missing"), null, "a miss reads as null");
    await kv.put("new", "w");
  });
  t.is(made, 0, "no RequestError made for a request that was answered");

  // Failures are unchanged: no responders and a timeout reject as nats.js documents.
  const none = await t.throwsAsync(nc.request("nobody.listens", "x", { timeout: 5_000 }));
  t.true(none instanceof RequestError && none.isNoResponders(), String(none));
  nc.subscribe("silent", { callback: () => undefined });
  await nc.flush();
  const late = await t.throwsAsync(nc.request("silent", "x", { timeout: 200 }));
  t.true(late instanceof TimeoutError, String(late));
});
