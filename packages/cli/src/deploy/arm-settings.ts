/**
 * The files the template adds to each VM's cloud-init from its parameters: the settings and
 * secrets (0600, root), built as ARM expressions so the values never appear in a rendered file.
 */
import { e, format } from "./arm-expressions.js";
import type { Expr, ExprValue } from "./arm-expressions.js";
import type { AzureDeployInputs } from "./inputs.js";
import { natsClientUrls } from "./inputs.js";
import { INSTALL_ENV_FILE } from "./install-script.js";
import { NATS_ENV_FILE, NATS_PASSWORD_VARIABLES } from "./nats-config.js";
import { COORDINATOR_SERVICES, FLEET_ENV_FILE, SERVICES_ENV_FILE } from "./systemd-units.js";

export const IDENTITY_API = "2023-01-31";
/** Where workers and the coordinator keep the CA of the NATS certificates. */
export const NATS_CA_FILE = "/etc/hsmfleet/nats-ca.pem";

const param = (name: string): string => `parameters('${name}')`;

const settingsFile = (path: string, content: Expr | string, permissions = "0600"): ExprValue => ({
  path,
  permissions,
  owner: "root:root",
  content,
});

/** The identity's client id (DefaultAzureCredential picks the user-assigned identity with it). */
export const identityClientId = (identityName: string): string =>
  `reference(resourceId('Microsoft.ManagedIdentity/userAssignedIdentities', '${identityName}'), '${IDENTITY_API}').clientId`;

const installEnv = (services: string): Expr =>
  format(
    "NODE_VERSION='{0}'\nHSMFLEET_PACKAGE_URL='{1}'\nLUSTRE_CLIENT_PACKAGE='{2}'\nAMLFS_MGS_ADDRESS='{3}'\nHSMFLEET_SERVICES='{4}'\n",
    param("nodeVersion"),
    param("hsmfleetPackageUrl"),
    param("lustreClientPackage"),
    param("amlfsMgsAddress"),
    services,
  );

/**
 * The text of FLEET_ENV_FILE for a worker or the coordinator, with {0} the NATS password, {1} the
 * storage account, {2} the storage endpoint suffix, {3} the identity's client id (format()).
 */
export const fleetEnvFormat = (inputs: AzureDeployInputs, user: "worker" | "coordinator"): string =>
  `HSMFLEET_NATS_URL=${natsClientUrls(inputs)}\nHSMFLEET_NATS_REPLICAS=3\nNATS_USER=${user}\nNATS_PASSWORD={0}\nNATS_CA=${NATS_CA_FILE}\nHSMFLEET_STORAGE=https://{1}.blob.{2}\nAZURE_CLIENT_ID={3}\n`;

const fleetEnv = (
  inputs: AzureDeployInputs,
  user: "worker" | "coordinator",
  identity: string,
): Expr =>
  format(
    fleetEnvFormat(inputs, user),
    param(user === "worker" ? "natsWorkerPassword" : "natsCoordinatorPassword"),
    param("storageAccountName"),
    "environment().suffixes.storage",
    identityClientId(identity),
  );

/** Files added to a worker's cloud-init. */
export const workerSettingsFiles = (inputs: AzureDeployInputs, identity: string): ExprValue[] => [
  settingsFile(INSTALL_ENV_FILE, installEnv("''")),
  settingsFile(FLEET_ENV_FILE, fleetEnv(inputs, "worker", identity)),
  settingsFile(NATS_CA_FILE, e(param("natsTlsCaCert")), "0644"),
];

/** The coordinator services the parameters enable, as one space-separated list of unit names. */
const enabledServices = (): string =>
  `trim(concat(${COORDINATOR_SERVICES.map((s) => `if(${param(s.enableParameter)}, '${s.unit} ', '')`).join(", ")}))`;

/** Files added to the coordinator's cloud-init (Prometheus's configuration is one of them). */
export const coordinatorSettingsFiles = (
  inputs: AzureDeployInputs,
  identity: string,
  prometheusConfigExpr: string,
): ExprValue[] => [
  settingsFile(INSTALL_ENV_FILE, installEnv(enabledServices())),
  settingsFile(FLEET_ENV_FILE, fleetEnv(inputs, "coordinator", identity)),
  settingsFile(NATS_CA_FILE, e(param("natsTlsCaCert")), "0644"),
  settingsFile(
    SERVICES_ENV_FILE,
    format(
      COORDINATOR_SERVICES.filter((s) => s.argsVariable !== undefined)
        .map((s, i) => `${s.argsVariable}={${i}}\n`)
        .join(""),
      ...COORDINATOR_SERVICES.filter((s) => s.argsParameter !== undefined).map((s) =>
        param(s.argsParameter!),
      ),
    ),
  ),
  // Written after the packages (defer), over the prometheus package's example configuration.
  {
    ...(settingsFile(
      "/etc/prometheus/prometheus.yml",
      e(`string(${prometheusConfigExpr})`),
      "0644",
    ) as Record<string, ExprValue>),
    defer: true,
  },
];

/** Files added to a NATS node's cloud-init: its passwords and TLS material. */
export const natsSettingsFiles = (inputs: AzureDeployInputs): ExprValue[] => [
  settingsFile(
    NATS_ENV_FILE,
    format(
      `${NATS_PASSWORD_VARIABLES.coordinator}={0}\n${NATS_PASSWORD_VARIABLES.worker}={1}\n`,
      param("natsCoordinatorPassword"),
      param("natsWorkerPassword"),
    ),
  ),
  settingsFile(`${inputs.natsTlsDir}/ca.pem`, e(param("natsTlsCaCert")), "0644"),
  settingsFile(`${inputs.natsTlsDir}/server.pem`, e(param("natsTlsServerCert")), "0644"),
  settingsFile(`${inputs.natsTlsDir}/server-key.pem`, e(param("natsTlsServerKey"))),
];
