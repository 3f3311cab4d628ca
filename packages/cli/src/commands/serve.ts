import type { ServiceBusReceivedMessage, ServiceBusSender } from "@azure/service-bus";
import { JobLifecycle, JobSpecError, SERVED_KINDS, validateJobSpec } from "@hsmfleet/coordinator";
import type { JobSpec, LifecycleEvent } from "@hsmfleet/coordinator";
import { errorMessage } from "@hsmfleet/core";
import type { Logger } from "@hsmfleet/telemetry";
import { describeServiceBus, isServiceBusError, serviceBusClientFor } from "@hsmfleet/worker";
import { runSpec } from "./serve-run-spec.js";
import type { JobEnv } from "./serve-run-spec.js";
import { startServiceRuntime } from "./service-runtime.js";
import { intArg } from "./context.js";
import type { CliContext } from "./context.js";

interface ServeFlags {
  jobs: string;
  eventsTopic?: string;
  progressInterval: number;
  servicebus?: string;
  servicebusNamespace?: string;
}

/**
 * `hsmfleet serve --jobs <queue>`: job intake from a Service Bus queue (docs/azure-integration.md,
 * docs/job-spec.schema.json). One job at a time: a message is validated (a bad spec is
 * dead-lettered with the reason, nothing started), run on the fleet, and completed when the job
 * ends; the SDK renews its lock meanwhile. `--events-topic` publishes the job's lifecycle events.
 */
export const registerServeCommand = (ctx: CliContext): void => {
  ctx.program
    .command("serve")
    .description(
      "run jobs submitted as JSON specs to a Service Bus queue; publish their lifecycle events to a topic",
    )
    .requiredOption("--jobs <queue>", "Service Bus queue of job specs")
    .option(
      "--events-topic <topic>",
      "Service Bus topic for started/progress/completed/failed/cancelled events",
    )
    .option(
      "--progress-interval <seconds>",
      "at most one progress event per job this often",
      intArg("--progress-interval", 1),
      10,
    )
    .option(
      "--servicebus <connection-string>",
      "Service Bus connection string (or HSMFLEET_SERVICEBUS_CONNECTION_STRING)",
    )
    .option(
      "--servicebus-namespace <fqdn>",
      "Service Bus namespace for Entra ID (or HSMFLEET_SERVICEBUS_NAMESPACE)",
    )
    .action(async (opts: ServeFlags) => {
      const sbTarget = {
        connectionString: opts.servicebus ?? process.env.HSMFLEET_SERVICEBUS_CONNECTION_STRING,
        namespace: opts.servicebusNamespace ?? process.env.HSMFLEET_SERVICEBUS_NAMESPACE,
      };
      const service = await startServiceRuntime(ctx, "serve");
      const { logger, stateDir, storage, runtime, signal } = service;
      const client = serviceBusClientFor(sbTarget);
      const receiver = client.createReceiver(opts.jobs, {
        maxAutoLockRenewalDurationInMs: 7 * 24 * 3600_000,
      });
      const sender: ServiceBusSender | undefined = opts.eventsTopic
        ? client.createSender(opts.eventsTopic)
        : undefined;
      const sink = async (event: LifecycleEvent) => {
        if (sender)
          await sender.sendMessages({
            body: event,
            contentType: "application/json",
            subject: event.eventType,
          });
      };
      logger.info(
        { serviceBus: describeServiceBus(sbTarget), queue: opts.jobs, topic: opts.eventsTopic },
        "serve: waiting for jobs",
      );
      const env: JobEnv = {
        nc: runtime.nc,
        storage: storage.target,
        logger,
        stateDir,
        signal: signal,
      };
      try {
        while (!signal.aborted) {
          let msgs: ServiceBusReceivedMessage[];
          try {
            msgs = await receiver.receiveMessages(1, {
              maxWaitTimeInMs: 1000,
              abortSignal: signal,
            });
          } catch (err) {
            if (signal.aborted) break;
            throw err;
          }
          for (const msg of msgs)
            await serveOne(msg, env, sink, opts.progressInterval * 1000, receiver, logger);
        }
      } finally {
        await receiver.close();
        await sender?.close();
        await client.close();
        await service.close();
      }
    });
};

const serveOne = async (
  msg: ServiceBusReceivedMessage,
  env: JobEnv,
  sink: (e: LifecycleEvent) => Promise<void>,
  progressIntervalMs: number,
  receiver: {
    completeMessage: (m: ServiceBusReceivedMessage) => Promise<void>;
    abandonMessage: (m: ServiceBusReceivedMessage) => Promise<void>;
    deadLetterMessage: (
      m: ServiceBusReceivedMessage,
      o: { deadLetterReason: string; deadLetterErrorDescription: string },
    ) => Promise<void>;
  },
  logger: Logger,
): Promise<void> => {
  const id = String(msg.messageId ?? "");
  let spec: JobSpec;
  try {
    spec = validateJobSpec(msg.body);
    if (!SERVED_KINDS.includes(spec.kind))
      throw new JobSpecError(
        `kind ${spec.kind} is valid but not run by hsmfleet serve yet (${SERVED_KINDS.join(", ")})`,
      );
  } catch (err) {
    const reason = err instanceof JobSpecError ? "InvalidJobSpec" : "UnreadableMessage";
    logger.warn({ messageId: id, reason }, `serve: ${errorMessage(err)}`);
    await receiver.deadLetterMessage(msg, {
      deadLetterReason: reason,
      deadLetterErrorDescription: errorMessage(err),
    });
    return;
  }
  const life = new JobLifecycle(sink, spec, spec.name ?? id, progressIntervalMs);
  await life.started();
  try {
    const { summary, errors } = await runSpec(spec, env, life);
    await life.ended(summary, errors);
    logger.info({ messageId: id, jobId: summary.jobId, state: summary.state }, "serve: job ended");
    await receiver.completeMessage(msg);
  } catch (err) {
    // Could not start or broke down (not a job that ended failed): reported, handed back.
    await life.failed(errorMessage(err));
    logger.warn({ messageId: id }, `serve: job did not run: ${errorMessage(err)}`);
    try {
      if (env.signal.aborted) await receiver.abandonMessage(msg);
      else
        await receiver.deadLetterMessage(msg, {
          deadLetterReason: "JobFailedToStart",
          deadLetterErrorDescription: errorMessage(err),
        });
    } catch (settleErr) {
      if (!(isServiceBusError(settleErr) && settleErr.code === "MessageLockLost")) throw settleErr;
    }
  }
};
