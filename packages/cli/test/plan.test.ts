import test from "ava";
import { UsageError } from "@hsmfleet/core";
import { findVmSize, gbps, loadAzureLimits, parseRate, planFleet } from "../src/plan.js";
import type { PlanInput } from "../src/plan.js";

const GiB = 1024 ** 3;

test("rates: binary and decimal bytes, bits are decimal", (t) => {
  t.is(parseRate("7.5GiB/s"), 7.5 * GiB);
  t.is(parseRate("2GB/s"), 2e9);
  t.is(parseRate("800MiB/s"), 800 * 1024 * 1024);
  t.is(parseRate("60Gbps"), 60e9 / 8);
  t.is(parseRate("100Gbit/s"), 100e9 / 8);
  t.is(parseRate("10Gb/s"), 10e9 / 8);
  t.throws(() => parseRate("fast"), { instanceOf: UsageError, message: /not a rate.*7\.5GiB\/s/ });
  t.throws(() => parseRate("10Gibps"), { instanceOf: UsageError });
  t.throws(() => parseRate("0GB/s"), { instanceOf: UsageError, message: /positive/ });
});

test("the shipped table has the sizes the docs name, each with a source", async (t) => {
  const limits = await loadAzureLimits();
  const d32 = limits.vmSizes.find((v) => v.name === "Standard_D32ds_v5");
  t.is(d32?.nicMbps, 16000);
  t.true(limits.vmSizes.every((v) => v.source.startsWith("https://learn.microsoft.com/")));
  t.is(limits.storageAccount.ingressGbps, 60);
  t.is(limits.storageAccount.requestsPerSecond, 20000);
});

test("the common general-purpose and memory sizes without a local disk are known (Dv5, Dsv5, Ev5, Esv5), any case; an unknown one points at --list-sizes", async (t) => {
  const limits = await loadAzureLimits();
  const cases: Array<[string, number, number]> = [
    ["Standard_D16s_v5", 16, 12500],
    ["standard_d32s_v5", 32, 16000],
    ["Standard_D96_v5", 96, 35000],
    ["Standard_E16s_v5", 16, 12500],
    ["Standard_E96_v5", 96, 30000],
    ["Standard_E96s_v5", 96, 35000],
    ["Standard_E104is_v5", 104, 100000],
  ];
  for (const [name, vcpus, nicMbps] of cases)
    t.like(findVmSize(limits, name), { vcpus, nicMbps }, name);
  t.is(new Set(limits.vmSizes.map((v) => v.name.toLowerCase())).size, limits.vmSizes.length);
  t.throws(() => findVmSize(limits, "Standard_X1"), {
    instanceOf: UsageError,
    message: /unknown VM size Standard_X1.*hsmfleet plan --list-sizes.*--nic-gbps/,
  });
});

const input = async (fields: Partial<PlanInput>): Promise<PlanInput> => ({
  targetBytesPerSecond: 7.5 * GiB,
  nicGbps: 16,
  efficiency: 0.8,
  direction: "export",
  bytesPerRequest: 8 * 1024 * 1024,
  storage: (await loadAzureLimits()).storageAccount,
  listedRegion: true,
  ...fields,
});

test("7.5 GiB/s on D32ds_v5 (16 Gbit/s) at 80 %: 64.4 Gbit/s needs 6 VMs and binds on storage ingress (60 Gbit/s)", async (t) => {
  const plan = planFleet(await input({}));
  t.is(Math.round(plan.targetGbps * 10) / 10, 64.4);
  t.is(plan.perVmGbps, 12.8);
  t.is(plan.vms, 6);
  t.is(plan.storageGbps, 60);
  t.is(plan.binding, "storage-bandwidth");
  t.is(plan.accounts, 2);
});

test("a target under the account's limits is bound by the NICs: VMs = ceil(target / per-VM)", async (t) => {
  const plan = planFleet(await input({ targetBytesPerSecond: 4e9, nicGbps: 12.5, efficiency: 1 }));
  t.is(plan.targetGbps, 32);
  t.is(plan.vms, 3);
  t.is(plan.binding, "vm-nic");
  t.is(plan.accounts, 1);
  // Exactly one VM's worth needs one VM, not two.
  t.is(
    planFleet(await input({ targetBytesPerSecond: gbpsToBytes(10), nicGbps: 10, efficiency: 1 }))
      .vms,
    1,
  );
});

const gbpsToBytes = (g: number) => (g * 1e9) / 8;

test("small requests make the request rate bind; downloads use the egress limit", async (t) => {
  const small = planFleet(
    await input({ targetBytesPerSecond: 2e9, bytesPerRequest: 64 * 1024, listedRegion: false }),
  );
  t.is(small.binding, "storage-requests");
  t.is(Math.round(small.requestsPerSecond), Math.round(2e9 / 65536));
  const down = planFleet(await input({ direction: "import", listedRegion: false }));
  t.is(down.storageGbps, 50);
  t.true(gbps(7.5 * GiB) > 50);
  t.is(down.binding, "storage-bandwidth");
});

let plan0: PlanInput;
test.before(async () => {
  plan0 = await input({ efficiency: 0 });
});

test("an efficiency outside (0, 1] is a usage error", (t) => {
  t.throws(() => planFleet(plan0), { instanceOf: UsageError, message: /efficiency/ });
  t.throws(() => planFleet({ ...plan0, efficiency: 1.5 }), { instanceOf: UsageError });
});

test("the plan assumes one worker process per VM and the cores it needs at the measured per-core figure; too few vCPUs make a VM CPU-bound", async (t) => {
  // D32ds_v5-like: 16 Gbit/s × 0.7 = 11.2 Gbit/s at 1.8 Gbit/s per core ≈ 6.2 cores of 32.
  const roomy = planFleet(
    await input({ direction: "import", nicGbps: 16, efficiency: 0.7, vcpus: 32, perCoreGbps: 1.8 }),
  );
  t.is(roomy.processesPerVm, 1);
  t.is(Math.round(roomy.coresNeeded * 10) / 10, 6.2);
  t.false(roomy.cpuBound);
  t.is(Math.round(roomy.perVmGbps * 10) / 10, 11.2);
  // D2ds_v5-like: 12.5 Gbit/s × 0.7 needs ~4.9 cores, it has 2: 2 × 1.8 = 3.6 Gbit/s per VM.
  const small = planFleet(
    await input({
      direction: "import",
      targetBytesPerSecond: gbpsToBytes(36),
      nicGbps: 12.5,
      efficiency: 0.7,
      vcpus: 2,
      perCoreGbps: 1.8,
    }),
  );
  t.true(small.cpuBound);
  t.is(Math.round(small.perVmGbps * 10) / 10, 3.6);
  t.is(small.vms, 10);
  // Without a vCPU count (--nic-gbps) the NIC share stands.
  t.false(planFleet(await input({ direction: "import", nicGbps: 12.5, efficiency: 0.7 })).cpuBound);
  // The shipped per-core figure by direction.
  t.is(planFleet(await input({ direction: "import" })).perCoreGbps, 1.8);
});
