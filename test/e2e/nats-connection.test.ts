import { execFile } from "node:child_process";
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { promisify } from "node:util";
import test from "ava";
import type { ExecutionContext } from "ava";
import { startNatsServer, tempDir } from "@hsmfleet/testkit";
import { runCli } from "./helpers.js";

const run = promisify(execFile);

/** A CA and a server certificate signed by it whose only subjectAltName is `san`, made by openssl. */
const makeCerts = async (dir: string, san: string) => {
  const ca = join(dir, "ca.pem");
  const caKey = join(dir, "ca.key");
  const key = join(dir, "server.key");
  const csr = join(dir, "server.csr");
  const cert = join(dir, "server.pem");
  const ext = join(dir, "server.ext");
  await run("openssl", [
    ...["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2"],
    ...["-subj", "/CN=hsmfleet test CA", "-keyout", caKey, "-out", ca],
  ]);
  await run("openssl", [
    ...["req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=nats test server"],
    ...["-keyout", key, "-out", csr],
  ]);
  await writeFile(ext, `subjectAltName=${san}\n`);
  await run("openssl", [
    ...["x509", "-req", "-in", csr, "-CA", ca, "-CAkey", caKey, "-CAcreateserial"],
    ...["-days", "2", "-extfile", ext, "-out", cert],
  ]);
  return { ca, key, cert };
};

const tlsServer = async (t: ExecutionContext, san: string) => {
  const dir = await tempDir();
  t.teardown(() => dir.cleanup());
  const c = await makeCerts(dir.path, san);
  const server = await startNatsServer({
    configText: `tls { cert_file: "${c.cert}", key_file: "${c.key}" }\n`,
  });
  t.teardown(() => server.stop());
  return { server, ca: c.ca };
};

test("TLS to nats://127.0.0.1 checks the certificate against 127.0.0.1: an IP:127.0.0.1 certificate is accepted, a DNS:localhost one refused (issue 14.10)", async (t) => {
  const ip = await tlsServer(t, "IP:127.0.0.1");
  const ok = await runCli(["--nats", ip.server.url, "--nats-tls-ca", ip.ca, "jobs", "--json"], {
    timeoutMs: 30_000,
  });
  t.is(ok.code, 0, ok.stderr);
  t.deepEqual(JSON.parse(ok.stdout), []);

  const dns = await tlsServer(t, "DNS:localhost");
  const refused = await runCli(
    ["--nats", dns.server.url, "--nats-tls-ca", dns.ca, "jobs", "--json"],
    { timeoutMs: 30_000 },
  );
  t.is(refused.code, 2, refused.stdout);
  t.regex(refused.stderr, /TLS with NATS at nats:\/\/127\.0\.0\.1:\d+ did not succeed/);
  t.regex(refused.stderr, /127\.0\.0\.1/);
});

test("credentials in the NATS URL (nats://user:password@host) are used, and never shown (issue 14.10)", async (t) => {
  const password = "Url-S3cret-pw-0042";
  const server = await startNatsServer({
    configText: `authorization { users: [ { user: "fleet", password: "${password}" } ] }\n`,
  });
  t.teardown(() => server.stop());
  const url = server.url.replace("nats://", `nats://fleet:${password}@`);
  const ok = await runCli(["--nats", url, "--log-level", "debug", "jobs", "--json"], {
    timeoutMs: 30_000,
  });
  t.is(ok.code, 0, ok.stderr.replaceAll(password, "<password>"));
  t.deepEqual(JSON.parse(ok.stdout), []);
  t.false(`${ok.stdout}${ok.stderr}`.includes(password), "the password is never printed");
  // Percent-encoded characters in the URL's user information are decoded, as in any URL.
  const wrong = await runCli(
    ["--nats", server.url.replace("nats://", "nats://fleet:Url%2DS3cret%2Dpw%2D0043@"), "jobs"],
    { timeoutMs: 30_000 },
  );
  t.is(wrong.code, 2);
  t.regex(wrong.stderr, /refused the connection/);
  t.regex(wrong.stderr, /user "fleet"/);
});
