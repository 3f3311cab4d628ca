import { Option } from "commander";
import { formatNumber, UsageError } from "@hsmfleet/core";
import { sizeOption } from "../size.js";
import {
  DEFAULT_WORKER_EFFICIENCY,
  DEFAULT_WORKER_EFFICIENCY_SOURCE,
  MEASURED_PER_CORE_GBPS,
  findVmSize,
  loadAzureLimits,
  parseRate,
  planFleet,
} from "../plan.js";
import type { PlanResult } from "../plan.js";
import type { CliContext } from "./context.js";

const fmt = (n: number, digits = 1): string => formatNumber(n, digits);

const BINDING_TEXT: Record<PlanResult["binding"], string> = {
  "vm-nic": "the VMs' NICs (add VMs to go faster; one storage account suffices)",
  "storage-bandwidth": "the storage account's bandwidth: spread the data over several accounts",
  "storage-requests": "the storage account's request rate: larger blocks or several accounts",
};

/** `hsmfleet plan`: worker VMs a throughput target needs (no connection to anything). */
export const registerPlanCommand = (ctx: CliContext): void => {
  ctx.program
    .command("plan")
    .description(
      "how many worker VMs a throughput target needs, from the VM size's NIC bandwidth, the per-worker efficiency and the storage-account limits",
    )
    .option("--target <rate>", "throughput to reach, e.g. 7.5GiB/s, 2GB/s, 60Gbps (required)")
    .option("--vm-size <name>", "Azure VM size of the workers (see --list-sizes)")
    .option("--nic-gbps <n>", "NIC egress of one worker VM in Gbit/s (instead of --vm-size)")
    .option("--list-sizes", "list the VM sizes --vm-size knows, with their NIC bandwidth, and exit")
    .addOption(
      new Option("--direction <dir>", "export = uploads (storage ingress), import = downloads")
        .choices(["export", "import"])
        .default("export"),
    )
    .option(
      "--efficiency <e>",
      `share of the NIC one worker VM achieves, in (0, 1] (default ${DEFAULT_WORKER_EFFICIENCY}, see docs/plan.md)`,
    )
    .addOption(
      sizeOption(
        "--request-size <size>",
        "bytes per storage request: the block size, or the mean file size when smaller",
        8 * 1024 * 1024,
      ),
    )
    .option("--other-region", "use the lower storage limits of regions Azure does not list")
    .option("--json", "print the plan as one JSON object")
    .action(
      async (opts: {
        target?: string;
        vmSize?: string;
        nicGbps?: string;
        listSizes?: boolean;
        direction: "export" | "import";
        efficiency?: string;
        requestSize: number;
        otherRegion?: boolean;
        json?: boolean;
      }) => {
        const limits = await loadAzureLimits();
        if (opts.listSizes) {
          process.stdout.write(
            opts.json
              ? `${JSON.stringify(limits.vmSizes)}\n`
              : `${["SIZE".padEnd(20), "VCPUS".padStart(5), " NIC"].join(" ")}\n${limits.vmSizes
                  .map(
                    (v) =>
                      `${v.name.padEnd(20)} ${String(v.vcpus).padStart(5)}  ${fmt(v.nicMbps / 1000, 3)} Gbit/s\n`,
                  )
                  .join("")}`,
          );
          return;
        }
        if (opts.target === undefined)
          throw new UsageError("give --target (e.g. --target 7.5GiB/s), or --list-sizes");
        const target = opts.target;
        let nicGbps: number;
        let nicSource: string;
        let vcpus: number | undefined;
        if (opts.nicGbps !== undefined) {
          nicGbps = Number(opts.nicGbps);
          if (!(nicGbps > 0))
            throw new UsageError(`--nic-gbps must be a positive number, got ${opts.nicGbps}`);
          nicSource = "--nic-gbps";
        } else if (opts.vmSize !== undefined) {
          const size = findVmSize(limits, opts.vmSize);
          nicGbps = size.nicMbps / 1000;
          vcpus = size.vcpus;
          nicSource = `${size.name}: ${size.nicMbps} Mbps (${size.source})`;
        } else {
          throw new UsageError("give --vm-size or --nic-gbps");
        }
        const efficiency =
          opts.efficiency === undefined ? DEFAULT_WORKER_EFFICIENCY : Number(opts.efficiency);
        const efficiencySource =
          opts.efficiency === undefined ? DEFAULT_WORKER_EFFICIENCY_SOURCE : "--efficiency";
        const plan = planFleet({
          targetBytesPerSecond: parseRate(target),
          nicGbps,
          efficiency,
          direction: opts.direction,
          bytesPerRequest: opts.requestSize,
          storage: limits.storageAccount,
          listedRegion: !opts.otherRegion,
          vcpus,
        });
        if (opts.json) {
          process.stdout.write(
            `${JSON.stringify({ ...plan, nicGbps, nicSource, efficiency, efficiencySource, storageSource: limits.storageAccount.source })}\n`,
          );
          return;
        }
        const lines = [
          `target                 ${fmt(plan.targetGbps, 2)} Gbit/s (${target})`,
          `NIC per VM             ${fmt(nicGbps, 2)} Gbit/s — ${nicSource}`,
          `per-worker efficiency  ${fmt(efficiency * 100)} % — ${efficiencySource}`,
          `worker processes       ${plan.processesPerVm} per VM (deploy/systemd/hsmfleet-worker.service); it needs ~${fmt(plan.coresNeeded)} cores for its NIC share at ${fmt(plan.perCoreGbps, 2)} Gbit/s per core (${MEASURED_PER_CORE_GBPS.source})${vcpus !== undefined ? ` of ${vcpus} vCPUs` : ""}`,
          `per VM                 ${fmt(plan.perVmGbps, 2)} Gbit/s${plan.cpuBound ? ` — CPU-bound: ${vcpus} vCPUs × ${fmt(plan.perCoreGbps, 2)} Gbit/s, below the NIC share` : ""}`,
          `worker VMs             ${plan.vms}`,
          `storage account        ${opts.direction === "export" ? "ingress" : "egress"} ${fmt(plan.storageGbps)} Gbit/s, ${fmt(plan.storageRequestsPerSecond, 0)} requests/s (${limits.storageAccount.source})`,
          `requests               ${fmt(plan.requestsPerSecond, 0)}/s at ${fmt(opts.requestSize / 1048576, 2)} MiB each`,
          `one account allows     ${fmt(plan.accountCeilingGbps, 2)} Gbit/s for this workload`,
          `limit that binds       ${BINDING_TEXT[plan.binding]}`,
        ];
        if (plan.accounts > 1) lines.push(`storage accounts       ${plan.accounts}`);
        process.stdout.write(`${lines.join("\n")}\n`);
      },
    );
};
