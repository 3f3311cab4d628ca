/**
 * How many worker VMs a deployment gets: the planner's answer for --target and --vm-size (or
 * --nic-gbps), exactly as `hsmfleet plan` computes it, or a count given with --workers.
 */
import { UsageError } from "@hsmfleet/core";
import {
  DEFAULT_WORKER_EFFICIENCY,
  findVmSize,
  loadAzureLimits,
  parseRate,
  planFleet,
  vmSizeNamed,
} from "../plan.js";
import type { PlanResult } from "../plan.js";

export interface SizingOptions {
  target?: string | undefined;
  vmSize?: string | undefined;
  nicGbps?: string | undefined;
  efficiency?: string | undefined;
  direction: "export" | "import";
  requestSize: number;
  otherRegion?: boolean | undefined;
  /** A fixed worker count (instead of --target). */
  workers?: number | undefined;
}

export interface Sizing {
  workers: number;
  vmSize: string;
  /** One line: how the count was chosen. */
  sizing: string;
  plan: PlanResult | undefined;
  /** What the user should know (e.g. the target needs several storage accounts). */
  notes: string[];
}

export const sizeFleet = async (opts: SizingOptions): Promise<Sizing> => {
  if (opts.vmSize === undefined)
    throw new UsageError(
      "give --vm-size (the workers' Azure VM size, see hsmfleet plan --list-sizes)",
    );
  const limits = await loadAzureLimits();
  // An unknown size is fine with --workers or --nic-gbps (deploy takes any size Azure has).
  const size = vmSizeNamed(limits, opts.vmSize);
  const vmSize = size?.name ?? opts.vmSize;
  if (opts.workers !== undefined) {
    if (opts.target !== undefined)
      throw new UsageError("give --target (the planner sizes the fleet) or --workers, not both");
    return {
      workers: opts.workers,
      vmSize,
      sizing: `--workers ${opts.workers}`,
      plan: undefined,
      notes: [],
    };
  }
  if (opts.target === undefined)
    throw new UsageError("give --target RATE (the planner sizes the fleet) or --workers N");
  let nicGbps: number;
  if (opts.nicGbps !== undefined) {
    nicGbps = Number(opts.nicGbps);
    if (!(nicGbps > 0))
      throw new UsageError(`--nic-gbps must be a positive number, got ${opts.nicGbps}`);
  } else if (size !== undefined) {
    nicGbps = size.nicMbps / 1000;
  } else {
    nicGbps = findVmSize(limits, opts.vmSize).nicMbps / 1000;
  }
  const efficiency =
    opts.efficiency === undefined ? DEFAULT_WORKER_EFFICIENCY : Number(opts.efficiency);
  const plan = planFleet({
    targetBytesPerSecond: parseRate(opts.target),
    nicGbps,
    efficiency,
    direction: opts.direction,
    bytesPerRequest: opts.requestSize,
    storage: limits.storageAccount,
    listedRegion: !opts.otherRegion,
  });
  const notes =
    plan.accounts > 1
      ? [
          `the target is above what one storage account allows by default (${plan.accountCeilingGbps.toFixed(1)} Gbit/s for this workload): ask Azure for a higher limit or split the data over ${plan.accounts} accounts (docs/plan.md)`,
        ]
      : [];
  return {
    workers: plan.vms,
    vmSize,
    sizing: `hsmfleet plan --target ${opts.target} --vm-size ${vmSize}: ${plan.vms} workers at ${Math.round(efficiency * 100)} % of ${nicGbps} Gbit/s each`,
    plan,
    notes,
  };
};
