/**
 * The configuration of one node of the fleet's 3-node NATS JetStream cluster: TLS for clients and
 * routes (routes authenticate each other with the node certificates, `verify: true`), two users
 * with the coordinator and worker permissions, and JetStream (the fleet's streams and buckets are
 * created R3: HSMFLEET_NATS_REPLICAS=3 on every client). Passwords are not in the file: the server
 * reads them from its environment ($HSMFLEET_NATS_*_PASSWORD, /etc/nats/hsmfleet.env, written from
 * the template's secure parameters), so the rendered file holds no secret and no placeholder.
 */
import type { AzureDeployInputs } from "./inputs.js";
import { COORDINATOR_PERMISSIONS, WORKER_PERMISSIONS } from "./nats-permissions.js";
import type { NatsPermissions } from "./nats-permissions.js";

/** Environment variables the NATS server reads its user passwords from. */
export const NATS_PASSWORD_VARIABLES = {
  coordinator: "HSMFLEET_NATS_COORDINATOR_PASSWORD",
  worker: "HSMFLEET_NATS_WORKER_PASSWORD",
} as const;

/** The file on a NATS VM that holds those variables (0600, root). */
export const NATS_ENV_FILE = "/etc/nats/hsmfleet.env";
/** Where a NATS VM keeps its configuration. */
export const NATS_CONFIG_FILE = "/etc/nats/hsmfleet.conf";

const list = (items: readonly string[], indent: string): string =>
  `[\n${items.map((s) => `${indent}  ${JSON.stringify(s)}`).join("\n")}\n${indent}]`;

const permissions = (p: NatsPermissions, indent: string): string =>
  `{\n${indent}  publish: ${list(p.publish, `${indent}  `)}\n${indent}  subscribe: ${list(p.subscribe, `${indent}  `)}\n${indent}}`;

const tlsBlock = (inputs: AzureDeployInputs, indent: string, verify: boolean): string =>
  [
    `${indent}tls {`,
    `${indent}  cert_file: "${inputs.natsTlsDir}/server.pem"`,
    `${indent}  key_file: "${inputs.natsTlsDir}/server-key.pem"`,
    `${indent}  ca_file: "${inputs.natsTlsDir}/ca.pem"`,
    ...(verify ? [`${indent}  verify: true`] : []),
    `${indent}  timeout: 5`,
    `${indent}}`,
  ].join("\n");

/** The server name of node `index` (0, 1, 2). */
export const natsServerName = (inputs: AzureDeployInputs, index: number): string =>
  `${inputs.namePrefix}-nats-${index}`;

/** nats-server configuration of node `index` of the cluster. */
/** Address node `index` listens on: natsListenAddress, or its own host with "host". */
const listenOf = (inputs: AzureDeployInputs, index: number): string =>
  inputs.natsListenAddress === "host" ? inputs.natsHosts[index]! : inputs.natsListenAddress;

export const renderNatsConfig = (inputs: AzureDeployInputs, index: number): string => {
  const listen = listenOf(inputs, index);
  const routes = inputs.natsHosts
    .filter((_, i) => i !== index)
    .map((h) => `    "nats-route://${h}:${inputs.natsClusterPort}"`)
    .join("\n");
  return `# hsmfleet NATS JetStream node ${index} of 3 (rendered by \`hsmfleet deploy azure\`).
# Passwords come from the environment (${NATS_ENV_FILE}); check with:
#   env $(cat ${NATS_ENV_FILE}) nats-server -t -c ${NATS_CONFIG_FILE}
server_name: "${natsServerName(inputs, index)}"
listen: "${listen}:${inputs.natsPort}"
http: "${listen}:${inputs.natsMonitorPort}"

${tlsBlock(inputs, "", false)}

jetstream {
  store_dir: "${inputs.natsStoreDir}/${natsServerName(inputs, index)}"
}

cluster {
  name: "${inputs.namePrefix}"
  listen: "${listen}:${inputs.natsClusterPort}"
${tlsBlock(inputs, "  ", true)}
  routes: [
${routes}
  ]
}

authorization {
  COORDINATOR = ${permissions(COORDINATOR_PERMISSIONS, "  ")}
  WORKER = ${permissions(WORKER_PERMISSIONS, "  ")}
  users: [
    { user: "coordinator", password: $${NATS_PASSWORD_VARIABLES.coordinator}, permissions: $COORDINATOR }
    { user: "worker", password: $${NATS_PASSWORD_VARIABLES.worker}, permissions: $WORKER }
  ]
}
`;
};
