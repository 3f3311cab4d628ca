import { readdir, readFile } from "node:fs/promises";
import { join, relative } from "node:path";
import { fileURLToPath } from "node:url";
import test from "ava";
import {
  COORDINATOR_PERMISSIONS,
  ROLES,
  WORKER_PERMISSIONS,
  deployInputs,
  renderAzureDeployment,
} from "@hsmfleet/cli";
import { tempDir } from "@hsmfleet/testkit";
import { armValidators, showErrors } from "./deploy-arm-schema.js";
import { loadYaml, present, skipNote } from "./deploy-tools.js";
import { runCli } from "./helpers.js";

if (!present("python3")) console.warn(skipNote("python3"));

const REPO = new URL("../../../", import.meta.url);
const EXAMPLE = fileURLToPath(new URL("deploy/azure/example/", REPO));
const EXAMPLE_ARGS = ["--target", "7.5GiB/s", "--vm-size", "Standard_D32ds_v5"];

type Resource = Record<string, unknown> & {
  type: string;
  apiVersion: string;
  name: string;
  properties: Record<string, unknown>;
};
interface Template {
  parameters: Record<string, { type: string; defaultValue?: unknown }>;
  variables: Record<string, unknown>;
  resources: Resource[];
  outputs: Record<string, { value: unknown }>;
}

const listFiles = async (dir: string): Promise<string[]> => {
  const out: string[] = [];
  for (const e of await readdir(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) out.push(...(await listFiles(p)));
    else out.push(p);
  }
  return out.sort();
};

const render = async (args: string[]): Promise<{ dir: string; cleanup: () => Promise<void> }> => {
  const dir = await tempDir();
  const run = await runCli(["deploy", "azure", ...args, "--output", dir.path]);
  if (run.code !== 0) throw new Error(`deploy azure failed: ${run.stderr}`);
  return { dir: dir.path, cleanup: () => dir.cleanup() };
};

const readTemplate = async (dir: string): Promise<Template> =>
  JSON.parse(await readFile(join(dir, "azuredeploy.json"), "utf8")) as Template;

test("the checked-in example (deploy/azure/example) is what `hsmfleet deploy azure` renders today (npm run deploy:examples)", async (t) => {
  const fresh = await render(EXAMPLE_ARGS);
  t.teardown(fresh.cleanup);
  const want = await listFiles(fresh.dir);
  const have = await listFiles(EXAMPLE);
  t.deepEqual(
    have.map((p) => relative(EXAMPLE, p)),
    want.map((p) => relative(fresh.dir, p)),
    "the example's file list drifted: run npm run deploy:examples",
  );
  for (const p of want) {
    const name = relative(fresh.dir, p);
    t.is(
      await readFile(join(EXAMPLE, name), "utf8"),
      await readFile(p, "utf8"),
      `deploy/azure/example/${name} drifted: run npm run deploy:examples`,
    );
  }
});

test("the ARM template and its parameters file pass the vendored ARM schemas: the deployment template and every resource type at its API version", async (t) => {
  const v = armValidators();
  const template = await readTemplate(EXAMPLE);
  t.true(v.template(template), showErrors(v.template.errors));
  const params = JSON.parse(
    await readFile(join(EXAMPLE, "azuredeploy.parameters.json"), "utf8"),
  ) as unknown;
  t.true(v.parameters(params), showErrors(v.parameters.errors));
  for (const r of template.resources) {
    const validate = v.resource(r.type, r.apiVersion);
    if (validate === undefined) {
      t.fail(`no vendored schema for ${r.type}@${r.apiVersion}: vendor it (deploy/azure/schemas)`);
      continue;
    }
    t.true(validate(r), `${r.type} ${r.name}: ${showErrors(validate.errors)}`);
  }
  // The schemas catch a mistake: a scale set with a misspelled property block fails.
  const broken = structuredClone(template);
  const vmss = broken.resources.find(
    (r) => r.type === "Microsoft.Compute/virtualMachineScaleSets",
  )!;
  vmss.properties["upgradePolicy"] = { mode: "Sometimes" };
  t.false(v.template(broken), "a template with an invalid upgrade policy mode passed the schema");
});

test("the scale set has the planner's instance count: hsmfleet plan and deploy azure agree, for --target and for --workers", async (t) => {
  const plan = await runCli(["plan", ...EXAMPLE_ARGS, "--json"]);
  t.is(plan.code, 0, plan.stderr);
  const vms = (JSON.parse(plan.stdout) as { vms: number }).vms;
  const template = await readTemplate(EXAMPLE);
  t.is(template.parameters["workerCount"]!.defaultValue, vms);
  const params = JSON.parse(
    await readFile(join(EXAMPLE, "azuredeploy.parameters.json"), "utf8"),
  ) as { parameters: { workerCount: { value: number } } };
  t.is(params.parameters.workerCount.value, vms);
  const vmss = template.resources.find(
    (r) => r.type === "Microsoft.Compute/virtualMachineScaleSets",
  )!;
  t.is((vmss["sku"] as { capacity: string }).capacity, "[parameters('workerCount')]");
  t.is((vmss["sku"] as { name: string }).name, "[parameters('workerVmSize')]");
  t.is(template.parameters["workerVmSize"]!.defaultValue, "Standard_D32ds_v5");
  // A fixed count, with the global --workers after the command (as in the issue) or --worker-vms.
  for (const args of [
    ["--workers", "9", "--vm-size", "Standard_D16ds_v5"],
    ["--worker-vms", "9", "--vm-size", "Standard_D16ds_v5"],
  ]) {
    const fixed = await render(args);
    t.teardown(fixed.cleanup);
    t.is(
      (await readTemplate(fixed.dir)).parameters["workerCount"]!.defaultValue,
      9,
      args.join(" "),
    );
  }
  // Accelerated networking on every NIC.
  const nics = template.resources.filter((r) => r.type === "Microsoft.Network/networkInterfaces");
  t.is(nics.length, 2);
  for (const n of nics) t.true(n.properties["enableAcceleratedNetworking"]);
  const vmssNic = JSON.stringify(vmss.properties);
  t.regex(vmssNic, /"enableAcceleratedNetworking":true/);
});

test("the fleet's user-assigned identity is on every VM and gets Storage Blob Data Contributor on the account, Reader for discovery, and Service Bus roles only when a namespace is given", (t) => {
  const inputs = deployInputs({ workers: 3, workerVmSize: "Standard_D16ds_v5", sizing: "test" });
  const files = renderAzureDeployment(inputs, "test");
  const template = JSON.parse(files.get("azuredeploy.json")!) as Template;
  const identity = template.resources.find(
    (r) => r.type === "Microsoft.ManagedIdentity/userAssignedIdentities",
  )!;
  t.is(identity.name, "hsmfleet-identity");
  const identityId = `[resourceId('Microsoft.ManagedIdentity/userAssignedIdentities', 'hsmfleet-identity')]`;
  const machines = template.resources.filter((r) => r.type.startsWith("Microsoft.Compute/"));
  t.is(machines.length, 3); // coordinator, NATS (copy of 3), scale set
  for (const m of machines)
    t.deepEqual(m["identity"], {
      type: "UserAssigned",
      userAssignedIdentities: { [identityId]: {} },
    });
  const roles = template.resources.filter(
    (r) => r.type === "Microsoft.Authorization/roleAssignments",
  );
  const byRole = (id: string) =>
    roles.filter((r) => String(r.properties["roleDefinitionId"]).includes(id));
  const storage = byRole(ROLES.storageBlobDataContributor);
  t.is(storage.length, 1);
  t.is(
    storage[0]!["scope"],
    "[format('Microsoft.Storage/storageAccounts/{0}', parameters('storageAccountName'))]",
  );
  t.is(storage[0]!["condition"], undefined);
  for (const r of roles) {
    t.regex(
      String(r.properties["principalId"]),
      /hsmfleet-identity'\), '2023-01-31'\)\.principalId/,
    );
    t.is(r.properties["principalType"], "ServicePrincipal");
  }
  t.is(byRole(ROLES.reader).length, 1);
  for (const id of [ROLES.serviceBusDataReceiver, ROLES.serviceBusDataSender]) {
    const [bus] = byRole(id);
    t.is(bus!["condition"], "[not(empty(parameters('serviceBusNamespaceName')))]");
    t.regex(String(bus!["scope"]), /Microsoft\.ServiceBus\/namespaces/);
  }
  // Workers use the identity: the storage URL and its client id are in their settings.
  const vmss = machines.find((m) => m.type === "Microsoft.Compute/virtualMachineScaleSets")!;
  const customData = JSON.stringify(vmss.properties);
  t.regex(customData, /AZURE_CLIENT_ID=\{3\}/);
  t.regex(customData, /HSMFLEET_STORAGE=https:\/\/\{1\}\.blob\.\{2\}/);
});

test("no secret in plain text: secrets are secureString parameters with no default, absent from the parameters file, outputs and every rendered file", async (t) => {
  const template = await readTemplate(EXAMPLE);
  const secrets = [
    "natsCoordinatorPassword",
    "natsWorkerPassword",
    "natsTlsServerKey",
    "hsmfleetPackageUrl",
  ];
  for (const name of secrets) {
    const p = template.parameters[name];
    t.is(p?.type, "securestring", name);
    t.is(p?.defaultValue, undefined, name);
  }
  // Every parameter that looks like a secret is one of them.
  for (const [name, p] of Object.entries(template.parameters))
    if (/password|secret|token|privatekey|serverkey/i.test(name))
      t.is(p.type, "securestring", name);
  const params = await readFile(join(EXAMPLE, "azuredeploy.parameters.json"), "utf8");
  for (const name of secrets) t.notRegex(params, new RegExp(name));
  t.notRegex(JSON.stringify(template.outputs), /parameters\(/);
  // The rendered files hold no password, key or placeholder: NATS reads its passwords from its
  // environment, the units from 0600 files the template writes.
  for (const file of await listFiles(EXAMPLE)) {
    const text = await readFile(file, "utf8");
    t.notRegex(text, /change-me|CHANGE_?ME|<[a-z-]+>|REPLACE|BEGIN [A-Z ]*PRIVATE KEY/, file);
  }
  for (const i of [0, 1, 2]) {
    const conf = await readFile(join(EXAMPLE, `nats/nats-${i}.conf`), "utf8");
    const passwords = [...conf.matchAll(/password: ([^,}\s]+)/g)].map((m) => m[1]);
    t.deepEqual(passwords, [
      "$HSMFLEET_NATS_COORDINATOR_PASSWORD",
      "$HSMFLEET_NATS_WORKER_PASSWORD",
    ]);
  }
});

test("NATS, metrics and dashboard ports are closed to the Internet: explicit deny rules first, allows only from the virtual network, no public address on any VM", async (t) => {
  const template = await readTemplate(EXAMPLE);
  const nsg = template.resources.find((r) => r.type === "Microsoft.Network/networkSecurityGroups")!;
  type Rule = {
    name: string;
    properties: {
      priority: number;
      access: string;
      direction: string;
      sourceAddressPrefix: string;
      destinationPortRanges: string[];
    };
  };
  const rules = (nsg.properties["securityRules"] as Rule[]).map((r) => r.properties);
  const covers = (r: Rule["properties"], port: number) =>
    r.destinationPortRanges.some((range) => {
      const [lo, hi] = range.split("-").map(Number);
      return range === "*" || (port >= lo! && port <= (hi ?? lo)!);
    });
  for (const port of [4222, 6222, 8222, 9464, 9465, 8080, 9090]) {
    const inbound = rules
      .filter((r) => r.direction === "Inbound" && covers(r, port))
      .sort((a, b) => a.priority - b.priority);
    t.true(inbound.length > 0, `no rule for ${port}`);
    t.is(inbound[0]!.access, "Deny", `port ${port}: the first matching rule must deny`);
    t.is(inbound[0]!.sourceAddressPrefix, "Internet");
    for (const allow of inbound.filter((r) => r.access === "Allow"))
      t.is(allow.sourceAddressPrefix, "VirtualNetwork", `port ${port}`);
  }
  // The subnet carries the NSG; the only public address is the NAT gateway's (outbound only).
  const vnet = template.resources.find((r) => r.type === "Microsoft.Network/virtualNetworks")!;
  t.regex(JSON.stringify(vnet.properties), /networkSecurityGroups', 'hsmfleet-nsg'/);
  const text = JSON.stringify(
    template.resources.filter((r) => r.type !== "Microsoft.Network/natGateways"),
  );
  t.notRegex(text, /publicIPAddressConfiguration|"publicIPAddress":/);
  t.is(
    template.resources.filter((r) => r.type === "Microsoft.Network/publicIPAddresses").length,
    1,
  );
});

test("the NATS configs carry the same permissions as deploy/nats/hsmfleet-permissions.conf (docs/security.md)", async (t) => {
  const conf = await readFile(new URL("deploy/nats/hsmfleet-permissions.conf", REPO), "utf8");
  const block = (name: string) => {
    const body = new RegExp(`${name} = \\{([\\s\\S]*?)\\n  \\}`).exec(conf)![1]!;
    const list = (key: string) =>
      [...new RegExp(`${key}: \\[([\\s\\S]*?)\\]`).exec(body)![1]!.matchAll(/"([^"]+)"/g)].map(
        (m) => m[1],
      );
    return { publish: list("publish"), subscribe: list("subscribe") };
  };
  t.deepEqual(block("COORDINATOR"), { ...COORDINATOR_PERMISSIONS });
  t.deepEqual(block("WORKER"), { ...WORKER_PERMISSIONS });
});

(present("python3") ? test : test.skip)(
  "the cloud-init files are the template's: each role's variable equals its rendered cloud-init file",
  async (t) => {
    const template = await readTemplate(EXAMPLE);
    const cloudInit = template.variables["cloudInit"] as Record<string, unknown>;
    const load = loadYaml;
    t.deepEqual(
      cloudInit["worker"],
      load(await readFile(join(EXAMPLE, "cloud-init/worker.yaml"), "utf8")),
    );
    t.deepEqual(
      cloudInit["coordinator"],
      load(await readFile(join(EXAMPLE, "cloud-init/coordinator.yaml"), "utf8")),
    );
    for (const i of [0, 1, 2])
      t.deepEqual(
        (cloudInit["nats"] as unknown[])[i],
        load(await readFile(join(EXAMPLE, `cloud-init/nats-${i}.yaml`), "utf8")),
      );
  },
);
