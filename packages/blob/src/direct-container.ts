/**
 * The container itself without the Azure SDK: Get Container Properties (HEAD ?restype=container)
 * and Create Container (PUT ?restype=container, as the SDK's createIfNotExists sends it), through
 * the DirectBlobTransport that sends the direct Put Blob, Get Blob and List Blobs (same signing,
 * pacing and retries). A command's set-up checks its source and makes its containers with them:
 * the SDK's pipeline was the first request of the process there (docs/benchmarks.md, session 15,
 * "Container set-up without the SDK, at once").
 */
import type { DirectBlobTransport, DirectContainerAddress } from "./direct-put.js";
import { DIRECT_API_VERSION, DirectHttpError } from "./direct-put.js";
import { errorText } from "./direct-http.js";
import { receiveHead } from "./direct-head.js";

const CONTAINER_QUERY: ReadonlyArray<readonly [string, string]> = [["restype", "container"]];
const EMPTY_BODY = Buffer.alloc(0);

/**
 * Whether the container exists: true (2xx), false (404). Any other answer throws DirectHttpError
 * once the retry policy gave up (the Azure error code from x-ms-error-code: HEAD has no body).
 */
export const directContainerExists = async (
  transport: DirectBlobTransport,
  address: DirectContainerAddress,
  signal?: AbortSignal,
): Promise<boolean> => {
  const r = await transport.request(
    "HEAD",
    address,
    "",
    { "x-ms-version": DIRECT_API_VERSION },
    receiveHead,
    signal,
    undefined,
    CONTAINER_QUERY,
  );
  if (r.status === 404) return false;
  if (r.status < 200 || r.status >= 300)
    throw new DirectHttpError(r.status, r.headers.get("x-ms-error-code"), errorText(r.status, ""));
  return true;
};

/**
 * Creates the container: true when made (201), false when it exists (409
 * ContainerAlreadyExists); any other failure throws as the transport's PUTs do.
 */
export const directCreateContainer = async (
  transport: DirectBlobTransport,
  address: DirectContainerAddress,
  signal?: AbortSignal,
): Promise<boolean> => {
  try {
    await transport.put(
      address,
      "",
      CONTAINER_QUERY,
      { "content-length": "0", "x-ms-version": DIRECT_API_VERSION },
      EMPTY_BODY,
      signal,
    );
    return true;
  } catch (err) {
    if (
      err instanceof DirectHttpError &&
      err.statusCode === 409 &&
      err.code === "ContainerAlreadyExists"
    )
      return false;
    throw err;
  }
};
