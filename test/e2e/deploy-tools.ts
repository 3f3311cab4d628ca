/**
 * The validators the deployment tests run (Debian packages that .ci/run installs): whether each is
 * here, and YAML parsing through cloud-init's own Python YAML (python3-yaml, a dependency of the
 * cloud-init package), so a file is read the way cloud-init reads it.
 */
import { execFile, spawnSync } from "node:child_process";
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { promisify } from "node:util";

export const have = (command: string, args: string[] = ["--version"]): boolean => {
  const r = spawnSync(command, args, {
    stdio: "ignore",
    env: { ...process.env, PATH: `${process.env["PATH"]}:/usr/sbin:/sbin` },
  });
  return r.error === undefined && r.status === 0;
};

/** Validators and the Debian package each comes from. */
export const VALIDATORS = {
  "cloud-init": { args: ["--version"], pkg: "cloud-init" },
  "systemd-analyze": { args: ["--version"], pkg: "systemd" },
  "nats-server": { args: ["--version"], pkg: "nats-server" },
  promtool: { args: ["--version"], pkg: "prometheus" },
  shellcheck: { args: ["--version"], pkg: "shellcheck" },
  python3: { args: ["-c", "import yaml"], pkg: "python3-yaml" },
  openssl: { args: ["version"], pkg: "openssl" },
} as const;

export const present = (name: keyof typeof VALIDATORS): boolean =>
  have(name, [...VALIDATORS[name].args]);

export const skipNote = (name: keyof typeof VALIDATORS): string =>
  `${name} not found (Debian package ${VALIDATORS[name].pkg}; .ci/run installs it): skipping`;

/** Parses YAML as cloud-init does (PyYAML safe_load). */
export const loadYaml = (text: string): unknown => {
  const r = spawnSync(
    "python3",
    ["-c", "import json, sys, yaml; json.dump(yaml.safe_load(sys.stdin), sys.stdout)"],
    { input: text, encoding: "utf8" },
  );
  if (r.status !== 0) throw new Error(`python3 yaml.safe_load failed: ${r.stderr}`);
  return JSON.parse(r.stdout) as unknown;
};

const run = promisify(execFile);

/**
 * The TLS files of a NATS node as docs/deploy.md makes them: a CA, and a node certificate signed
 * by it with the given subjectAltNames and extended key usage serverAuth + clientAuth (routes
 * verify each other with it), written as ca.pem, server.pem and server-key.pem in `dir`.
 */
export const makeNatsTls = async (dir: string, sans: string[]): Promise<void> => {
  const caKey = join(dir, "ca-key.pem");
  const csr = join(dir, "server.csr");
  const ext = join(dir, "server.ext");
  await run("openssl", [
    ...["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2"],
    ...["-subj", "/CN=hsmfleet test CA", "-keyout", caKey, "-out", join(dir, "ca.pem")],
  ]);
  await run("openssl", [
    ...["req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=hsmfleet-nats"],
    ...["-keyout", join(dir, "server-key.pem"), "-out", csr],
  ]);
  await writeFile(
    ext,
    `subjectAltName=${sans.join(",")}\nextendedKeyUsage=serverAuth,clientAuth\n`,
  );
  await run("openssl", [
    ...["x509", "-req", "-in", csr, "-CA", join(dir, "ca.pem"), "-CAkey", caKey],
    ...["-CAcreateserial", "-days", "2", "-extfile", ext, "-out", join(dir, "server.pem")],
  ]);
};
