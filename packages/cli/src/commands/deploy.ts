import { mkdir, writeFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import { Option } from "commander";
import { UsageError } from "@hsmfleet/core";
import { DEPLOY_DEFAULTS, deployInputs } from "../deploy/inputs.js";
import { renderAzureDeployment } from "../deploy/render-azure.js";
import { sizeFleet } from "../deploy/sizing.js";
import { sizeOption } from "../size.js";
import { intArg } from "./context.js";
import type { CliContext } from "./context.js";

interface DeployAzureOptions {
  output: string;
  target?: string;
  vmSize?: string;
  nicGbps?: string;
  efficiency?: string;
  direction: "export" | "import";
  requestSize: number;
  otherRegion?: boolean;
  workerVms?: number;
  namePrefix: string;
  coordinatorVmSize: string;
  natsVmSize: string;
  natsHosts?: string;
  natsPort: number;
  natsClusterPort: number;
  natsMonitorPort: number;
  natsListen: string;
  natsStoreDir: string;
  natsTlsDir: string;
  mountPoint: string;
  hsmfleetBin: string;
}

/** The command line that renders these files (less --output), for the README of the output. */
const commandLine = (o: DeployAzureOptions, workers: number | undefined): string =>
  [
    "hsmfleet deploy azure",
    ...(o.target === undefined ? [`--workers ${workers}`] : [`--target ${o.target}`]),
    ...(o.vmSize === undefined ? [] : [`--vm-size ${o.vmSize}`]),
    ...(o.nicGbps === undefined ? [] : [`--nic-gbps ${o.nicGbps}`]),
    ...(o.efficiency === undefined ? [] : [`--efficiency ${o.efficiency}`]),
    ...(o.namePrefix === DEPLOY_DEFAULTS.namePrefix ? [] : [`--name-prefix ${o.namePrefix}`]),
  ].join(" ");

/** `hsmfleet deploy azure`: render a fleet deployment for Azure (connects to nothing). */
export const registerDeployCommand = (ctx: CliContext): void => {
  const deploy = ctx.program
    .command("deploy")
    .description(
      "render the files that deploy a fleet (ARM template, cloud-init, units, NATS, Prometheus)",
    );
  deploy
    .command("azure")
    .description(
      "render an Azure deployment sized like `hsmfleet plan`: ARM template and parameters, cloud-init, systemd units, NATS cluster configs (docs/deploy.md)",
    )
    .requiredOption("--output <dir>", "directory to write the files into (created if missing)")
    .option(
      "--target <rate>",
      "throughput to reach, e.g. 7.5GiB/s: the planner sizes the scale set",
    )
    .option("--vm-size <name>", "Azure VM size of the workers (required)")
    .option(
      "--nic-gbps <n>",
      "NIC egress of one worker VM in Gbit/s (for a size the planner does not list)",
    )
    .option("--efficiency <e>", "share of the NIC one worker VM achieves (default: the planner's)")
    .addOption(
      new Option("--direction <dir>", "export = uploads, import = downloads (as hsmfleet plan)")
        .choices(["export", "import"])
        .default("export"),
    )
    .addOption(
      sizeOption(
        "--request-size <size>",
        "bytes per storage request (as hsmfleet plan)",
        8 * 1024 * 1024,
      ),
    )
    .option("--other-region", "use the lower storage limits of regions Azure does not list")
    .option(
      "--worker-vms <n>",
      "worker VMs instead of --target (the global --workers N before or after `deploy azure` does the same)",
      intArg("--worker-vms", 1),
    )
    .option("--name-prefix <prefix>", "prefix of every resource name", DEPLOY_DEFAULTS.namePrefix)
    .option(
      "--coordinator-vm-size <name>",
      "VM size of the coordinator",
      DEPLOY_DEFAULTS.coordinatorVmSize,
    )
    .option("--nats-vm-size <name>", "VM size of each NATS node", DEPLOY_DEFAULTS.natsVmSize)
    .option(
      "--nats-hosts <a,b,c>",
      "host names or addresses of the 3 NATS nodes (default <prefix>-nats-0..2)",
    )
    .option(
      "--nats-port <n>",
      "NATS client port",
      intArg("--nats-port", 1),
      DEPLOY_DEFAULTS.natsPort,
    )
    .option(
      "--nats-cluster-port <n>",
      "NATS route port",
      intArg("--nats-cluster-port", 1),
      DEPLOY_DEFAULTS.natsClusterPort,
    )
    .option(
      "--nats-monitor-port <n>",
      "NATS monitoring port",
      intArg("--nats-monitor-port", 1),
      DEPLOY_DEFAULTS.natsMonitorPort,
    )
    .option(
      "--nats-listen <address>",
      "address the NATS nodes listen on; host = each node its own address from --nats-hosts",
      DEPLOY_DEFAULTS.natsListenAddress,
    )
    .option(
      "--nats-store-dir <dir>",
      "JetStream directory of a NATS node",
      DEPLOY_DEFAULTS.natsStoreDir,
    )
    .option(
      "--nats-tls-dir <dir>",
      "directory of a NATS node's TLS files",
      DEPLOY_DEFAULTS.natsTlsDir,
    )
    .option("--mount-point <dir>", "where AMLFS is mounted on every VM", DEPLOY_DEFAULTS.mountPoint)
    .option(
      "--hsmfleet-bin <path>",
      "the hsmfleet executable on the VMs",
      DEPLOY_DEFAULTS.hsmfleetBin,
    )
    .action(async (opts: DeployAzureOptions) => {
      const workers = opts.workerVms ?? ctx.globals().workers;
      const sized = await sizeFleet({ ...opts, workers });
      let natsHosts: [string, string, string] | undefined;
      if (opts.natsHosts !== undefined) {
        const hosts = opts.natsHosts.split(",").map((h) => h.trim());
        if (hosts.length !== 3 || hosts.some((h) => h === ""))
          throw new UsageError(
            `--nats-hosts needs three comma-separated hosts, got ${JSON.stringify(opts.natsHosts)}`,
          );
        natsHosts = hosts as [string, string, string];
      }
      const inputs = deployInputs({
        workers: sized.workers,
        workerVmSize: sized.vmSize,
        sizing: sized.sizing,
        namePrefix: opts.namePrefix,
        coordinatorVmSize: opts.coordinatorVmSize,
        natsVmSize: opts.natsVmSize,
        natsHosts,
        natsPort: opts.natsPort,
        natsClusterPort: opts.natsClusterPort,
        natsMonitorPort: opts.natsMonitorPort,
        natsListenAddress: opts.natsListen,
        natsStoreDir: opts.natsStoreDir,
        natsTlsDir: opts.natsTlsDir,
        mountPoint: opts.mountPoint,
        hsmfleetBin: opts.hsmfleetBin,
      });
      const files = renderAzureDeployment(inputs, commandLine(opts, workers));
      for (const [path, content] of files) {
        const target = join(opts.output, path);
        try {
          await mkdir(dirname(target), { recursive: true });
          await writeFile(target, content, { mode: path.endsWith(".sh") ? 0o755 : 0o644 });
        } catch (err) {
          throw new UsageError(`could not write ${target}: ${(err as Error).message}`);
        }
      }
      process.stdout.write(
        `${files.size} files in ${opts.output}: ${sized.workers} × ${sized.vmSize} workers (${sized.sizing}), 3 NATS nodes, 1 coordinator\n`,
      );
      for (const note of sized.notes) process.stderr.write(`hsmfleet: note: ${note}\n`);
    });
};
