/**
 * The fleet's machines: the worker scale set (Uniform orchestration, manual upgrade policy so
 * upgrades go one VM at a time, instance count = the workerCount parameter, accelerated
 * networking), the coordinator VM and the three NATS VMs — Ubuntu 22.04 (an AMLFS client
 * distribution), SSH key only, no public address, the fleet's user-assigned identity.
 */
import { bracket, toExpr } from "./arm-expressions.js";
import type { ExprValue } from "./arm-expressions.js";
import type { AzureDeployInputs } from "./inputs.js";
import { names, subnetId } from "./arm-network.js";
import type { ArmResource } from "./arm-network.js";

export const COMPUTE_API = "2024-07-01";

/** Workers and coordinator: Ubuntu 22.04, a distribution the AMLFS Lustre client supports. */
export const IMAGE = {
  publisher: "Canonical",
  offer: "0001-com-ubuntu-server-jammy",
  sku: "22_04-lts-gen2",
  version: "latest",
} as const;

/** NATS nodes need no Lustre client: Ubuntu 24.04, whose nats-server package has JetStream (2.10). */
export const NATS_IMAGE = {
  publisher: "Canonical",
  offer: "ubuntu-24_04-lts",
  sku: "server",
  version: "latest",
} as const;

const identityId = (inputs: AzureDeployInputs): string =>
  `[resourceId('Microsoft.ManagedIdentity/userAssignedIdentities', '${names(inputs).identity}')]`;

const identityBlock = (inputs: AzureDeployInputs) => ({
  type: "UserAssigned",
  userAssignedIdentities: { [identityId(inputs)]: {} },
});

/**
 * customData: the role's cloud-init (a template variable, the same object as the rendered file)
 * with the settings files appended to its write_files, as JSON after the #cloud-config line.
 */
export const customData = (cloudInitVariable: string, settings: ExprValue[]): string =>
  bracket(
    `base64(concat(variables('cloudConfigHeader'), string(union(${cloudInitVariable}, createObject('write_files', concat(${cloudInitVariable}.write_files, ${toExpr(settings)}))))))`,
  );

const osProfile = (computerName: string, data: string) => ({
  computerName,
  adminUsername: "[parameters('adminUsername')]",
  customData: data,
  linuxConfiguration: {
    disablePasswordAuthentication: true,
    ssh: {
      publicKeys: [
        {
          path: "[format('/home/{0}/.ssh/authorized_keys', parameters('adminUsername'))]",
          keyData: "[parameters('adminSshPublicKey')]",
        },
      ],
    },
  },
});

const storageProfile = (diskGb: number, image: typeof IMAGE | typeof NATS_IMAGE = IMAGE) => ({
  imageReference: image,
  osDisk: {
    createOption: "FromImage",
    caching: "ReadWrite",
    diskSizeGB: diskGb,
    managedDisk: { storageAccountType: "Premium_LRS" },
  },
});

const nic = (name: string, extra: Record<string, unknown> = {}): ArmResource => ({
  type: "Microsoft.Network/networkInterfaces",
  apiVersion: "2024-05-01",
  name,
  location: "[parameters('location')]",
  ...extra,
  properties: {
    enableAcceleratedNetworking: true,
    ipConfigurations: [
      {
        name: "ipconfig1",
        properties: { privateIPAllocationMethod: "Dynamic", subnet: { id: "" } },
      },
    ],
  },
});

const withSubnet = (inputs: AzureDeployInputs, r: ArmResource): ArmResource => {
  const props = r["properties"] as {
    ipConfigurations: { properties: { subnet: { id: string } } }[];
  };
  props.ipConfigurations[0]!.properties.subnet.id = subnetId(inputs);
  r["dependsOn"] = [`[resourceId('Microsoft.Network/virtualNetworks', '${names(inputs).vnet}')]`];
  return r;
};

const vm = (
  inputs: AzureDeployInputs,
  name: string,
  nicName: string,
  sizeParameter: string,
  data: string,
  diskGb: number,
  extra: Record<string, unknown> = {},
  image: typeof IMAGE | typeof NATS_IMAGE = IMAGE,
): ArmResource => ({
  type: "Microsoft.Compute/virtualMachines",
  apiVersion: COMPUTE_API,
  name,
  location: "[parameters('location')]",
  ...extra,
  dependsOn: [
    `[resourceId('Microsoft.Network/networkInterfaces', ${nicName})]`,
    identityId(inputs),
  ],
  identity: identityBlock(inputs),
  properties: {
    hardwareProfile: { vmSize: `[parameters('${sizeParameter}')]` },
    osProfile: osProfile(name, data),
    storageProfile: storageProfile(diskGb, image),
    networkProfile: {
      networkInterfaces: [
        { id: `[resourceId('Microsoft.Network/networkInterfaces', ${nicName})]` },
      ],
    },
    diagnosticsProfile: { bootDiagnostics: { enabled: true } },
  },
});

export const computeResources = (
  inputs: AzureDeployInputs,
  settings: { worker: ExprValue[]; coordinator: ExprValue[]; nats: ExprValue[] },
): ArmResource[] => {
  const n = names(inputs);
  const natsName = `format('${n.nats("{0}")}', copyIndex())`;
  const natsNicName = `format('${n.nats("{0}")}-nic', copyIndex())`;
  return [
    withSubnet(inputs, nic(`${n.coordinator}-nic`)),
    vm(
      inputs,
      n.coordinator,
      `'${n.coordinator}-nic'`,
      "coordinatorVmSize",
      customData("variables('cloudInit').coordinator", settings.coordinator),
      128,
    ),
    withSubnet(inputs, nic(`[${natsNicName}]`, { copy: { name: "natsNics", count: 3 } })),
    vm(
      inputs,
      `[${natsName}]`,
      natsNicName,
      "natsVmSize",
      customData("variables('cloudInit').nats[copyIndex()]", settings.nats),
      256,
      { copy: { name: "natsVms", count: 3 } },
      NATS_IMAGE,
    ),
    {
      type: "Microsoft.Compute/virtualMachineScaleSets",
      apiVersion: COMPUTE_API,
      name: n.workers,
      location: "[parameters('location')]",
      tags: { "hsmfleet-role": "worker" },
      dependsOn: [
        `[resourceId('Microsoft.Network/virtualNetworks', '${n.vnet}')]`,
        identityId(inputs),
        "natsVms",
      ],
      sku: {
        name: "[parameters('workerVmSize')]",
        tier: "Standard",
        capacity: "[parameters('workerCount')]",
      },
      identity: identityBlock(inputs),
      properties: {
        orchestrationMode: "Uniform",
        overprovision: false,
        singlePlacementGroup: false,
        upgradePolicy: { mode: "Manual" },
        scaleInPolicy: { rules: ["NewestVM"], forceDeletion: false },
        virtualMachineProfile: {
          osProfile: (({ computerName, ...rest }) => ({
            ...rest,
            computerNamePrefix: computerName,
          }))(
            osProfile(
              `${inputs.namePrefix}-w`,
              customData("variables('cloudInit').worker", settings.worker),
            ),
          ),
          storageProfile: storageProfile(128),
          networkProfile: {
            networkInterfaceConfigurations: [
              {
                name: "nic",
                properties: {
                  primary: true,
                  enableAcceleratedNetworking: true,
                  ipConfigurations: [
                    { name: "ipconfig1", properties: { subnet: { id: subnetId(inputs) } } },
                  ],
                },
              },
            ],
          },
          diagnosticsProfile: { bootDiagnostics: { enabled: true } },
        },
      },
    },
  ];
};
