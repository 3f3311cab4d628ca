/**
 * Everything `hsmfleet deploy azure` writes, as relative path → content: the ARM template and its
 * parameters file, each role's cloud-init, the systemd units, the NATS configurations, the install
 * script and a README with the commands to deploy. Pure: the same inputs give the same bytes
 * (the checked-in examples under deploy/azure/ are compared with it).
 */
import { armParametersFile } from "./arm-parameters.js";
import { armTemplate } from "./arm-template.js";
import {
  CLOUD_CONFIG_HEADER,
  coordinatorCloudConfig,
  natsCloudConfig,
  workerCloudConfig,
} from "./cloud-init.js";
import type { AzureDeployInputs } from "./inputs.js";
import { renderInstallScript } from "./install-script.js";
import { renderNatsConfig } from "./nats-config.js";
import {
  COORDINATOR_SERVICES,
  renderCoordinatorUnit,
  renderNatsUnit,
  renderWorkerUnit,
} from "./systemd-units.js";
import { toYaml } from "./yaml.js";
import type { YamlValue } from "./yaml.js";

export type RenderedFiles = Map<string, string>;

const json = (value: unknown): string => `${JSON.stringify(value, null, 2)}\n`;
const cloudInit = (config: object): string =>
  toYaml(config as { [key: string]: YamlValue }, CLOUD_CONFIG_HEADER);

const readme = (
  inputs: AzureDeployInputs,
  command: string,
): string => `# hsmfleet on Azure: ${inputs.workers} × ${inputs.workerVmSize}

Rendered by \`${command}\` (${inputs.sizing}); do not edit, render again.
Step by step, from an empty subscription to a running fleet: docs/deploy.md.

| file | what |
| --- | --- |
| azuredeploy.json | ARM template: network (NSG: NATS and metrics ports closed to the Internet), NAT gateway, managed identity and role assignments, 3 NATS VMs, coordinator VM, worker scale set (${inputs.workers} instances) |
| azuredeploy.parameters.json | the sizes above; every other value is a parameter given at deployment (secrets as secureString) |
| cloud-init/*.yaml | each VM's cloud-init; the template adds the settings files made from its parameters |
| systemd/*.service | hsmfleet-worker, hsmfleet-nats and the coordinator services (sync, autoimport, policy, dashboard) |
| nats/nats-*.conf | the NATS JetStream cluster (TLS, users with the fleet's permissions; passwords from the environment) |
| scripts/hsmfleet-install.sh | installs Node.js, hsmfleet, the Lustre client and the AMLFS mount (run by cloud-init) |

The Prometheus configuration (Azure service discovery of the scale set) is part of the
coordinator's settings in azuredeploy.json: it needs the deployment's subscription and resource
group, which the template fills in.

\`\`\`sh
az deployment group create -g RESOURCE_GROUP --template-file azuredeploy.json \\
  --parameters @azuredeploy.parameters.json storageAccountName=… amlfsMgsAddress=… \\
  lustreClientPackage=… hsmfleetPackageUrl=… adminSshPublicKey=@~/.ssh/id_ed25519.pub \\
  natsCoordinatorPassword=… natsWorkerPassword=… \\
  natsTlsCaCert=@ca.pem natsTlsServerCert=@nats.pem natsTlsServerKey=@nats-key.pem
\`\`\`
`;

/** Every file of the deployment. `command` is the command line shown in the README. */
export const renderAzureDeployment = (
  inputs: AzureDeployInputs,
  command: string,
): RenderedFiles => {
  const files: RenderedFiles = new Map();
  files.set("README.md", readme(inputs, command));
  files.set("azuredeploy.json", json(armTemplate(inputs)));
  files.set("azuredeploy.parameters.json", json(armParametersFile(inputs)));
  files.set("cloud-init/worker.yaml", cloudInit(workerCloudConfig(inputs)));
  files.set("cloud-init/coordinator.yaml", cloudInit(coordinatorCloudConfig(inputs)));
  for (const i of [0, 1, 2]) {
    files.set(`cloud-init/nats-${i}.yaml`, cloudInit(natsCloudConfig(inputs, i)));
    files.set(`nats/nats-${i}.conf`, renderNatsConfig(inputs, i));
  }
  files.set("systemd/hsmfleet-worker.service", renderWorkerUnit(inputs));
  files.set("systemd/hsmfleet-nats.service", renderNatsUnit());
  for (const s of COORDINATOR_SERVICES)
    files.set(`systemd/${s.unit}.service`, renderCoordinatorUnit(inputs, s));
  files.set("scripts/hsmfleet-install.sh", renderInstallScript(inputs));
  return files;
};
