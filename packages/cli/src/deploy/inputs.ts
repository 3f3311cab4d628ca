/**
 * What `hsmfleet deploy azure` renders from: the fleet size (from the planner or given), the VM
 * sizes, names, ports and paths. Values a user must supply at deployment time (the storage
 * account, secrets, the AMLFS address, …) are not here: they are ARM template parameters.
 */
export interface AzureDeployInputs {
  /** Worker VMs in the scale set (the planner's answer, or --workers). */
  workers: number;
  /** Azure VM size of the workers. */
  workerVmSize: string;
  /** VM size of the coordinator. Default Standard_D8ds_v5. */
  coordinatorVmSize: string;
  /** VM size of each of the three NATS nodes. Default Standard_D4ds_v5. */
  natsVmSize: string;
  /** Prefix of every resource name. Default "hsmfleet". */
  namePrefix: string;
  /**
   * Host names (or addresses) of the three NATS nodes as the other machines reach them. Default
   * `<prefix>-nats-0..2` (Azure's internal DNS resolves VM names inside the virtual network).
   */
  natsHosts: [string, string, string];
  /** NATS client port. Default 4222. */
  natsPort: number;
  /** NATS route (cluster) port. Default 6222. */
  natsClusterPort: number;
  /** NATS HTTP monitoring port (healthz, varz). Default 8222. */
  natsMonitorPort: number;
  /**
   * Address the NATS servers listen on. Default 0.0.0.0 (the NSG keeps it inside the network);
   * "host": each node its own address from natsHosts (several nodes on one machine).
   */
  natsListenAddress: string;
  /** Where a NATS node keeps its JetStream files (in a directory named after the node). Default /var/lib/nats. */
  natsStoreDir: string;
  /** Directory of the NATS TLS files (ca.pem, server.pem, server-key.pem). Default /etc/nats/tls. */
  natsTlsDir: string;
  /** Prometheus metrics port of every worker (0 = off). Default 9464. */
  workerMetricsPort: number;
  /** Prometheus metrics port of the coordinator's services. Default 9465. */
  coordinatorMetricsPort: number;
  /** Port of `hsmfleet dashboard` on the coordinator. Default 8080. */
  dashboardPort: number;
  /** Where the AMLFS (Lustre) file system is mounted on every VM. Default /lustre. */
  mountPoint: string;
  /** The hsmfleet executable on the VMs (npm install -g under /usr/local). Default /usr/local/bin/hsmfleet. */
  hsmfleetBin: string;
  /** Worker work items in flight (`hsmfleet worker --concurrency`). Default 32. */
  workerConcurrency: number;
  /** How the size was chosen, written into the template's metadata. */
  sizing: string;
}

export const DEPLOY_DEFAULTS = {
  coordinatorVmSize: "Standard_D8ds_v5",
  natsVmSize: "Standard_D4ds_v5",
  namePrefix: "hsmfleet",
  natsPort: 4222,
  natsClusterPort: 6222,
  natsMonitorPort: 8222,
  natsListenAddress: "0.0.0.0",
  natsStoreDir: "/var/lib/nats",
  natsTlsDir: "/etc/nats/tls",
  workerMetricsPort: 9464,
  coordinatorMetricsPort: 9465,
  dashboardPort: 8080,
  mountPoint: "/lustre",
  hsmfleetBin: "/usr/local/bin/hsmfleet",
  workerConcurrency: 32,
} as const;

export const natsHostsFor = (prefix: string): [string, string, string] => [
  `${prefix}-nats-0`,
  `${prefix}-nats-1`,
  `${prefix}-nats-2`,
];

/** The NATS URL list every client gets: every node, so a client starts with one node down. */
export const natsClientUrls = (inputs: AzureDeployInputs): string =>
  inputs.natsHosts.map((h) => `tls://${h}:${inputs.natsPort}`).join(",");

/** Defaults filled in around the size. */
export const deployInputs = (
  given: Pick<AzureDeployInputs, "workers" | "workerVmSize" | "sizing"> &
    Partial<AzureDeployInputs>,
): AzureDeployInputs => {
  const prefix = given.namePrefix ?? DEPLOY_DEFAULTS.namePrefix;
  return {
    ...DEPLOY_DEFAULTS,
    natsHosts: natsHostsFor(prefix),
    ...Object.fromEntries(Object.entries(given).filter(([, v]) => v !== undefined)),
  } as AzureDeployInputs;
};
