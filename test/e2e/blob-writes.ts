import type { ContainerClient } from "@azure/storage-blob";
import { blobEvent } from "@hsmfleet/testkit";
import type { BlobEventFields } from "@hsmfleet/testkit";

/**
 * Writes blob `name` (text `body`) into `container` on the real Azurite and returns the
 * BlobCreated event Event Grid would send for that write (its ETag and size from the write).
 */
export const putWithEvent = async (
  container: ContainerClient,
  name: string,
  body: string,
  sequencer: number,
  options: { metadata?: Record<string, string>; schema?: BlobEventFields["schema"] } = {},
): Promise<Record<string, unknown>> => {
  const size = Buffer.byteLength(body);
  const r = await container
    .getBlockBlobClient(name)
    .upload(body, size, { metadata: options.metadata ?? {} });
  return blobEvent({
    type: "BlobCreated",
    container: container.containerName,
    blob: name,
    etag: r.etag!,
    size,
    sequencer,
    ...(options.schema !== undefined ? { schema: options.schema } : {}),
  });
};
