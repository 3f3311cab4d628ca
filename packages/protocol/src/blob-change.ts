/**
 * Blob changes: what an Azure Blob Storage event (delivered by Event Grid to a Service Bus queue)
 * says happened to one blob or directory of a container. `hsmfleet autoimport` parses each
 * Service Bus message with `parseBlobEvents` (Event Grid schema or CloudEvents 1.0 schema, one
 * event or an array of them) and applies the changes with AMLFS auto-import semantics.
 *
 * Facts of the event schemas (learn.microsoft.com, "Azure Blob Storage as an Event Grid source"):
 * `subject` = `/blobServices/default/containers/<container>/blobs/<path>`; `data.sequencer` is an
 * opaque string whose lexicographic order is the order of the changes to one blob name (compare
 * after padding to equal length); HNS accounts add BlobRenamed, DirectoryCreated, DirectoryRenamed
 * (`data.sourceUrl`, `data.destinationUrl`) and DirectoryDeleted (`data.recursive`, a string
 * "true"/"false" in the Event Grid schema).
 *
 * Every message is untrusted input: a parser error names the field that is wrong.
 */

export type BlobChangeKind =
  "created" | "deleted" | "renamed" | "directoryCreated" | "directoryRenamed" | "directoryDeleted";

const EVENT_KINDS: Readonly<Record<string, BlobChangeKind>> = {
  "Microsoft.Storage.BlobCreated": "created",
  "Microsoft.Storage.BlobDeleted": "deleted",
  "Microsoft.Storage.BlobRenamed": "renamed",
  "Microsoft.Storage.DirectoryCreated": "directoryCreated",
  "Microsoft.Storage.DirectoryRenamed": "directoryRenamed",
  "Microsoft.Storage.DirectoryDeleted": "directoryDeleted",
};

export interface BlobChange {
  /** The event's id (Event Grid `id` / CloudEvents `id`). */
  readonly eventId: string;
  readonly kind: BlobChangeKind;
  /** Which schema it came in: `eventgrid` or `cloudevents`. */
  readonly schema: "eventgrid" | "cloudevents";
  readonly container: string;
  /** The blob (or directory) name in the container: '/'-separated, no leading '/'. */
  readonly blob: string;
  /** Renames: the new name (same container). */
  readonly destination?: string;
  /** Orders the changes of one blob name (see compareSequencers). */
  readonly sequencer: string;
  readonly etag?: string;
  readonly contentLength?: number;
  /** Directory deletions (and HNS blob deletions): the whole subtree. */
  readonly recursive?: boolean;
  /** When the change happened (ISO 8601). */
  readonly eventTime: string;
}

/** An event that is not a blob change of interest (an unknown type, a subscription validation). */
export class BlobEventError extends Error {
  constructor(message: string) {
    super(`blob event: ${message}`);
    this.name = "BlobEventError";
  }
}

/** Lexicographic order of two sequencers after left-padding to equal length. */
export const compareSequencers = (a: string, b: string): number => {
  const n = Math.max(a.length, b.length);
  const pa = a.padStart(n, "0");
  const pb = b.padStart(n, "0");
  return pa < pb ? -1 : pa > pb ? 1 : 0;
};

const SUBJECT_PREFIX = "/blobServices/default/containers/";

/** `(container, blob)` of a subject `/blobServices/default/containers/<c>/blobs/<path>`. */
export const parseBlobSubject = (subject: string): { container: string; blob: string } => {
  if (!subject.startsWith(SUBJECT_PREFIX))
    throw new BlobEventError(`subject ${JSON.stringify(subject)} is not a blob subject`);
  const rest = subject.slice(SUBJECT_PREFIX.length);
  const at = rest.indexOf("/blobs/");
  if (at <= 0) throw new BlobEventError(`subject ${JSON.stringify(subject)} names no blob`);
  const blob = rest.slice(at + "/blobs/".length);
  if (blob === "") throw new BlobEventError(`subject ${JSON.stringify(subject)} names no blob`);
  return { container: rest.slice(0, at), blob };
};

/** `(container, blob)` of a blob or DFS URL (`https://acct.blob…/container/dir/name`). */
export const parseBlobUrl = (url: string): { container: string; blob: string } => {
  let pathname: string;
  try {
    pathname = new URL(url).pathname;
  } catch {
    throw new BlobEventError(`${JSON.stringify(url)} is not a URL`);
  }
  const segments = pathname.split("/").slice(1);
  const container = decodeURIComponent(segments.shift() ?? "");
  const blob = segments.map((s) => decodeURIComponent(s)).join("/");
  if (container === "" || blob === "")
    throw new BlobEventError(`URL ${JSON.stringify(url)} names no blob`);
  return { container, blob };
};

const asRecord = (v: unknown, what: string): Record<string, unknown> => {
  if (typeof v !== "object" || v === null || Array.isArray(v))
    throw new BlobEventError(`${what} is not an object`);
  return v as Record<string, unknown>;
};
const text = (r: Record<string, unknown>, field: string): string => {
  const v = r[field];
  if (typeof v !== "string" || v === "")
    throw new BlobEventError(`field ${field} is missing or not a string`);
  return v;
};
const optionalText = (r: Record<string, unknown>, field: string): string | undefined => {
  const v = r[field];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== "string") throw new BlobEventError(`field ${field} is not a string`);
  return v;
};

/** One event object (either schema) as a change. */
export const parseBlobEvent = (value: unknown): BlobChange => {
  const e = asRecord(value, "event");
  const cloud = typeof e.specversion === "string";
  const type = text(e, cloud ? "type" : "eventType");
  const kind = EVENT_KINDS[type];
  if (!kind) throw new BlobEventError(`event type ${JSON.stringify(type)} is not a blob change`);
  const data = asRecord(e.data, "field data");
  const { container, blob } = parseBlobSubject(text(e, "subject"));
  const sequencer = text(data, "sequencer");
  if (!/^[0-9A-Fa-f]{1,64}$/.test(sequencer))
    throw new BlobEventError("field data.sequencer is not hexadecimal");
  const change: {
    -readonly [K in keyof BlobChange]: BlobChange[K];
  } = {
    eventId: text(e, "id"),
    kind,
    schema: cloud ? "cloudevents" : "eventgrid",
    container,
    blob,
    sequencer,
    eventTime: text(e, cloud ? "time" : "eventTime"),
  };
  const etag = optionalText(data, "eTag") ?? optionalText(data, "etag");
  if (etag !== undefined) change.etag = etag;
  if (data.contentLength !== undefined) {
    const n = data.contentLength;
    if (typeof n !== "number" || !Number.isSafeInteger(n) || n < 0)
      throw new BlobEventError("field data.contentLength is not a size");
    change.contentLength = n;
  }
  if (data.recursive !== undefined && data.recursive !== null) {
    const r = data.recursive;
    if (r === true || r === "true" || r === "True") change.recursive = true;
    else if (r === false || r === "false" || r === "False") change.recursive = false;
    else throw new BlobEventError("field data.recursive is not true or false");
  }
  if (kind === "renamed" || kind === "directoryRenamed") {
    const source = parseBlobUrl(text(data, "sourceUrl"));
    const destination = parseBlobUrl(text(data, "destinationUrl"));
    if (source.container !== container || destination.container !== container) {
      throw new BlobEventError("a rename across containers is not a change of one container");
    }
    change.blob = source.blob;
    change.destination = destination.blob;
  }
  return change;
};

/**
 * The changes in one Service Bus message body: an event object or an array of them, given as a
 * parsed value, a JSON string or its bytes.
 */
export const parseBlobEvents = (body: unknown): BlobChange[] => {
  let value = body;
  if (value instanceof Uint8Array) value = new TextDecoder("utf-8", { fatal: true }).decode(value);
  if (typeof value === "string") {
    try {
      value = JSON.parse(value) as unknown;
    } catch (err) {
      throw new BlobEventError(`body is not JSON: ${(err as Error).message}`);
    }
  }
  return Array.isArray(value) ? value.map(parseBlobEvent) : [parseBlobEvent(value)];
};

export const encodeBlobChange = (change: BlobChange): Uint8Array =>
  new TextEncoder().encode(JSON.stringify(change));

/** Decode a change carried as a work item (untrusted: every field is checked again). */
export const decodeBlobChange = (data: Uint8Array): BlobChange => {
  let value: unknown;
  try {
    value = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(data));
  } catch (err) {
    throw new BlobEventError(`change is not JSON: ${(err as Error).message}`);
  }
  const r = asRecord(value, "change");
  const kind = text(r, "kind");
  if (!Object.values(EVENT_KINDS).includes(kind as BlobChangeKind))
    throw new BlobEventError("field kind is not a change kind");
  if (r.schema !== "eventgrid" && r.schema !== "cloudevents")
    throw new BlobEventError("field schema is wrong");
  for (const f of ["eventId", "container", "blob", "sequencer", "eventTime"]) text(r, f);
  optionalText(r, "destination");
  optionalText(r, "etag");
  if (
    r.contentLength !== undefined &&
    !(typeof r.contentLength === "number" && Number.isSafeInteger(r.contentLength))
  ) {
    throw new BlobEventError("field contentLength is not a size");
  }
  if (r.recursive !== undefined && typeof r.recursive !== "boolean")
    throw new BlobEventError("field recursive is not a boolean");
  return r as unknown as BlobChange;
};
