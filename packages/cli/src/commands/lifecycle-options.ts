/**
 * `--events-topic` on job commands (export, import, restore, as on `hsmfleet serve`): the job's
 * lifecycle events (started, progress at most every `--progress-interval` seconds, then one of
 * completed / failed / cancelled, AMLFS job-status names; coordinator intake/lifecycle-events.ts)
 * go to a Service Bus topic. The Service Bus credentials come from `--servicebus` /
 * `--servicebus-namespace` (or their environment variables) and never reach a log line or an event.
 */
import { Option } from "commander";
import type { ServiceBusClient, ServiceBusSender } from "@azure/service-bus";
import { JobLifecycle } from "@hsmfleet/coordinator";
import type { JobSpecKind, LifecycleEvent } from "@hsmfleet/coordinator";
import { errorMessage } from "@hsmfleet/core";
import type { Logger } from "@hsmfleet/telemetry";
import { intArg } from "./context.js";

export interface LifecycleFlags {
  eventsTopic?: string;
  progressInterval?: number;
  servicebus?: string;
  servicebusNamespace?: string;
}

/** Default of `--progress-interval` (seconds), as on `hsmfleet serve`. */
export const DEFAULT_PROGRESS_INTERVAL_S = 10;

/** `--events-topic`, `--progress-interval`, `--servicebus`, `--servicebus-namespace`. */
export const lifecycleOptions = (): Option[] => [
  new Option(
    "--events-topic <topic>",
    "Service Bus topic for the job's started/progress/completed/failed/cancelled events",
  ),
  new Option(
    "--progress-interval <seconds>",
    "with --events-topic: at most one progress event this often",
  )
    .argParser(intArg("--progress-interval", 1))
    .default(DEFAULT_PROGRESS_INTERVAL_S),
  new Option(
    "--servicebus <connection-string>",
    "with --events-topic: Service Bus connection string",
  ).env("HSMFLEET_SERVICEBUS_CONNECTION_STRING"),
  new Option(
    "--servicebus-namespace <fqdn>",
    "with --events-topic: Service Bus namespace for Entra ID (DefaultAzureCredential)",
  ).env("HSMFLEET_SERVICEBUS_NAMESPACE"),
];

/** What the events say the job is (no credentials: the spec's own fields only). */
export interface LifecycleJob {
  kind: JobSpecKind;
  path: string;
  container?: string | undefined;
}

export interface LifecyclePublisher {
  life: JobLifecycle;
  close(): Promise<void>;
}

/**
 * Opens the topic sender and the job's lifecycle, or undefined without `--events-topic`. A send that
 * fails is logged (without the connection string) and does not stop the job.
 */
export const openLifecyclePublisher = async (
  flags: LifecycleFlags,
  job: LifecycleJob,
  name: string,
  logger: Logger,
): Promise<LifecyclePublisher | undefined> => {
  if (!flags.eventsTopic) return undefined;
  const { describeServiceBus, serviceBusClientFor } = await import("@hsmfleet/worker");
  const target = { connectionString: flags.servicebus, namespace: flags.servicebusNamespace };
  const client: ServiceBusClient = serviceBusClientFor(target);
  const sender: ServiceBusSender = client.createSender(flags.eventsTopic);
  const topic = flags.eventsTopic;
  logger.info({ serviceBus: describeServiceBus(target), topic }, "lifecycle events to a topic");
  const sink = async (event: LifecycleEvent) => {
    try {
      await sender.sendMessages({
        body: event,
        contentType: "application/json",
        subject: event.eventType,
      });
    } catch (err) {
      logger.warn(
        { topic, eventType: event.eventType },
        `lifecycle event not sent: ${errorMessage(err)}`,
      );
    }
  };
  const life = new JobLifecycle(
    sink,
    { kind: job.kind, path: job.path, ...(job.container ? { container: job.container } : {}) },
    name,
    (flags.progressInterval ?? DEFAULT_PROGRESS_INTERVAL_S) * 1000,
  );
  return {
    life,
    close: async () => {
      await sender.close();
      await client.close();
    },
  };
};
