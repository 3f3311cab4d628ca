/**
 * The fleet's network: one virtual network and subnet, a NAT gateway for outbound traffic (the VMs
 * have no public address: apt, Node.js, the release and Azure Storage go out through it), and a
 * network security group that denies NATS, metrics and dashboard ports from the Internet
 * explicitly and allows them inside the virtual network only.
 */
import type { AzureDeployInputs } from "./inputs.js";

export const NETWORK_API = "2024-05-01";

export type ArmResource = Record<string, unknown> & {
  type: string;
  apiVersion: string;
  name: string;
};

export const names = (inputs: AzureDeployInputs) => ({
  vnet: `${inputs.namePrefix}-vnet`,
  subnet: "fleet",
  nsg: `${inputs.namePrefix}-nsg`,
  natGateway: `${inputs.namePrefix}-nat`,
  natIp: `${inputs.namePrefix}-nat-ip`,
  identity: `${inputs.namePrefix}-identity`,
  coordinator: `${inputs.namePrefix}-coordinator`,
  nats: (i: number | string) => `${inputs.namePrefix}-nats-${i}`,
  workers: `${inputs.namePrefix}-workers`,
});

/** Ports only the virtual network may reach: NATS client, route and monitoring; metrics; dashboard; Prometheus. */
export const internalPorts = (inputs: AzureDeployInputs): { name: string; ports: string[] }[] => [
  {
    name: "nats",
    ports: [inputs.natsPort, inputs.natsClusterPort, inputs.natsMonitorPort].map(String),
  },
  {
    name: "observability",
    ports: [
      String(inputs.workerMetricsPort),
      `${inputs.coordinatorMetricsPort}-${inputs.coordinatorMetricsPort + 2}`,
      String(inputs.dashboardPort),
      "9090",
    ],
  },
];

const subnetId = (inputs: AzureDeployInputs): string =>
  `[resourceId('Microsoft.Network/virtualNetworks/subnets', '${names(inputs).vnet}', '${names(inputs).subnet}')]`;

export { subnetId };

export const networkResources = (inputs: AzureDeployInputs): ArmResource[] => {
  const n = names(inputs);
  const rules = internalPorts(inputs).flatMap((group, i) => [
    {
      name: `deny-${group.name}-from-internet`,
      properties: {
        description: `${group.name} ports are never reachable from the Internet`,
        priority: 100 + i * 10,
        direction: "Inbound",
        access: "Deny",
        protocol: "*",
        sourceAddressPrefix: "Internet",
        sourcePortRange: "*",
        destinationAddressPrefix: "*",
        destinationPortRanges: group.ports,
      },
    },
    {
      name: `allow-${group.name}-in-vnet`,
      properties: {
        description: `${group.name} ports inside the virtual network`,
        priority: 1000 + i * 10,
        direction: "Inbound",
        access: "Allow",
        protocol: "Tcp",
        sourceAddressPrefix: "VirtualNetwork",
        sourcePortRange: "*",
        destinationAddressPrefix: "VirtualNetwork",
        destinationPortRanges: group.ports,
      },
    },
  ]);
  return [
    {
      type: "Microsoft.Network/networkSecurityGroups",
      apiVersion: NETWORK_API,
      name: n.nsg,
      location: "[parameters('location')]",
      properties: { securityRules: rules },
    },
    {
      type: "Microsoft.Network/publicIPAddresses",
      apiVersion: NETWORK_API,
      name: n.natIp,
      location: "[parameters('location')]",
      sku: { name: "Standard", tier: "Regional" },
      properties: { publicIPAllocationMethod: "Static", publicIPAddressVersion: "IPv4" },
    },
    {
      type: "Microsoft.Network/natGateways",
      apiVersion: NETWORK_API,
      name: n.natGateway,
      location: "[parameters('location')]",
      sku: { name: "Standard" },
      dependsOn: [`[resourceId('Microsoft.Network/publicIPAddresses', '${n.natIp}')]`],
      properties: {
        idleTimeoutInMinutes: 10,
        publicIpAddresses: [
          { id: `[resourceId('Microsoft.Network/publicIPAddresses', '${n.natIp}')]` },
        ],
      },
    },
    {
      type: "Microsoft.Network/virtualNetworks",
      apiVersion: NETWORK_API,
      name: n.vnet,
      location: "[parameters('location')]",
      dependsOn: [
        `[resourceId('Microsoft.Network/networkSecurityGroups', '${n.nsg}')]`,
        `[resourceId('Microsoft.Network/natGateways', '${n.natGateway}')]`,
      ],
      properties: {
        addressSpace: { addressPrefixes: ["[parameters('vnetAddressPrefix')]"] },
        subnets: [
          {
            name: n.subnet,
            properties: {
              addressPrefix: "[parameters('subnetAddressPrefix')]",
              networkSecurityGroup: {
                id: `[resourceId('Microsoft.Network/networkSecurityGroups', '${n.nsg}')]`,
              },
              natGateway: {
                id: `[resourceId('Microsoft.Network/natGateways', '${n.natGateway}')]`,
              },
              serviceEndpoints: [{ service: "Microsoft.Storage" }],
            },
          },
        ],
      },
    },
  ];
};
