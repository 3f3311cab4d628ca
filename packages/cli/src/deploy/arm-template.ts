/**
 * The ARM template of a fleet (deployable with `az deployment group create`): network, the
 * user-assigned managed identity and its role assignments (Storage Blob Data Contributor on the
 * account, Reader on the resource group for Prometheus's service discovery, Service Bus Data
 * Receiver and Sender when a namespace is given), the NATS VMs, the coordinator and the worker
 * scale set. The cloud-init of each role is a variable (the same object as the rendered file).
 */
import { armLiteral, bracket, e, toExpr } from "./arm-expressions.js";
import type { ExprValue } from "./arm-expressions.js";
import { armParameters } from "./arm-parameters.js";
import { computeResources } from "./arm-compute.js";
import { names, networkResources } from "./arm-network.js";
import type { ArmResource } from "./arm-network.js";
import {
  coordinatorSettingsFiles,
  IDENTITY_API,
  natsSettingsFiles,
  workerSettingsFiles,
} from "./arm-settings.js";
import {
  CLOUD_CONFIG_HEADER,
  coordinatorCloudConfig,
  natsCloudConfig,
  workerCloudConfig,
} from "./cloud-init.js";
import type { AzureDeployInputs } from "./inputs.js";
import { natsClientUrls } from "./inputs.js";
import { prometheusConfig } from "./prometheus-config.js";

export const AUTHORIZATION_API = "2022-04-01";

/** Built-in role definition ids (learn.microsoft.com, "Azure built-in roles"). */
export const ROLES = {
  storageBlobDataContributor: "ba92f5b4-2d11-453d-a403-e96b0029c9fe",
  reader: "acdd72a7-3385-48ef-bd42-f606fba81ae7",
  serviceBusDataReceiver: "4f6d3b9b-027b-4f4c-9142-0e5a2a2247e0",
  serviceBusDataSender: "69a216fc-b8fb-44d8-bc22-1f3c2cd27a39",
} as const;

const roleAssignment = (
  inputs: AzureDeployInputs,
  key: string,
  role: string,
  scope: string | undefined,
  condition?: string,
): ArmResource => {
  const identity = `resourceId('Microsoft.ManagedIdentity/userAssignedIdentities', '${names(inputs).identity}')`;
  return {
    type: "Microsoft.Authorization/roleAssignments",
    apiVersion: AUTHORIZATION_API,
    name: `[guid(resourceGroup().id, '${names(inputs).identity}', '${key}', '${role}')]`,
    ...(condition === undefined ? {} : { condition }),
    ...(scope === undefined ? {} : { scope }),
    dependsOn: [`[${identity}]`],
    properties: {
      roleDefinitionId: `[subscriptionResourceId('Microsoft.Authorization/roleDefinitions', '${role}')]`,
      principalId: `[reference(${identity}, '${IDENTITY_API}').principalId]`,
      principalType: "ServicePrincipal",
      description: `hsmfleet ${key}`,
    },
  };
};

export const identityResources = (inputs: AzureDeployInputs): ArmResource[] => {
  const storageScope =
    "[format('Microsoft.Storage/storageAccounts/{0}', parameters('storageAccountName'))]";
  const busScope =
    "[format('Microsoft.ServiceBus/namespaces/{0}', parameters('serviceBusNamespaceName'))]";
  const usesBus = "[not(empty(parameters('serviceBusNamespaceName')))]";
  return [
    {
      type: "Microsoft.ManagedIdentity/userAssignedIdentities",
      apiVersion: IDENTITY_API,
      name: names(inputs).identity,
      location: "[parameters('location')]",
    },
    roleAssignment(inputs, "storage", ROLES.storageBlobDataContributor, storageScope),
    roleAssignment(inputs, "discovery", ROLES.reader, undefined),
    roleAssignment(inputs, "servicebus-receive", ROLES.serviceBusDataReceiver, busScope, usesBus),
    roleAssignment(inputs, "servicebus-send", ROLES.serviceBusDataSender, busScope, usesBus),
  ];
};

export interface ArmTemplate {
  $schema: string;
  contentVersion: string;
  metadata: Record<string, unknown>;
  parameters: ReturnType<typeof armParameters>;
  variables: Record<string, unknown>;
  resources: ArmResource[];
  outputs: Record<string, { type: string; value: unknown }>;
}

export const armTemplate = (inputs: AzureDeployInputs): ArmTemplate => {
  const identity = names(inputs).identity;
  const prometheus = toExpr(
    prometheusConfig(inputs, {
      subscriptionId: e("subscription().subscriptionId"),
      resourceGroup: e("resourceGroup().name"),
    }) as ExprValue,
  );
  return {
    $schema: "https://schema.management.azure.com/schemas/2019-04-01/deploymentTemplate.json#",
    contentVersion: "1.0.0.0",
    metadata: {
      description: `hsmfleet fleet: ${inputs.workers} × ${inputs.workerVmSize} workers (${inputs.sizing}), a 3-node NATS JetStream cluster and a coordinator. Rendered by hsmfleet deploy azure; see docs/deploy.md.`,
    },
    parameters: armParameters(inputs),
    variables: armLiteral({
      cloudConfigHeader: CLOUD_CONFIG_HEADER,
      cloudInit: {
        worker: workerCloudConfig(inputs),
        coordinator: coordinatorCloudConfig(inputs),
        nats: [0, 1, 2].map((i) => natsCloudConfig(inputs, i)),
      },
    }),
    resources: [
      ...networkResources(inputs),
      ...identityResources(inputs),
      ...computeResources(inputs, {
        worker: workerSettingsFiles(inputs, identity),
        coordinator: coordinatorSettingsFiles(inputs, identity, prometheus),
        nats: natsSettingsFiles(inputs),
      }),
    ],
    outputs: {
      identityClientId: {
        type: "string",
        value: bracket(
          `reference(resourceId('Microsoft.ManagedIdentity/userAssignedIdentities', '${identity}'), '${IDENTITY_API}').clientId`,
        ),
      },
      natsUrls: { type: "string", value: natsClientUrls(inputs) },
      coordinator: { type: "string", value: names(inputs).coordinator },
      workerScaleSet: { type: "string", value: names(inputs).workers },
    },
  };
};
