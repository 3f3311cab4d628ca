/**
 * `hsmfleet plan`: how many worker VMs a throughput target needs. The arithmetic is here (pure
 * functions, unit-tested); the figures come from data/azure-limits.json (VM NIC bandwidths and
 * storage-account limits, each with its source) and the shipped per-worker efficiency below. It
 * reads nothing from the working directory, so it answers the same wherever it runs.
 */
import { readFile } from "node:fs/promises";
import { UsageError } from "@hsmfleet/core";

export interface VmSize {
  name: string;
  vcpus: number;
  /** "Max network bandwidth (Mbps)" of the size's documentation (egress, all NICs). */
  nicMbps: number;
  source: string;
}

export interface StorageAccountLimits {
  source: string;
  ingressGbps: number;
  ingressGbpsOtherRegions: number;
  egressGbps: number;
  egressGbpsOtherRegions: number;
  requestsPerSecond: number;
  requestsPerSecondListedRegions: number;
}

export interface AzureLimits {
  storageAccount: StorageAccountLimits;
  vmSizes: VmSize[];
}

/**
 * Share of a VM's NIC bandwidth one worker VM moves when nothing else limits it: a planning figure
 * between one copytool per VM (lfsazsync measured about half the NIC) and the loopback benchmark's
 * upper bound (1.0, no network latency). Its derivation is in docs/plan.md ("Per-worker
 * efficiency"); `--efficiency` overrides it with a figure measured on the target VM size.
 */
export const DEFAULT_WORKER_EFFICIENCY = 0.7;

/** Where DEFAULT_WORKER_EFFICIENCY is explained (shown beside the figure in the plan). */
export const DEFAULT_WORKER_EFFICIENCY_SOURCE =
  "shipped default, see docs/plan.md#per-worker-efficiency";

/** Worker processes the plan assumes per VM: deploy/systemd/hsmfleet-worker.service runs one. */
export const WORKER_PROCESSES_PER_VM = 1;

/**
 * What one worker process moves per CPU core it keeps busy (Gbit/s per core: bytes moved ÷ CPU
 * seconds of the process and its threads, kernel time included), from UNSHAPED loopback runs
 * against the benchmark sink (no NIC limit, so the process's own cost is what is measured; CPU
 * seconds, unlike wall time, hold on a loaded machine). Derivation in docs/plan.md ("CPU per
 * worker process"). A VM whose vCPUs cannot carry its NIC share is CPU-bound: the plan says so
 * and counts its rate at vCPUs × this figure.
 */
export const MEASURED_PER_CORE_GBPS = {
  /** Downloads, MD5 of every byte checked (bench:restore full-large, hsmfleet CLI). */
  import: 1.8,
  /** Uploads, MD5 and CRC64 computed (bench:export sink-large, worker + coordinator). */
  export: 11,
  source: "unshaped loopback runs, see docs/plan.md#cpu-per-worker-process",
} as const;

/** The shipped table (packages/cli/data/azure-limits.json). */
export const loadAzureLimits = async (): Promise<AzureLimits> =>
  JSON.parse(
    await readFile(new URL("../../data/azure-limits.json", import.meta.url), "utf8"),
  ) as AzureLimits;

/** The VM size named `name` (any case) in the shipped table, or undefined. */
export const vmSizeNamed = (limits: AzureLimits, name: string): VmSize | undefined =>
  limits.vmSizes.find((v) => v.name.toLowerCase() === name.toLowerCase());

/**
 * The VM size named `name` (any case) in the shipped table; a usage error that says where the
 * known sizes are listed and how to plan with any other size.
 */
export const findVmSize = (limits: AzureLimits, name: string): VmSize => {
  const size = vmSizeNamed(limits, name);
  if (size) return size;
  throw new UsageError(
    `unknown VM size ${name}: hsmfleet plan --list-sizes shows the ${limits.vmSizes.length} sizes it knows; for another size give --nic-gbps (its "Max network bandwidth" in the Azure size tables, in Gbit/s)`,
  );
};

const PREFIX: Record<string, number> = { "": 0, k: 1, m: 2, g: 3, t: 4 };

/**
 * A rate → bytes per second: "7.5GiB/s", "2GB/s", "60Gbps", "800MiB/s", "100Gbit/s", "10Gb/s".
 * Bytes are a capital B ("KiB/s", "MiB/s", "GiB/s" binary; "kB/s", "MB/s", "GB/s" decimal); bits
 * are "bps", "bit/s" or a lower-case "b/s", always decimal, as NICs are quoted.
 */
export const parseRate = (text: string): number => {
  const m = /^\s*(\d+(?:\.\d+)?)\s*([kKmMgGtT]?)(i?)(B\/s|b\/s|bps|bit\/s)\s*$/.exec(text);
  if (!m)
    throw new UsageError(
      `not a rate: ${JSON.stringify(text)} (examples: 7.5GiB/s, 2GB/s, 60Gbps, 800MiB/s)`,
    );
  const [, num, prefix, binary, unit] = m;
  const bits = unit !== "B/s";
  if (bits && binary === "i")
    throw new UsageError(`not a rate: ${JSON.stringify(text)} (bit rates are decimal: Gbps)`);
  const power = PREFIX[prefix!.toLowerCase()]!;
  const scale = binary === "i" ? 1024 ** power : 1000 ** power;
  const value = (Number(num) * scale) / (bits ? 8 : 1);
  if (!(value > 0)) throw new UsageError(`the rate must be positive, got ${JSON.stringify(text)}`);
  return value;
};

export const gbps = (bytesPerSecond: number): number => (bytesPerSecond * 8) / 1e9;

export interface PlanInput {
  /** Bytes per second to reach. */
  targetBytesPerSecond: number;
  /** NIC egress of one VM, Gbit/s. */
  nicGbps: number;
  /** Share of the NIC one worker VM achieves (0 < e ≤ 1). */
  efficiency: number;
  /** export = uploads (storage ingress); import/restore = downloads (storage egress). */
  direction: "export" | "import";
  /** Bytes per request (the block size, or the mean file size if smaller). */
  bytesPerRequest: number;
  storage: StorageAccountLimits;
  /** Use the storage limits of the regions Azure lists (higher) rather than the others. */
  listedRegion: boolean;
  /** vCPUs of one VM, when known (--vm-size): a VM that cannot carry its NIC share is CPU-bound. */
  vcpus?: number | undefined;
  /** Gbit/s one worker process moves per busy core. Default MEASURED_PER_CORE_GBPS[direction]. */
  perCoreGbps?: number | undefined;
}

export type Binding = "vm-nic" | "storage-bandwidth" | "storage-requests";

export interface PlanResult {
  targetGbps: number;
  /** min(NIC × efficiency, vCPUs × per-core figure). */
  perVmGbps: number;
  /** Worker processes per VM assumed (WORKER_PROCESSES_PER_VM). */
  processesPerVm: number;
  perCoreGbps: number;
  /** CPU cores the worker process needs to move NIC × efficiency. */
  coresNeeded: number;
  /** The VM's vCPUs, not its NIC, bound its rate. */
  cpuBound: boolean;
  vms: number;
  storageGbps: number;
  storageRequestsPerSecond: number;
  requestsPerSecond: number;
  /** What limits the target: the VM count (it can always grow), or one storage account. */
  binding: Binding;
  /** Storage accounts the target needs (1 unless a storage limit binds). */
  accounts: number;
  /** Highest rate one account allows for this workload, Gbit/s. */
  accountCeilingGbps: number;
}

export const planFleet = (input: PlanInput): PlanResult => {
  if (!(input.efficiency > 0 && input.efficiency <= 1))
    throw new UsageError(`the efficiency must be in (0, 1], got ${input.efficiency}`);
  if (!(input.nicGbps > 0)) throw new UsageError(`the NIC bandwidth must be positive`);
  const targetGbps = gbps(input.targetBytesPerSecond);
  const perCoreGbps = input.perCoreGbps ?? MEASURED_PER_CORE_GBPS[input.direction];
  if (!(perCoreGbps > 0)) throw new UsageError(`the per-core figure must be positive`);
  const nicShareGbps = input.nicGbps * input.efficiency;
  const coresNeeded = nicShareGbps / perCoreGbps;
  const cpuBound = input.vcpus !== undefined && coresNeeded > input.vcpus;
  const perVmGbps = cpuBound ? input.vcpus! * perCoreGbps : nicShareGbps;
  const vms = Math.ceil(targetGbps / perVmGbps - 1e-9);
  const s = input.storage;
  const storageGbps =
    input.direction === "export"
      ? input.listedRegion
        ? s.ingressGbps
        : s.ingressGbpsOtherRegions
      : input.listedRegion
        ? s.egressGbps
        : s.egressGbpsOtherRegions;
  const storageRequestsPerSecond = input.listedRegion
    ? s.requestsPerSecondListedRegions
    : s.requestsPerSecond;
  const requestsPerSecond = input.targetBytesPerSecond / input.bytesPerRequest;
  const requestCeilingGbps = gbps(storageRequestsPerSecond * input.bytesPerRequest);
  const accountCeilingGbps = Math.min(storageGbps, requestCeilingGbps);
  const accounts = Math.max(1, Math.ceil(targetGbps / accountCeilingGbps - 1e-9));
  const binding: Binding =
    accounts === 1
      ? "vm-nic"
      : requestCeilingGbps < storageGbps
        ? "storage-requests"
        : "storage-bandwidth";
  return {
    targetGbps,
    perVmGbps,
    processesPerVm: WORKER_PROCESSES_PER_VM,
    perCoreGbps,
    coresNeeded,
    cpuBound,
    vms,
    storageGbps,
    storageRequestsPerSecond,
    requestsPerSecond,
    binding,
    accounts,
    accountCeilingGbps,
  };
};
