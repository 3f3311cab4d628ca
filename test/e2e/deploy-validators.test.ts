/**
 * The rendered deployment passes the tools that run it: cloud-init's schema, systemd-analyze
 * verify (no warning), nats-server -t, promtool check config, and shellcheck on every script of
 * the repository. Each validator is a Debian package .ci/run installs; a test skips, saying so,
 * only where one is missing locally.
 */
import { spawnSync } from "node:child_process";
import { chmod, mkdir, readdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import test from "ava";
import {
  CLOUD_CONFIG_HEADER,
  coordinatorCloudConfig,
  coordinatorSettingsFiles,
  deployInputs,
  natsCloudConfig,
  natsSettingsFiles,
  prometheusConfig,
  renderAzureDeployment,
  toYaml,
  workerCloudConfig,
  workerSettingsFiles,
} from "@hsmfleet/cli";
import { tempDir } from "@hsmfleet/testkit";
import { loadYaml, makeNatsTls, present, skipNote } from "./deploy-tools.js";
import type { VALIDATORS } from "./deploy-tools.js";

const REPO = fileURLToPath(new URL("../../../", import.meta.url));
const EXAMPLE = join(REPO, "deploy/azure/example");
const PATH = `${process.env["PATH"]}:/usr/sbin:/sbin`;

const exec = (command: string, args: string[], env: NodeJS.ProcessEnv = {}) => {
  const r = spawnSync(command, args, { encoding: "utf8", env: { ...process.env, PATH, ...env } });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr, error: r.error };
};

const needs = (...tools: (keyof typeof VALIDATORS)[]) => {
  const missing = tools.filter((tool) => !present(tool));
  for (const tool of missing) console.warn(skipNote(tool));
  return missing.length === 0 ? test : test.skip;
};

const filesIn = async (dir: string, suffix: string): Promise<string[]> =>
  (await readdir(dir)).filter((f) => f.endsWith(suffix)).map((f) => join(dir, f));

needs("cloud-init")("every cloud-init file passes `cloud-init schema --config-file`", async (t) => {
  const files = await filesIn(join(EXAMPLE, "cloud-init"), ".yaml");
  t.is(files.length, 5);
  for (const file of files) {
    const r = exec("cloud-init", ["schema", "--config-file", file]);
    t.is(r.status, 0, `${file}: ${r.stdout}${r.stderr}`);
    t.regex(r.stdout, /Valid cloud-config/, file);
  }
});

needs("cloud-init")(
  "the cloud-init each VM gets (the file plus the settings files the template appends, as JSON after #cloud-config) passes `cloud-init schema`",
  async (t) => {
    const dir = await tempDir();
    t.teardown(() => dir.cleanup());
    const inputs = deployInputs({ workers: 6, workerVmSize: "Standard_D32ds_v5", sizing: "x" });
    // The template's expressions (parameters, format(), reference()) stand for text: a sample here.
    const sample = (v: unknown): unknown =>
      Array.isArray(v)
        ? v.map(sample)
        : v !== null && typeof v === "object"
          ? "expr" in v
            ? "sample value\n"
            : Object.fromEntries(Object.entries(v).map(([k, x]) => [k, sample(x)]))
          : v;
    const roles = {
      worker: [workerCloudConfig(inputs), workerSettingsFiles(inputs, "id")],
      coordinator: [coordinatorCloudConfig(inputs), coordinatorSettingsFiles(inputs, "id", "x")],
      "nats-0": [natsCloudConfig(inputs, 0), natsSettingsFiles(inputs)],
    } as const;
    for (const [role, [config, settings]] of Object.entries(roles)) {
      const effective = {
        ...config,
        write_files: [...config.write_files, ...(sample(settings) as unknown[])],
      };
      const file = join(dir.path, `${role}.json.yaml`);
      await writeFile(file, `${CLOUD_CONFIG_HEADER}${JSON.stringify(effective)}`);
      const r = exec("cloud-init", ["schema", "--config-file", file]);
      t.is(r.status, 0, `${role}: ${r.stdout}${r.stderr}`);
      t.regex(r.stdout, /Valid cloud-config/, role);
    }
  },
);

needs("systemd-analyze")(
  "every systemd unit passes `systemd-analyze verify` with nothing on stderr (the hsmfleet path pointed at a stub made for the check)",
  async (t) => {
    const dir = await tempDir();
    t.teardown(() => dir.cleanup());
    // verify insists that ExecStart's binary exists: the units name /usr/local/bin/hsmfleet (where
    // npm install -g puts it on the VMs), absent here. The check uses copies of the units whose
    // path is replaced by an executable stub made for it; nothing else changes.
    const stub = join(dir.path, "bin", "hsmfleet");
    await mkdir(join(dir.path, "bin"));
    await writeFile(stub, "#!/bin/sh\nexit 0\n");
    await chmod(stub, 0o755);
    const units = [
      ...(await filesIn(join(EXAMPLE, "systemd"), ".service")),
      join(REPO, "deploy/systemd/hsmfleet-worker.service"),
    ];
    t.is(units.length, 7);
    const bin = deployInputs({ workers: 1, workerVmSize: "x", sizing: "x" }).hsmfleetBin;
    for (const unit of units) {
      const copy = join(dir.path, unit.split("/").pop()!);
      const text = await readFile(unit, "utf8");
      await writeFile(copy, text.split(bin).join(stub));
      const r = exec("systemd-analyze", ["verify", copy]);
      t.is(r.status, 0, `${unit}: ${r.stderr}`);
      t.is(r.stderr, "", `${unit}: systemd-analyze verify printed warnings`);
    }
  },
);

needs("nats-server", "openssl")(
  "every NATS config passes `nats-server -t` (TLS files made for the check, passwords in the environment as on the VMs)",
  async (t) => {
    const dir = await tempDir();
    t.teardown(() => dir.cleanup());
    await makeNatsTls(dir.path, [
      "DNS:hsmfleet-nats-0",
      "DNS:hsmfleet-nats-1",
      "DNS:hsmfleet-nats-2",
    ]);
    const env = {
      HSMFLEET_NATS_COORDINATOR_PASSWORD: "coordinator-password-for-the-check",
      HSMFLEET_NATS_WORKER_PASSWORD: "worker-password-for-the-check",
    };
    const inputs = deployInputs({ workers: 1, workerVmSize: "x", sizing: "x" });
    const files = await filesIn(join(EXAMPLE, "nats"), ".conf");
    t.is(files.length, 3);
    for (const file of files) {
      const copy = join(dir.path, file.split("/").pop()!);
      const text = await readFile(file, "utf8");
      await writeFile(
        copy,
        text
          .split(inputs.natsTlsDir)
          .join(dir.path)
          .split(inputs.natsStoreDir)
          .join(join(dir.path, "js")),
      );
      const r = exec("nats-server", ["-t", "-c", copy], env);
      t.is(r.status, 0, `${file}: ${r.stdout}${r.stderr}`);
      // Without the passwords the server refuses the file: they really come from the environment.
      const bare = exec("nats-server", ["-t", "-c", copy], {
        HSMFLEET_NATS_COORDINATOR_PASSWORD: undefined,
        HSMFLEET_NATS_WORKER_PASSWORD: undefined,
      });
      t.not(bare.status, 0, `${file} loaded without its password variables`);
    }
  },
);

needs("promtool")(
  "the Prometheus config the template writes on the coordinator passes `promtool check config` (subscription and resource group filled in as ARM does)",
  async (t) => {
    const dir = await tempDir();
    t.teardown(() => dir.cleanup());
    const inputs = deployInputs({ workers: 6, workerVmSize: "Standard_D32ds_v5", sizing: "x" });
    const file = join(dir.path, "prometheus.yml");
    const config = prometheusConfig(inputs, {
      subscriptionId: "00000000-0000-0000-0000-000000000000",
      resourceGroup: "hsmfleet-test",
    });
    // On the VM it is JSON (the template's string()); JSON is YAML: check both forms.
    for (const text of [JSON.stringify(config), toYaml(config as Parameters<typeof toYaml>[0])]) {
      await writeFile(file, text);
      const r = exec("promtool", ["check", "config", file]);
      t.is(r.status, 0, `${r.stdout}${r.stderr}\n${text}`);
    }
    // And it is the one in the template.
    const template = renderAzureDeployment(inputs, "x").get("azuredeploy.json")!;
    t.regex(
      template,
      /'azure_sd_configs', createArray\(createObject\('environment', 'AzurePublicCloud'/,
    );
    t.regex(template, /'subscription_id', subscription\(\)\.subscriptionId/);
  },
);

needs("shellcheck", "python3")(
  "shellcheck passes on every shell script of the repository",
  async (t) => {
    const out = exec("git", ["-C", REPO, "ls-files", "-z"]);
    t.is(out.status, 0, out.stderr);
    const scripts: string[] = [];
    for (const file of out.stdout.split("\0").filter((f) => f !== "")) {
      if (/node_modules|\/schemas\//.test(file)) continue;
      const path = join(REPO, file);
      let head: string;
      try {
        head = (await readFile(path, "utf8")).slice(0, 64);
      } catch {
        continue; // deleted in the work tree
      }
      if (file.endsWith(".sh") || /^#!\s*\/(usr\/)?bin\/(env )?(ba)?sh\b/.test(head))
        scripts.push(path);
    }
    t.true(scripts.includes(join(REPO, ".ci/run")), ".ci/run is a script");
    t.true(scripts.includes(join(EXAMPLE, "scripts/hsmfleet-install.sh")));
    const r = exec("shellcheck", ["--severity=style", ...scripts]);
    t.is(r.status, 0, `${r.stdout}${r.stderr}`);
    // The install script inside the cloud-init files is the same text as the checked one.
    const install = await readFile(join(EXAMPLE, "scripts/hsmfleet-install.sh"), "utf8");
    for (const role of ["worker", "coordinator"]) {
      const config = loadYaml(await readFile(join(EXAMPLE, `cloud-init/${role}.yaml`), "utf8")) as {
        write_files: { path: string; content: string }[];
      };
      const file = config.write_files.find((f) => f.path === "/usr/local/sbin/hsmfleet-install");
      t.is(file?.content, install, role);
    }
  },
);
