/**
 * The systemd units of a deployed fleet: the worker (every scale-set VM), the NATS node (the three
 * NATS VMs) and the coordinator's services (sync, autoimport, policy serve, dashboard), each of
 * which the template enables only when its parameter says so. Settings and secrets come from
 * environment files the template writes (0600): FLEET_ENV_FILE on worker and coordinator VMs,
 * SERVICES_ENV_FILE with each service's arguments on the coordinator.
 */
import type { AzureDeployInputs } from "./inputs.js";
import { NATS_CONFIG_FILE, NATS_ENV_FILE } from "./nats-config.js";

/** NATS URL list, NATS user (worker or coordinator) and password, CA, replicas, storage account URL, identity client id. */
export const FLEET_ENV_FILE = "/etc/hsmfleet/fleet.env";
/** Arguments of the coordinator services (HSMFLEET_SYNC_ARGS, …). */
export const SERVICES_ENV_FILE = "/etc/hsmfleet/services.env";

export interface CoordinatorService {
  /** Unit name without .service. */
  unit: string;
  /** The hsmfleet command, e.g. "policy serve". */
  command: string;
  /** Template parameter that enables it. */
  enableParameter: string;
  /** Template parameter with its arguments (empty when it takes none from the user). */
  argsParameter: string | undefined;
  /** Variable of SERVICES_ENV_FILE with the arguments. */
  argsVariable: string | undefined;
  description: string;
}

export const COORDINATOR_SERVICES: readonly CoordinatorService[] = [
  {
    unit: "hsmfleet-sync",
    command: "sync",
    enableParameter: "enableSync",
    argsParameter: "syncArgs",
    argsVariable: "HSMFLEET_SYNC_ARGS",
    description: "hsmfleet sync (continuous Lustre to Blob synchronisation)",
  },
  {
    unit: "hsmfleet-autoimport",
    command: "autoimport",
    enableParameter: "enableAutoimport",
    argsParameter: "autoimportArgs",
    argsVariable: "HSMFLEET_AUTOIMPORT_ARGS",
    description: "hsmfleet autoimport (Blob events from Service Bus into the file system)",
  },
  {
    unit: "hsmfleet-policy",
    command: "policy serve",
    enableParameter: "enablePolicy",
    argsParameter: "policyArgs",
    argsVariable: "HSMFLEET_POLICY_ARGS",
    description: "hsmfleet policy serve (archive and release policies)",
  },
  {
    unit: "hsmfleet-dashboard",
    command: "dashboard",
    enableParameter: "enableDashboard",
    argsParameter: undefined,
    argsVariable: undefined,
    description: "hsmfleet dashboard (live fleet throughput page)",
  },
];

const header = (what: string): string =>
  `# ${what}\n# Rendered by \`hsmfleet deploy azure\`; installed by the VM's cloud-init.\n`;

/** hsmfleet-worker.service: one worker per scale-set VM. */
export const renderWorkerUnit = (inputs: AzureDeployInputs): string => `${header(
  "One hsmfleet worker per VM of the scale set. SIGTERM (scale-in, upgrade, reboot) finishes the\n# items in flight and hands the rest back to the fleet: no work is lost.",
)}[Unit]
Description=hsmfleet worker (stateless copy worker coordinated over NATS JetStream)
After=network-online.target remote-fs.target
Wants=network-online.target
RequiresMountsFor=${inputs.mountPoint}

[Service]
# Runs as root: HSM actions and imports need trusted.hsm, lfs and chown (docs/security.md).
EnvironmentFile=${FLEET_ENV_FILE}
Environment=UV_THREADPOOL_SIZE=64
ExecStart=${inputs.hsmfleetBin} --metrics-port ${inputs.workerMetricsPort} --storage \${HSMFLEET_STORAGE} worker --concurrency ${inputs.workerConcurrency} --shutdown-grace 60000
KillSignal=SIGTERM
TimeoutStopSec=90
Restart=always
RestartSec=5

[Install]
WantedBy=multi-user.target
`;

/** The coordinator's unit of `service`. */
export const renderCoordinatorUnit = (
  inputs: AzureDeployInputs,
  service: CoordinatorService,
): string => {
  const args =
    service.command === "dashboard"
      ? ` --host 0.0.0.0 --port ${inputs.dashboardPort}`
      : service.argsVariable === undefined
        ? ""
        : ` $${service.argsVariable}`;
  const metrics =
    service.command === "dashboard"
      ? ""
      : ` --metrics-port ${inputs.coordinatorMetricsPort + COORDINATOR_SERVICES.indexOf(service)}`;
  return `${header(
    `${service.description}, on the coordinator VM. Enabled by the template parameter ${service.enableParameter}${service.argsParameter === undefined ? "" : `;\n# its arguments are the parameter ${service.argsParameter} (${SERVICES_ENV_FILE})`}.`,
  )}[Unit]
Description=${service.description}
After=network-online.target remote-fs.target
Wants=network-online.target
RequiresMountsFor=${inputs.mountPoint}

[Service]
EnvironmentFile=${FLEET_ENV_FILE}
EnvironmentFile=${SERVICES_ENV_FILE}
ExecStart=${inputs.hsmfleetBin} --workers 0${metrics} --storage \${HSMFLEET_STORAGE} ${service.command}${args}
KillSignal=SIGTERM
TimeoutStopSec=90
Restart=always
RestartSec=10

[Install]
WantedBy=multi-user.target
`;
};

/** hsmfleet-nats.service: the NATS node of a NATS VM (Ubuntu's nats-server package). */
export const renderNatsUnit = (): string => `${header(
  "One node of the fleet's 3-node NATS JetStream cluster.",
)}[Unit]
Description=NATS JetStream node of the hsmfleet cluster
After=network-online.target
Wants=network-online.target

[Service]
EnvironmentFile=${NATS_ENV_FILE}
# /usr/bin/env: Debian installs nats-server under /usr/sbin, other builds under /usr/bin.
ExecStart=/usr/bin/env nats-server -c ${NATS_CONFIG_FILE}
ExecReload=/bin/kill -HUP $MAINPID
# SIGTERM lets the node leave the cluster cleanly; the other two keep quorum.
KillSignal=SIGTERM
TimeoutStopSec=60
Restart=always
RestartSec=5
LimitNOFILE=1048576

[Install]
WantedBy=multi-user.target
`;
