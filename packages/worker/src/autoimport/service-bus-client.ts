/**
 * The Service Bus client of autoimport (and whatever else reads or writes Service Bus): a
 * connection string, or a namespace (`<name>.servicebus.windows.net`) with Entra ID through
 * DefaultAzureCredential (managed identity on a VM, az login, workload identity). The
 * credentials never reach a log line: `describeServiceBus` names the endpoint and the key name
 * only.
 */
import { DefaultAzureCredential } from "@azure/identity";
import { ServiceBusClient } from "@azure/service-bus";
import { UsageError } from "@hsmfleet/core";

export interface ServiceBusTarget {
  /** `Endpoint=sb://…;SharedAccessKeyName=…;SharedAccessKey=…` (optionally `UseDevelopmentEmulator=true`). */
  connectionString?: string | undefined;
  /** Fully qualified namespace, used with DefaultAzureCredential when no connection string is given. */
  namespace?: string | undefined;
}

export const serviceBusClientFor = (target: ServiceBusTarget): ServiceBusClient => {
  if (target.connectionString) return new ServiceBusClient(target.connectionString);
  if (target.namespace) return new ServiceBusClient(target.namespace, new DefaultAzureCredential());
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
