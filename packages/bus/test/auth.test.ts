import { execFileSync } from "node:child_process";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import test from "ava";
import { nkeys } from "@nats-io/transport-node";
import { startNatsServer, tempDir } from "@hsmfleet/testkit";
import { BusAuthError, connectBus, natsAuthOptions, redactBusSecrets } from "../src/index.js";

const PASSWORD = "s3cr3t-Pa55word";
const TOKEN = "t0k3n-abcdef-123456";

test("user/password: the right ones connect; wrong ones fail with a clear message that hides the password", async (t) => {
  const server = await startNatsServer({
    configText: `authorization { users: [ { user: "fleet", password: "${PASSWORD}" } ] }\n`,
  });
  t.teardown(() => server.stop());
  const nc = await connectBus({
    servers: server.url,
    reconnectForever: false,
    auth: { user: "fleet", password: PASSWORD },
  });
  await nc.flush();
  await nc.close();

  const err = await t.throwsAsync(
    connectBus({
      servers: server.url,
      reconnectForever: false,
      auth: { user: "fleet", password: "wrong-password-xyz" },
    }),
    { instanceOf: BusAuthError },
  );
  t.regex(err.message, /refused the connection .*user "fleet"/);
  t.regex(err.message, /--nats-user/);
  t.false(err.message.includes("wrong-password-xyz"));
  const none = await t.throwsAsync(connectBus({ servers: server.url, reconnectForever: false }), {
    instanceOf: BusAuthError,
  });
  t.regex(none.message, /no authentication/);
});

test("token: the right one connects, a wrong one is refused without showing it", async (t) => {
  const server = await startNatsServer({ configText: `authorization { token: "${TOKEN}" }\n` });
  t.teardown(() => server.stop());
  const nc = await connectBus({
    servers: server.url,
    reconnectForever: false,
    auth: { token: TOKEN },
  });
  await nc.close();
  const err = await t.throwsAsync(
    connectBus({
      servers: server.url,
      reconnectForever: false,
      auth: { token: "not-the-token-999" },
    }),
    { instanceOf: BusAuthError },
  );
  t.false(err.message.includes("not-the-token-999"));
  t.regex(err.message, /a token/);
});

test("NKey seed file: the registered key connects, another is refused", async (t) => {
  const dir = await tempDir("nkey-");
  t.teardown(() => dir.cleanup());
  const user = nkeys.createUser();
  const other = nkeys.createUser();
  const seedFile = join(dir.path, "user.nk");
  const otherFile = join(dir.path, "other.nk");
  writeFileSync(seedFile, `${new TextDecoder().decode(user.getSeed())}\n`);
  writeFileSync(otherFile, new TextDecoder().decode(other.getSeed()));
  const server = await startNatsServer({
    configText: `authorization { users: [ { nkey: "${user.getPublicKey()}" } ] }\n`,
  });
  t.teardown(() => server.stop());
  const nc = await connectBus({
    servers: server.url,
    reconnectForever: false,
    auth: { nkeySeedFile: seedFile },
  });
  await nc.close();
  const err = await t.throwsAsync(
    connectBus({ servers: server.url, reconnectForever: false, auth: { nkeySeedFile: otherFile } }),
    { instanceOf: BusAuthError },
  );
  t.regex(err.message, /NKey seed file/);
  t.false(err.message.includes(new TextDecoder().decode(other.getSeed())));
});

test("mutual TLS: CA + client certificate connect; without a client certificate it fails clearly", async (t) => {
  const dir = await tempDir("tls-");
  t.teardown(() => dir.cleanup());
  const p = (n: string) => join(dir.path, n);
  const ssl = (...args: string[]) => execFileSync("openssl", args, { stdio: "ignore" });
  ssl(
    "req",
    "-x509",
    "-newkey",
    "rsa:2048",
    "-nodes",
    "-days",
    "2",
    "-subj",
    "/CN=test-ca",
    "-keyout",
    p("ca.key"),
    "-out",
    p("ca.pem"),
  );
  writeFileSync(p("san.ext"), "subjectAltName=IP:127.0.0.1,DNS:localhost\n");
  for (const who of ["server", "client"]) {
    ssl(
      "req",
      "-newkey",
      "rsa:2048",
      "-nodes",
      "-subj",
      `/CN=${who}`,
      "-keyout",
      p(`${who}.key`),
      "-out",
      p(`${who}.csr`),
    );
    ssl(
      "x509",
      "-req",
      "-in",
      p(`${who}.csr`),
      "-CA",
      p("ca.pem"),
      "-CAkey",
      p("ca.key"),
      "-CAcreateserial",
      "-days",
      "2",
      "-extfile",
      p("san.ext"),
      "-out",
      p(`${who}.pem`),
    );
  }
  const server = await startNatsServer({
    configText: `tls { cert_file: "${p("server.pem")}", key_file: "${p("server.key")}", ca_file: "${p("ca.pem")}", verify: true }\n`,
  });
  t.teardown(() => server.stop());
  const nc = await connectBus({
    servers: server.url,
    reconnectForever: false,
    auth: { tlsCaFile: p("ca.pem"), tlsCertFile: p("client.pem"), tlsKeyFile: p("client.key") },
  });
  await nc.flush();
  await nc.close();
  const err = await t.throwsAsync(
    connectBus({ servers: server.url, reconnectForever: false, auth: { tlsCaFile: p("ca.pem") } }),
  );
  t.regex(
    err.message,
    /TLS with NATS at nats:\/\/127\.0\.0\.1:\d+ did not succeed.*--nats-tls-cert/,
  );
  t.log(err.message);
});

test("bad combinations and unreadable files are usage errors; URLs and secrets are redacted", async (t) => {
  t.throws(() => natsAuthOptions({ user: "u" }), { message: /go together/ });
  t.throws(() => natsAuthOptions({ token: "x", user: "u", password: "p" }), {
    message: /one way to authenticate/,
  });
  t.throws(() => natsAuthOptions({ credsFile: "/nonexistent/x.creds" }), {
    message: /cannot read the NATS creds file \/nonexistent\/x.creds/,
  });
  t.throws(() => natsAuthOptions({ tlsCertFile: "/a.pem" }), { message: /go together/ });
  t.is(
    redactBusSecrets("connect nats://fleet:hunter2@10.0.0.4:4222 with token tok-1", {
      token: "tok-1",
    }),
    "connect nats://***@10.0.0.4:4222 with token ***",
  );
  const err = await t.throwsAsync(
    connectBus({
      servers: "nats://fleet:hunter2@127.0.0.1:1",
      reconnectForever: false,
      timeoutMs: 1000,
    }),
  );
  t.false(err.message.includes("hunter2"), err.message);
});
