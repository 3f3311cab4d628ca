/**
 * The cloud-init configuration of each kind of VM, as objects: written as YAML files by the
 * renderer and embedded in the ARM template, which appends the files made from its parameters
 * (settings and secrets, 0600) to `write_files` before it hands the whole as customData (JSON is
 * YAML). So the files on disk are exactly what every VM gets, minus the values the user supplies.
 */
import type { AzureDeployInputs } from "./inputs.js";
import { INSTALL_SCRIPT_PATH, renderInstallScript } from "./install-script.js";
import { NATS_CONFIG_FILE, renderNatsConfig } from "./nats-config.js";
import {
  COORDINATOR_SERVICES,
  renderCoordinatorUnit,
  renderNatsUnit,
  renderWorkerUnit,
} from "./systemd-units.js";

export interface CloudInitFile {
  path: string;
  permissions: string;
  owner: string;
  content: string;
}

export interface CloudConfig {
  [key: string]: unknown;
  package_update: boolean;
  packages: string[];
  write_files: CloudInitFile[];
  runcmd: string[][];
}

/** The first line cloud-init needs to read customData as a cloud-config. */
export const CLOUD_CONFIG_HEADER = "#cloud-config\n";

const file = (path: string, content: string, permissions = "0644"): CloudInitFile => ({
  path,
  permissions,
  owner: "root:root",
  content,
});

/** Packages hsmfleet needs on a worker or coordinator (npm builds the native addon on install). */
const HSMFLEET_PACKAGES = [
  "ca-certificates",
  "curl",
  "gnupg",
  "xz-utils",
  "g++",
  "make",
  "python3",
  "attr",
];

export const workerCloudConfig = (inputs: AzureDeployInputs): CloudConfig => ({
  package_update: true,
  packages: HSMFLEET_PACKAGES,
  write_files: [
    file("/etc/systemd/system/hsmfleet-worker.service", renderWorkerUnit(inputs)),
    file(INSTALL_SCRIPT_PATH, renderInstallScript(inputs), "0755"),
  ],
  runcmd: [[INSTALL_SCRIPT_PATH, "worker"]],
});

export const coordinatorCloudConfig = (inputs: AzureDeployInputs): CloudConfig => ({
  package_update: true,
  packages: [...HSMFLEET_PACKAGES, "prometheus"],
  write_files: [
    ...COORDINATOR_SERVICES.map((s) =>
      file(`/etc/systemd/system/${s.unit}.service`, renderCoordinatorUnit(inputs, s)),
    ),
    file(INSTALL_SCRIPT_PATH, renderInstallScript(inputs), "0755"),
  ],
  runcmd: [[INSTALL_SCRIPT_PATH, "coordinator"]],
});

export const natsCloudConfig = (inputs: AzureDeployInputs, index: number): CloudConfig => ({
  package_update: true,
  packages: ["nats-server"],
  write_files: [
    file("/etc/systemd/system/hsmfleet-nats.service", renderNatsUnit()),
    file(NATS_CONFIG_FILE, renderNatsConfig(inputs, index)),
  ],
  runcmd: [
    // The package's own unit (if any) would take the client port.
    ["sh", "-c", "systemctl disable --now nats-server.service 2>/dev/null || true"],
    ["mkdir", "-p", inputs.natsStoreDir],
    ["systemctl", "daemon-reload"],
    ["systemctl", "enable", "--now", "hsmfleet-nats.service"],
  ],
});
