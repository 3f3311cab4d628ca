export { buildProgram, main, ExitCode } from "./main.js";
export { openRuntime, defaultWorkerCount } from "./runtime.js";
export type { Runtime, RuntimeOptions } from "./runtime.js";
export { startEmbeddedNats } from "./embedded-nats.js";
export type { EmbeddedNats, EmbeddedNatsOptions } from "./embedded-nats.js";
export { resolveStateDir } from "./state-dir.js";
export { renderAzureDeployment } from "./deploy/render-azure.js";
export { deployInputs, DEPLOY_DEFAULTS, natsClientUrls } from "./deploy/inputs.js";
export type { AzureDeployInputs } from "./deploy/inputs.js";
export { sizeFleet } from "./deploy/sizing.js";
export { armTemplate, ROLES } from "./deploy/arm-template.js";
export { prometheusConfig } from "./deploy/prometheus-config.js";
export { COORDINATOR_PERMISSIONS, WORKER_PERMISSIONS } from "./deploy/nats-permissions.js";
export { NATS_PASSWORD_VARIABLES } from "./deploy/nats-config.js";
export { COORDINATOR_SERVICES } from "./deploy/systemd-units.js";
export { toYaml } from "./deploy/yaml.js";
export { fleetEnvFormat } from "./deploy/arm-settings.js";
export {
  coordinatorSettingsFiles,
  natsSettingsFiles,
  workerSettingsFiles,
} from "./deploy/arm-settings.js";
export {
  coordinatorCloudConfig,
  natsCloudConfig,
  workerCloudConfig,
  CLOUD_CONFIG_HEADER,
} from "./deploy/cloud-init.js";
