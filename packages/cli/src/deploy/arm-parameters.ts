/**
 * The template's parameters: everything a user supplies at deployment (storage account, AMLFS,
 * the release URL, SSH key, NATS passwords and TLS material — secrets as secureString, never a
 * default) and the sizes the renderer chose (defaults the parameters file repeats). A parameter
 * with no default must be given on `az deployment group create`.
 */
import type { AzureDeployInputs } from "./inputs.js";
import { COORDINATOR_SERVICES } from "./systemd-units.js";

export type ArmParameter = {
  type: "string" | "securestring" | "int" | "bool";
  metadata: { description: string };
  defaultValue?: string | number | boolean;
  minValue?: number;
  maxValue?: number;
  minLength?: number;
  allowedValues?: string[];
};

/** Node.js installed on the VMs (the official linux-x64 build, checked against SHASUMS256). */
export const DEFAULT_NODE_VERSION = "20.19.5";

const p = (
  type: ArmParameter["type"],
  description: string,
  extra: Omit<ArmParameter, "type" | "metadata"> = {},
): ArmParameter => ({ type, metadata: { description }, ...extra });

export const armParameters = (inputs: AzureDeployInputs): Record<string, ArmParameter> => ({
  location: p("string", "Azure region of every resource (default: the resource group's).", {
    defaultValue: "[resourceGroup().location]",
  }),
  workerCount: p(
    "int",
    `Worker VMs in the scale set (${inputs.sizing}). Change it on a running fleet with az vmss scale.`,
    {
      defaultValue: inputs.workers,
      minValue: 1,
      maxValue: 1000,
    },
  ),
  workerVmSize: p("string", "VM size of the workers.", { defaultValue: inputs.workerVmSize }),
  coordinatorVmSize: p("string", "VM size of the coordinator.", {
    defaultValue: inputs.coordinatorVmSize,
  }),
  natsVmSize: p("string", "VM size of each of the three NATS nodes.", {
    defaultValue: inputs.natsVmSize,
  }),
  adminUsername: p("string", "Administrator user of every VM (SSH key only).", {
    defaultValue: "azureuser",
  }),
  adminSshPublicKey: p(
    "string",
    "SSH public key of the administrator (ssh-ed25519 … or ssh-rsa …).",
  ),
  storageAccountName: p(
    "string",
    "Existing storage account in this resource group; the fleet's managed identity gets Storage Blob Data Contributor on it.",
  ),
  serviceBusNamespaceName: p(
    "string",
    "Existing Service Bus namespace in this resource group for autoimport (Blob events); empty = none. The identity gets Azure Service Bus Data Receiver and Sender on it.",
    { defaultValue: "" },
  ),
  amlfsMgsAddress: p(
    "string",
    "MGS IP address of the Azure Managed Lustre file system (its Client connection pane).",
  ),
  lustreClientPackage: p(
    "string",
    "AMLFS Lustre client package matching the file system's version, e.g. amlfs-lustre-client-2.15.7_33_g79ddf99 (the file system's Client connection pane).",
  ),
  hsmfleetPackageUrl: p(
    "securestring",
    "URL of the hsmfleet release tarball (npm run release), e.g. a blob URL with a read-only SAS.",
  ),
  nodeVersion: p(
    "string",
    "Node.js version installed on workers and coordinator (20.19 or later).",
    {
      defaultValue: DEFAULT_NODE_VERSION,
    },
  ),
  natsCoordinatorPassword: p(
    "securestring",
    "NATS password of the coordinator user (letters and digits, e.g. openssl rand -hex 24).",
    { minLength: 16 },
  ),
  natsWorkerPassword: p(
    "securestring",
    "NATS password of the worker user (letters and digits, e.g. openssl rand -hex 24).",
    { minLength: 16 },
  ),
  natsTlsCaCert: p(
    "string",
    "PEM of the CA that signed the NATS node certificate (clients trust it).",
  ),
  natsTlsServerCert: p(
    "string",
    `PEM of the NATS node certificate: subject alternative names ${inputs.natsHosts.join(", ")}; extended key usage serverAuth and clientAuth (routes verify each other).`,
  ),
  natsTlsServerKey: p("securestring", "PEM of the private key of natsTlsServerCert."),
  vnetAddressPrefix: p("string", "Address space of the fleet's virtual network.", {
    defaultValue: "10.40.0.0/16",
  }),
  subnetAddressPrefix: p(
    "string",
    "The fleet's subnet (it must reach the AMLFS subnet: peer or share the network).",
    {
      defaultValue: "10.40.0.0/20",
    },
  ),
  ...Object.fromEntries(
    COORDINATOR_SERVICES.flatMap((s): [string, ArmParameter][] => [
      [
        s.enableParameter,
        p("bool", `Run ${s.unit}.service (hsmfleet ${s.command}) on the coordinator.`, {
          defaultValue: s.command === "dashboard",
        }),
      ],
      ...(s.argsParameter === undefined
        ? []
        : [
            <[string, ArmParameter]>[
              s.argsParameter,
              p(
                "string",
                `Arguments of hsmfleet ${s.command} (see hsmfleet ${s.command} --help).`,
                {
                  defaultValue: "",
                },
              ),
            ],
          ]),
    ]),
  ),
});

/** The parameters file: the sizes the renderer chose. Secrets are never in it. */
export const armParametersFile = (inputs: AzureDeployInputs): object => ({
  $schema: "https://schema.management.azure.com/schemas/2019-04-01/deploymentParameters.json#",
  contentVersion: "1.0.0.0",
  parameters: {
    workerCount: { value: inputs.workers },
    workerVmSize: { value: inputs.workerVmSize },
    coordinatorVmSize: { value: inputs.coordinatorVmSize },
    natsVmSize: { value: inputs.natsVmSize },
  },
});
