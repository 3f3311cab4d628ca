import { Agent as HttpAgent } from "node:http";
import { Agent as HttpsAgent } from "node:https";
import { createRequire } from "node:module";
import type * as AzureIdentity from "@azure/identity";
import type { DefaultAzureCredential } from "@azure/identity";
import {
  AnonymousCredential,
  BlobServiceClient,
  StorageRetryPolicyType,
  StorageSharedKeyCredential,
  newPipeline,
  type StoragePipelineOptions,
} from "@azure/storage-blob";
import { UsageError } from "@hsmfleet/core";
import { BlobContainer } from "./container.js";
import { createPacingPolicy, installPacingPolicy, type RequestPacing } from "./request-pacing.js";
import { DirectBlobTransport, registerDirectTransport, type DirectAuth } from "./direct-put.js";
import { removeFormDataPolicy } from "./form-data-policy.js";
import { SocketPool } from "./socket-get.js";
import { createRetryPolicy, installRetryPolicy, type RetryInfo } from "./retry-policy.js";
import { CONTAINER_NAME, parseConnectionString, type StorageTarget } from "./storage-target.js";

export interface BlobClientOptions {
  /** Retries after the first try (SDK exponential policy). Default 5. */
  maxRetries?: number;
  /** First retry delay, doubled per retry. Default 500 ms. */
  retryDelayMs?: number;
  /** Cap of the retry delay. Default 30,000 ms. */
  maxRetryDelayMs?: number;
  /** Per-try timeout (also sent to the service as `timeout=`). Default: none. */
  timeoutMs?: number;
  /** Local source address for outgoing connections (multi-NIC VMs); undefined = OS choice. */
  localAddress?: string;
  /** Sockets per worker and host (keep-alive agent). Default 64. */
  maxSockets?: number;
  /** Called before each request retry (logs, counters). */
  onRetry?: ((info: RetryInfo) => void) | undefined;
  /**
   * The worker's request slots and a job's rate limits, applied to every try (request-pacing.ts).
   * Default: none (requests go out as the callers issue them).
   */
  pacing?: RequestPacing | undefined;
  /**
   * Put Blob (small files, directory stubs, symlinks) built, signed and sent without the SDK's
   * pipeline (direct-put.ts), same headers and retry policy. Default true; the environment
   * variable HSMFLEET_DIRECT_PUT=0 turns it off for a whole process.
   */
  directPutBlob?: boolean;
}

export const DEFAULT_MAX_RETRIES = 5;
export const DEFAULT_RETRY_DELAY_MS = 500;
export const DEFAULT_MAX_RETRY_DELAY_MS = 30_000;
export const DEFAULT_MAX_SOCKETS = 64;

const positiveInt = (value: number | undefined, fallback: number, what: string): number => {
  const v = value ?? fallback;
  if (!Number.isSafeInteger(v) || v < 0) throw new UsageError(`${what} must be an integer ≥ 0`);
  return v;
};

const serviceUrl = (target: StorageTarget): string => {
  switch (target.kind) {
    case "connection-string": {
      const parts = parseConnectionString(target.connectionString);
      return parts.accountKey === undefined && parts.sas !== undefined
        ? `${parts.blobEndpoint}?${parts.sas}`
        : parts.blobEndpoint;
    }
    case "account-url":
      return target.accountUrl;
    case "sas-url":
      return `${target.accountUrl}?${target.sas}`;
  }
};

type TargetCredential = StorageSharedKeyCredential | AnonymousCredential | DefaultAzureCredential;

const requireCjs = createRequire(import.meta.url);
/**
 * @azure/identity (with MSAL, ~230 modules: about a quarter of what a command loads) is loaded
 * only for a target that authenticates with it (an account URL), not for keys and SAS tokens.
 */
const newDefaultAzureCredential = (): DefaultAzureCredential => {
  const identity = requireCjs("@azure/identity") as typeof AzureIdentity;
  return new identity.DefaultAzureCredential();
};

const credentialFor = (target: StorageTarget): TargetCredential => {
  switch (target.kind) {
    case "connection-string": {
      const parts = parseConnectionString(target.connectionString);
      return parts.accountKey !== undefined
        ? new StorageSharedKeyCredential(parts.accountName, parts.accountKey)
        : new AnonymousCredential();
    }
    case "account-url":
      return newDefaultAzureCredential();
    case "sas-url":
      return new AnonymousCredential();
  }
};

/** How direct requests authorize for a target: the same secret or credential as the SDK client. */
const directAuthFor = (
  target: StorageTarget,
  credential: TargetCredential,
): DirectAuth | undefined => {
  switch (target.kind) {
    case "connection-string": {
      const parts = parseConnectionString(target.connectionString);
      if (parts.accountKey !== undefined) {
        return { kind: "shared-key", accountName: parts.accountName, accountKey: parts.accountKey };
      }
      return parts.sas !== undefined ? { kind: "sas", sas: parts.sas } : undefined;
    }
    case "account-url":
      return credential instanceof StorageSharedKeyCredential ||
        credential instanceof AnonymousCredential
        ? undefined
        : { kind: "bearer", credential };
    case "sas-url":
      return { kind: "sas", sas: target.sas };
  }
};

/**
 * BlobServiceClient for a target: shared-key, SAS or Entra ID (DefaultAzureCredential) auth; a
 * keep-alive agent with `maxSockets` that binds `localAddress` when given; hsmfleet's retry policy
 * (retry-policy.ts: network errors, 408/429/5xx, capped exponential backoff with jitter,
 * Retry-After honoured) in place of the SDK's, with the given values. Put Blob requests of the
 * BlobContainers made from it go out without the SDK (direct-put.ts), over the same agent, with
 * the same credential and retry policy, unless `directPutBlob` is false.
 */
export const createBlobServiceClient = (
  target: StorageTarget,
  options: BlobClientOptions = {},
): BlobServiceClient => {
  const url = serviceUrl(target);
  const maxRetries = positiveInt(options.maxRetries, DEFAULT_MAX_RETRIES, "maxRetries");
  const retryDelayMs = positiveInt(options.retryDelayMs, DEFAULT_RETRY_DELAY_MS, "retryDelayMs");
  const maxRetryDelayMs = positiveInt(
    options.maxRetryDelayMs,
    DEFAULT_MAX_RETRY_DELAY_MS,
    "maxRetryDelayMs",
  );
  const maxSockets = positiveInt(options.maxSockets, DEFAULT_MAX_SOCKETS, "maxSockets");
  if (maxSockets < 1) throw new UsageError("maxSockets must be at least 1");
  const agentOptions = {
    keepAlive: true,
    maxSockets,
    ...(options.localAddress !== undefined ? { localAddress: options.localAddress } : {}),
  };
  const agent = url.startsWith("https:")
    ? new HttpsAgent(agentOptions)
    : new HttpAgent(agentOptions);
  // `agent` is not in StoragePipelineOptions' type, but the options are handed to core-rest-
  // pipeline's createPipelineFromOptions, which installs agentPolicy(agent) for every request.
  const pipelineOptions: StoragePipelineOptions & { agent: HttpAgent } = {
    retryOptions: {
      retryPolicyType: StorageRetryPolicyType.EXPONENTIAL,
      maxTries: maxRetries + 1,
      // The SDK requires both delays to be 0 when one of them is.
      retryDelayInMs: retryDelayMs === 0 ? 0 : retryDelayMs,
      maxRetryDelayInMs: retryDelayMs === 0 ? 0 : Math.max(maxRetryDelayMs, retryDelayMs),
      ...(options.timeoutMs !== undefined ? { tryTimeoutInMs: options.timeoutMs } : {}),
    },
    keepAliveOptions: { enable: true },
    agent,
  };
  const credential = credentialFor(target);
  const client = new BlobServiceClient(url, newPipeline(credential, pipelineOptions));
  // `pipeline` is protected in the SDK's typings; installRetryPolicy only reads a field of it.
  const pipeline = (client as unknown as { pipeline: object }).pipeline;
  const retryPolicy = createRetryPolicy({
    maxRetries,
    retryDelayMs,
    maxRetryDelayMs,
    onRetry: options.onRetry,
  });
  installRetryPolicy(pipeline, retryPolicy);
  removeFormDataPolicy(pipeline);
  const pacing = options.pacing !== undefined ? createPacingPolicy(options.pacing) : undefined;
  if (pacing !== undefined) installPacingPolicy(pipeline, pacing);
  const direct =
    (options.directPutBlob ?? true) && process.env["HSMFLEET_DIRECT_PUT"] !== "0"
      ? directAuthFor(target, credential)
      : undefined;
  if (direct !== undefined) {
    registerDirectTransport(
      pipeline,
      new DirectBlobTransport({
        auth: direct,
        agent,
        retryPolicy,
        pacing,
        timeoutMs: options.timeoutMs,
        ...(process.env["HSMFLEET_DIRECT_GET_SOCKET"] !== "0"
          ? {
              sockets: new SocketPool({
                maxSockets,
                ...(options.localAddress !== undefined
                  ? { localAddress: options.localAddress }
                  : {}),
              }),
            }
          : {}),
      }),
    );
  }
  return client;
};

/**
 * BlobContainer for `container`, or for the container the target's URL names. Throws UsageError
 * when neither gives one.
 */
export const openContainer = (
  target: StorageTarget,
  container?: string,
  options?: BlobClientOptions,
): BlobContainer => {
  const name = container ?? (target.kind === "connection-string" ? undefined : target.container);
  if (name === undefined || name === "") {
    throw new UsageError("no container given (name one, or use a container URL)");
  }
  if (!CONTAINER_NAME.test(name)) {
    throw new UsageError(
      `"${name}" is not a container name (3–63 lower-case letters, digits and single hyphens)`,
    );
  }
  return new BlobContainer(createBlobServiceClient(target, options).getContainerClient(name));
};
