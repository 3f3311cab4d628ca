/**
 * Validation of an ARM template against the vendored ARM JSON schemas (deploy/azure/schemas, from
 * github.com/Azure/azure-resource-manager-schemas, MIT): the deployment-template schema, and each
 * resource against its type's schema for the API version it uses. The only change to the vendored
 * files is made here, in memory: the template schema's list of every resource type of Azure
 * (`definitions.resource`, which refers to thousands of files) is narrowed to the resource types
 * this repository vendors, in the same shape (resourceBase plus one of the type definitions).
 */
import { readFileSync } from "node:fs";
import AjvDraft04 from "ajv-draft-04";
import type { ErrorObject, ValidateFunction } from "ajv-draft-04";

const SCHEMAS = new URL("../../../deploy/azure/schemas/", import.meta.url);
const BASE = "https://schema.management.azure.com/schemas/";

/** Vendored files and the resource definitions used from each (type → definition name). */
const VENDORED: Record<string, Record<string, string>> = {
  "2024-07-01/Microsoft.Compute.json": {
    "Microsoft.Compute/virtualMachines": "virtualMachines",
    "Microsoft.Compute/virtualMachineScaleSets": "virtualMachineScaleSets",
  },
  "2024-07-01/Microsoft.Compute.Extensions.json": {},
  "2024-05-01/Microsoft.Network.NRP.json": {
    "Microsoft.Network/networkSecurityGroups": "networkSecurityGroups",
    "Microsoft.Network/publicIPAddresses": "publicIPAddresses",
    "Microsoft.Network/natGateways": "natGateways",
    "Microsoft.Network/virtualNetworks": "virtualNetworks",
    "Microsoft.Network/networkInterfaces": "networkInterfaces",
  },
  "2023-01-31/Microsoft.ManagedIdentity.json": {
    "Microsoft.ManagedIdentity/userAssignedIdentities": "userAssignedIdentities",
  },
  "2022-04-01/Microsoft.Authorization.json": {
    "Microsoft.Authorization/roleAssignments": "roleAssignments",
  },
};

const read = (path: string): Record<string, unknown> =>
  JSON.parse(readFileSync(new URL(path, SCHEMAS), "utf8")) as Record<string, unknown>;

export interface ArmValidators {
  template: ValidateFunction;
  parameters: ValidateFunction;
  /** The type's own schema for `type` at `apiVersion`; undefined when not vendored. */
  resource(type: string, apiVersion: string): ValidateFunction | undefined;
}

export const armValidators = (): ArmValidators => {
  const ajv = new AjvDraft04.default({ strict: false, allErrors: true, validateFormats: false });
  const refs: string[] = [];
  const byType = new Map<string, string>();
  for (const [file, types] of Object.entries(VENDORED)) {
    ajv.addSchema(read(file));
    const apiVersion = file.split("/")[0]!;
    for (const [type, def] of Object.entries(types)) {
      const ref = `${BASE}${file}#/resourceDefinitions/${def}`;
      refs.push(ref);
      byType.set(`${type}@${apiVersion}`, ref);
    }
  }
  ajv.addSchema(read("common/definitions.json"));
  const template = read("2019-04-01/deploymentTemplate.json");
  const definitions = template["definitions"] as Record<string, unknown>;
  definitions["resource"] = {
    description: "The resource types this repository vendors (see deploy/azure/schemas/README.md)",
    allOf: [{ $ref: "#/definitions/resourceBase" }, { oneOf: refs.map(($ref) => ({ $ref })) }],
  };
  ajv.addSchema(template);
  ajv.addSchema(read("2019-04-01/deploymentParameters.json"));
  return {
    template: ajv.getSchema(`${BASE}2019-04-01/deploymentTemplate.json#`)!,
    parameters: ajv.getSchema(`${BASE}2019-04-01/deploymentParameters.json#`)!,
    resource: (type, apiVersion) => {
      const ref = byType.get(`${type}@${apiVersion}`);
      return ref === undefined ? undefined : ajv.getSchema(ref);
    },
  };
};

export const showErrors = (errors: ErrorObject[] | null | undefined): string =>
  (errors ?? [])
    .slice(0, 20)
    .map((e) => `${e.instancePath} ${e.message ?? ""} ${JSON.stringify(e.params)}`)
    .join("\n");
