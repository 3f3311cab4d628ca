import { access } from "node:fs/promises";
import { join } from "node:path";
import test from "ava";
import { DependencyError } from "@hsmfleet/core";
import { tempDir } from "@hsmfleet/testkit";
import { resolveStateDir, startEmbeddedNats } from "../src/index.js";

test("a missing nats-server binary is a clear error saying how to install it", async (t) => {
  const dir = await tempDir();
  t.teardown(() => dir.cleanup());
  const err = await t.throwsAsync(
    startEmbeddedNats({ stateDir: dir.path, binary: "/nonexistent/nats-server" }),
    {
      instanceOf: DependencyError,
    },
  );
  t.regex(err.message, /nats-server was not found.*apt-get install nats-server.*--nats/);
});

test("the embedded server keeps JetStream state under the state dir and is shared while it runs", async (t) => {
  const dir = await tempDir();
  t.teardown(() => dir.cleanup());
  const first = await startEmbeddedNats({ stateDir: dir.path });
  t.teardown(() => first.close());
  t.true(first.owned);
  t.regex(first.url, /^nats:\/\/127\.0\.0\.1:\d+$/);
  const second = await startEmbeddedNats({ stateDir: dir.path });
  t.false(second.owned, "a second command attaches instead of starting another server");
  t.is(second.url, first.url);
  await first.close();
  await t.throwsAsync(
    access(join(dir.path, "nats", "embedded.json")),
    undefined,
    "marker removed on close",
  );
  await access(join(dir.path, "nats", "jetstream"));
});

test("state dir: flag, then HSMFLEET_STATE_DIR, then XDG_STATE_HOME, then ~/.local/state", (t) => {
  const saved = { ...process.env };
  t.teardown(() => {
    process.env = saved;
  });
  process.env["HSMFLEET_STATE_DIR"] = "/srv/hsm";
  process.env["XDG_STATE_HOME"] = "/xdg";
  t.is(resolveStateDir("/flag"), "/flag");
  t.is(resolveStateDir(), "/srv/hsm");
  delete process.env["HSMFLEET_STATE_DIR"];
  t.is(resolveStateDir(), "/xdg/hsmfleet");
  delete process.env["XDG_STATE_HOME"];
  t.regex(resolveStateDir(), /\/\.local\/state\/hsmfleet$/);
});
