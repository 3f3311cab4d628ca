/**
 * The Service Bus client of autoimport (and whatever else reads or writes Service Bus): a
 * connection string, or a namespace (`<name>.servicebus.windows.net`) with Entra ID through
 * DefaultAzureCredential (managed identity on a VM, az login, workload identity). The
 * credentials never reach a log line: `describeServiceBus` names the endpoint and the key name
 * only.
 */
import { createRequire } from "node:module";

import type * as AzureIdentity from "@azure/identity";
import type * as ServiceBus from "@azure/service-bus";
import type { ServiceBusClient, ServiceBusError } from "@azure/service-bus";
import { UsageError } from "@hsmfleet/core";

const requireCjs = createRequire(import.meta.url);
/**
 * @azure/service-bus (with rhea and core-amqp) and @azure/identity (with MSAL) are loaded when a
 * command first makes a Service Bus client, not when every command starts: their module code took
 * ~26 ms of each command's fixed cost (issue 17, docs/benchmarks.md "The bundle read into huge
 * pages"). Both packages' `main` is CommonJS, so this is the copy an ES import gets too.
 */
const serviceBus = (): typeof ServiceBus => requireCjs("@azure/service-bus") as typeof ServiceBus;
const identity = (): typeof AzureIdentity => requireCjs("@azure/identity") as typeof AzureIdentity;

/**
 * @azure/service-bus's own isServiceBusError (the same test: an object named "ServiceBusError"),
 * without loading the package.
 */
export const isServiceBusError = (err: unknown): err is ServiceBusError =>
  typeof err === "object" && err !== null && (err as { name?: unknown }).name === "ServiceBusError";

export interface ServiceBusTarget {
  /** `Endpoint=sb://…;SharedAccessKeyName=…;SharedAccessKey=…` (optionally `UseDevelopmentEmulator=true`). */
  connectionString?: string | undefined;
  /** Fully qualified namespace, used with DefaultAzureCredential when no connection string is given. */
  namespace?: string | undefined;
}

export const serviceBusClientFor = (target: ServiceBusTarget): ServiceBusClient => {
  if (target.connectionString) return new (serviceBus().ServiceBusClient)(target.connectionString);
  if (target.namespace)
    return new (serviceBus().ServiceBusClient)(
      target.namespace,
      new (identity().DefaultAzureCredential)(),
    );
  throw new UsageError(
    "no Service Bus given: --servicebus <connection string> (or HSMFLEET_SERVICEBUS_CONNECTION_STRING), or --servicebus-namespace <name>.servicebus.windows.net for Entra ID",
  );
};

/** A printable description without secrets: the endpoint and how it authenticates. */
export const describeServiceBus = (target: ServiceBusTarget): string => {
  if (target.connectionString) {
    const fields = new Map(
      target.connectionString
        .split(";")
        .map((p) => p.split("=", 2) as [string, string])
        .filter((p) => p.length === 2)
        .map(([k, v]) => [k.toLowerCase(), v]),
    );
    return `${fields.get("endpoint") ?? "?"} (shared access key ${fields.get("sharedaccesskeyname") ?? "?"})`;
  }
  return `${target.namespace ?? "?"} (Entra ID, DefaultAzureCredential)`;
};
