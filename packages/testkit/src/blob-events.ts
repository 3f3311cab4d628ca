// Blob Storage events as Event Grid delivers them to a Service Bus queue (Event Grid schema or
// CloudEvents 1.0), built from real writes (ETag, size) for tests: Azurite emits no events.
// A sequencer is a 32-hex-digit string like Azure's (`00000000000004420000000000028963`).
import { randomUUID } from "node:crypto";

export type BlobEventSchema = "eventgrid" | "cloudevents";

export interface BlobEventFields {
  type:
    | "BlobCreated"
    | "BlobDeleted"
    | "BlobRenamed"
    | "DirectoryCreated"
    | "DirectoryRenamed"
    | "DirectoryDeleted";
  account?: string;
  container: string;
  blob: string;
  /** Renames: the new name. */
  destination?: string;
  sequencer: number | bigint;
  etag?: string;
  size?: number;
  recursive?: boolean;
  schema?: BlobEventSchema;
  time?: Date;
  id?: string;
}

const urlOf = (account: string, container: string, blob: string): string =>
  `https://${account}.blob.core.windows.net/${container}/${blob.split("/").map(encodeURIComponent).join("/")}`;

export const sequencerOf = (n: number | bigint): string => BigInt(n).toString(16).padStart(32, "0");

/** One event object in the chosen schema. */
export const blobEvent = (f: BlobEventFields): Record<string, unknown> => {
  const account = f.account ?? "devstoreaccount1";
  const subject = `/blobServices/default/containers/${f.container}/blobs/${f.blob}`;
  const data: Record<string, unknown> = {
    api:
      f.type === "BlobDeleted" ? "DeleteBlob" : f.type === "BlobCreated" ? "PutBlob" : "RenameFile",
    clientRequestId: randomUUID(),
    requestId: randomUUID(),
    contentType: "application/octet-stream",
    blobType: "BlockBlob",
    url: urlOf(account, f.container, f.blob),
    sequencer: sequencerOf(f.sequencer),
    storageDiagnostics: { batchId: randomUUID() },
  };
  if (f.etag !== undefined) data.eTag = f.etag;
  if (f.size !== undefined) data.contentLength = f.size;
  if (f.recursive !== undefined) data.recursive = f.recursive ? "true" : "false";
  if (f.destination !== undefined) {
    data.sourceUrl = data.url;
    data.destinationUrl = urlOf(account, f.container, f.destination);
  }
  const topic = `/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/rg/providers/Microsoft.Storage/storageAccounts/${account}`;
  const time = (f.time ?? new Date()).toISOString();
  const id = f.id ?? randomUUID();
  if (f.schema === "cloudevents") {
    return {
      specversion: "1.0",
      type: `Microsoft.Storage.${f.type}`,
      source: topic,
      subject,
      id,
      time,
      data,
    };
  }
  return {
    topic,
    subject,
    eventType: `Microsoft.Storage.${f.type}`,
    id,
    eventTime: time,
    data,
    dataVersion: "",
    metadataVersion: "1",
  };
};
