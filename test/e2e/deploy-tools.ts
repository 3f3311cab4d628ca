/**
 * The validators the deployment tests run (Debian packages that .ci/run installs): whether each is
 * here, and YAML parsing through cloud-init's own Python YAML (python3-yaml, a dependency of the
 * cloud-init package), so a file is read the way cloud-init reads it.
 */
import { spawnSync } from "node:child_process";

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
