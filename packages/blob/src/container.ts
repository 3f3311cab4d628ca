import { createHash } from "node:crypto";
import type { BlockBlobClient, BlockBlobUploadOptions, ContainerClient } from "@azure/storage-blob";
import { UsageError, errorMessage } from "@hsmfleet/core";
import { blockCrc64 } from "./block-checksum.js";
import {
  containerAddress,
  directTransportOf,
  type DirectBlobTransport,
  type DirectContainerAddress,
} from "./direct-put.js";
import { directListPage, type DirectListPage } from "./direct-list.js";
import { directBlobProperties } from "./direct-head.js";
import { directContainerExists, directCreateContainer } from "./direct-container.js";
import { BlobOperationError, httpErrorInfo, type BlobOperation } from "./errors.js";

/** One entry of a hierarchical listing level. */
export type BlobLevelEntry =
  | {
      kind: "blob";
      name: string;
      size: number;
      /** Keys as stored (listing keeps their case). */
      metadata: Record<string, string>;
      contentMD5?: Buffer;
      lastModified: Date;
      etag?: string;
    }
  | { kind: "prefix"; name: string };

export interface BlobProperties {
  size: number;
  /** Keys in lower case: Node lower-cases the x-ms-meta-* response headers. */
  metadata: Record<string, string>;
  contentMD5?: Buffer;
  lastModified?: Date;
  etag?: string;
}

/** Printable local path for error messages (see displayPath in core). */
interface LocalPathOption {
  localPath?: string;
}

const md5Of = (body: Buffer): Buffer => createHash("md5").update(body).digest();

/** Block blob clients kept per container (files with blocks in flight; see #blockClients). */
const BLOCK_CLIENTS_MAX = 64;

/**
 * One container, with the operations the data mover needs. Every error is a BlobOperationError
 * naming the operation, the blob and the container; secrets never appear in messages.
 */
export class BlobContainer {
  readonly client: ContainerClient;
  readonly name: string;
  /** Put Blob without the SDK (direct-put.ts), when the client came from createBlobServiceClient. */
  readonly #direct: { transport: DirectBlobTransport; address: DirectContainerAddress } | undefined;
  /**
   * Clients of the blobs whose blocks are being staged: making one parses and rebuilds the URL,
   * which cost ~3% of a worker's main thread when made per 8 MiB block.
   */
  readonly #blockClients = new Map<string, BlockBlobClient>();

  constructor(client: ContainerClient) {
    this.client = client;
    this.name = client.containerName;
    // `pipeline` is protected in the SDK's typings: the key of the registered direct transport.
    const transport = directTransportOf((client as unknown as { pipeline: unknown }).pipeline);
    const address = transport !== undefined ? containerAddress(client.url) : undefined;
    this.#direct =
      transport !== undefined && address !== undefined && transport.supports(address)
        ? { transport, address }
        : undefined;
  }

  /** Whether Put Blob goes out without the SDK (direct-put.ts). */
  get directPutBlob(): boolean {
    return this.#direct !== undefined;
  }

  /**
   * The direct transport and this container's address (direct-put.ts, direct-get.ts), when
   * requests can go out without the SDK; download.ts sends its GETs through it.
   */
  get direct(): { transport: DirectBlobTransport; address: DirectContainerAddress } | undefined {
    return this.#direct;
  }

  /** Container URL without its query (a SAS stays out of messages). */
  get location(): string {
    const url = new URL(this.client.url);
    return `${url.origin}${url.pathname}`;
  }

  #fail(
    operation: BlobOperation,
    err: unknown,
    blobName?: string,
    localPath?: string,
  ): BlobOperationError {
    if (err instanceof BlobOperationError) return err;
    return new BlobOperationError(
      operation,
      { path: localPath, blobName, container: this.name },
      err,
    );
  }

  /**
   * Creates the container if it is missing. A credential that may not create containers (403,
   * e.g. a container SAS) is accepted when the container can be listed. Errors name the container
   * and the account URL, with a hint for 403 and unknown accounts.
   */
  async ensureExists(): Promise<void> {
    try {
      if (this.#direct !== undefined)
        await directCreateContainer(this.#direct.transport, this.#direct.address);
      else await this.client.createIfNotExists();
      return;
    } catch (err) {
      const info = httpErrorInfo(err);
      if (info.statusCode === 403 && (await this.#listable())) return;
      let hint = "";
      if (info.statusCode === 403) {
        hint =
          "; the credential may not create or list this container: check the account key, the SAS " +
          "(permissions racwl, expiry se=) or the role assignment (Storage Blob Data Contributor)";
      } else if (info.statusCode === 404 || /ENOTFOUND|EAI_AGAIN/.test(errorMessage(err))) {
        hint = "; check the account name and endpoint";
      }
      throw new BlobOperationError(
        "create-container",
        { container: this.name, location: this.location },
        err,
        { hint },
      );
    }
  }

  /**
   * Whether the container exists (Get Container Properties: 404 is false). Without the SDK when the
   * direct transport can reach it; errors as BlobOperationError ("container-properties").
   */
  async exists(): Promise<boolean> {
    try {
      if (this.#direct !== undefined)
        return await directContainerExists(this.#direct.transport, this.#direct.address);
      return await this.client.exists();
    } catch (err) {
      throw this.#fail("container-properties", err);
    }
  }

  async #listable(): Promise<boolean> {
    try {
      await this.client.listBlobsFlat().byPage({ maxPageSize: 1 }).next();
      return true;
    } catch {
      return false;
    }
  }

  /**
   * One level of a hierarchical listing ('/' delimiter) under `prefix` ("" or ending in '/'),
   * with metadata. Paged (`pageSize` = maxresults per request, service default 5000); each page
   * yields its prefixes, then its blobs — or, with `nameOrder`, both merged in name order (pages
   * are consecutive name ranges, so the whole level is then in name order: "d" < "d-x" < "d/").
   * A directory stub blob "d" and the prefix "d/" are separate entries.
   */
  async *listLevel(
    prefix: string,
    options: { abortSignal?: AbortSignal; pageSize?: number; nameOrder?: boolean } = {},
  ): AsyncIterable<BlobLevelEntry> {
    if (options.nameOrder === true) {
      yield* inNameOrder(this.listLevel(prefix, { ...options, nameOrder: false }));
      return;
    }
    if (prefix !== "" && !prefix.endsWith("/")) {
      throw new UsageError(`listing prefix "${prefix}" must be empty or end with '/'`);
    }
    const direct = this.#direct;
    if (direct !== undefined && process.env["HSMFLEET_DIRECT_LIST"] !== "0") {
      let marker: string | undefined;
      do {
        let page: DirectListPage;
        try {
          page = await directListPage(
            direct.transport,
            direct.address,
            prefix,
            marker,
            options.pageSize,
            options.abortSignal,
          );
        } catch (err) {
          throw this.#fail("list-blobs", err, prefix === "" ? "(root)" : prefix);
        }
        for (const name of page.prefixes) yield { kind: "prefix", name };
        for (const b of page.blobs) {
          const entry: BlobLevelEntry = { kind: "blob", ...b };
          // Listings give the ETag bare (0x8D…); headers and If-Match use the quoted form.
          if (b.etag !== undefined) entry.etag = b.etag.startsWith('"') ? b.etag : `"${b.etag}"`;
          yield entry;
        }
        marker = page.nextMarker;
      } while (marker !== undefined && marker !== "");
      return;
    }
    const pages = this.client
      .listBlobsByHierarchy("/", {
        prefix,
        includeMetadata: true,
        ...(options.abortSignal ? { abortSignal: options.abortSignal } : {}),
      })
      .byPage(options.pageSize !== undefined ? { maxPageSize: options.pageSize } : {});
    try {
      for await (const page of pages) {
        for (const p of page.segment.blobPrefixes ?? []) yield { kind: "prefix", name: p.name };
        for (const item of page.segment.blobItems) {
          const md5 = item.properties.contentMD5;
          const entry: BlobLevelEntry = {
            kind: "blob",
            name: item.name,
            size: item.properties.contentLength ?? 0,
            metadata: { ...(item.metadata ?? {}) },
            lastModified: item.properties.lastModified,
          };
          if (md5 !== undefined && md5.length > 0) entry.contentMD5 = Buffer.from(md5);
          // Listings give the ETag bare (0x8D…); headers and If-Match use the quoted form.
          const etag = item.properties.etag;
          if (etag) entry.etag = etag.startsWith('"') ? etag : `"${etag}"`;
          yield entry;
        }
      }
    } catch (err) {
      throw this.#fail("list-blobs", err, prefix === "" ? "(root)" : prefix);
    }
  }

  /**
   * Put Blob: one request with the body, its MD5 as Content-MD5 (checked by the service) and as
   * the blob's stored Content-MD5 (x-ms-blob-content-md5), and the metadata. Sent directly
   * (direct-put.ts) when the client came from createBlobServiceClient, else through the SDK.
   */
  async putBlob(
    name: string,
    body: Buffer,
    options: {
      metadata: Record<string, string>;
      abortSignal?: AbortSignal;
      contentType?: string;
      /** MD5 of `body` when the caller already has it. */
      contentMD5?: Buffer;
    } & LocalPathOption,
  ): Promise<void> {
    const md5 = options.contentMD5 ?? md5Of(body);
    if (this.#direct !== undefined) {
      try {
        await this.#direct.transport.putBlob(this.#direct.address, name, body, {
          metadata: options.metadata,
          contentMD5: md5,
          contentType: options.contentType,
          abortSignal: options.abortSignal,
        });
        return;
      } catch (err) {
        throw this.#fail("put-blob", err, name, options.localPath);
      }
    }
    // BlockBlobUploadOptions does not declare transactionalContentMD5, but upload() passes it on
    // as the Content-MD5 request header (checksum algorithm "Customized").
    const uploadOptions: BlockBlobUploadOptions & { transactionalContentMD5: Uint8Array } = {
      metadata: options.metadata,
      blobHTTPHeaders: {
        blobContentMD5: md5,
        ...(options.contentType !== undefined ? { blobContentType: options.contentType } : {}),
      },
      transactionalContentMD5: md5,
      contentChecksumAlgorithm: "Customized",
      ...(options.abortSignal ? { abortSignal: options.abortSignal } : {}),
    };
    try {
      await this.client.getBlockBlobClient(name).upload(body, body.length, uploadOptions);
    } catch (err) {
      throw this.#fail("put-blob", err, name, options.localPath);
    }
  }

  /**
   * Put Block with a transactional checksum the service verifies before it keeps the block:
   * `contentCrc64` (x-ms-content-crc64, the 8 bytes of @hsmfleet/fs's crc64Bytes) or `contentMD5`
   * (Content-MD5) when the caller has one, else the block's CRC64, computed natively on the libuv
   * threadpool (about 10 GB/s per core, against ~0.7 GB/s for MD5). Never both: the service
   * refuses a request that carries both headers. Sent directly (direct-put.ts) like Put Blob when
   * the client came from createBlobServiceClient, else through the SDK.
   */
  async stageBlock(
    name: string,
    blockId: string,
    body: Buffer,
    options: {
      abortSignal?: AbortSignal;
      contentMD5?: Buffer;
      contentCrc64?: Buffer;
    } & LocalPathOption = {},
  ): Promise<void> {
    try {
      const checksum =
        options.contentMD5 !== undefined && options.contentCrc64 === undefined
          ? { transactionalContentMD5: options.contentMD5 }
          : { transactionalContentCrc64: options.contentCrc64 ?? (await blockCrc64(body)) };
      if (this.#direct !== undefined) {
        await this.#direct.transport.putBlock(this.#direct.address, name, blockId, body, {
          ...(checksum.transactionalContentMD5 !== undefined
            ? { contentMD5: checksum.transactionalContentMD5 }
            : { contentCrc64: checksum.transactionalContentCrc64 }),
          abortSignal: options.abortSignal,
        });
        return;
      }
      await this.#blockClient(name).stageBlock(blockId, body, body.length, {
        ...checksum,
        contentChecksumAlgorithm: "Customized",
        ...(options.abortSignal ? { abortSignal: options.abortSignal } : {}),
      });
    } catch (err) {
      throw this.#fail("stage-block", err, name, options.localPath);
    }
  }

  #blockClient(name: string): BlockBlobClient {
    let client = this.#blockClients.get(name);
    if (client === undefined) {
      if (this.#blockClients.size >= BLOCK_CLIENTS_MAX) this.#blockClients.clear();
      client = this.client.getBlockBlobClient(name);
      this.#blockClients.set(name, client);
    }
    return client;
  }

  /** Put Block List: commits the blocks in order, with metadata and the whole-file MD5. */
  async commitBlockList(
    name: string,
    blockIds: string[],
    options: {
      metadata: Record<string, string>;
      contentMD5?: Buffer;
      abortSignal?: AbortSignal;
    } & LocalPathOption,
  ): Promise<void> {
    try {
      const client = this.#blockClients.get(name) ?? this.client.getBlockBlobClient(name);
      this.#blockClients.delete(name); // the file's blocks are done
      await client.commitBlockList(blockIds, {
        metadata: options.metadata,
        ...(options.contentMD5 ? { blobHTTPHeaders: { blobContentMD5: options.contentMD5 } } : {}),
        ...(options.abortSignal ? { abortSignal: options.abortSignal } : {}),
      });
    } catch (err) {
      throw this.#fail("commit-block-list", err, name, options.localPath);
    }
  }

  /** A small text blob (logging-container files), with MD5. */
  async putText(
    name: string,
    text: string,
    contentType = "text/plain; charset=utf-8",
  ): Promise<void> {
    await this.putBlob(name, Buffer.from(text, "utf8"), { metadata: {}, contentType });
  }

  /** Size, metadata (lower-case keys) and stored MD5; undefined when the blob does not exist. */
  async getProperties(name: string): Promise<BlobProperties | undefined> {
    const direct = this.#direct;
    if (direct !== undefined && process.env["HSMFLEET_DIRECT_HEAD"] !== "0") {
      try {
        return await directBlobProperties(direct.transport, direct.address, name);
      } catch (err) {
        throw this.#fail("get-properties", err, name);
      }
    }
    try {
      const p = await this.client.getBlobClient(name).getProperties();
      const out: BlobProperties = {
        size: p.contentLength ?? 0,
        metadata: { ...(p.metadata ?? {}) },
      };
      if (p.contentMD5 !== undefined && p.contentMD5.length > 0) {
        out.contentMD5 = Buffer.from(p.contentMD5);
      }
      if (p.lastModified !== undefined) out.lastModified = p.lastModified;
      if (p.etag !== undefined) out.etag = p.etag;
      return out;
    } catch (err) {
      if (httpErrorInfo(err).statusCode === 404) return undefined;
      throw this.#fail("get-properties", err, name);
    }
  }

  /** Whole blob into memory (small blobs, tests). */
  async download(name: string): Promise<Buffer> {
    try {
      return await this.client.getBlobClient(name).downloadToBuffer();
    } catch (err) {
      throw this.#fail("download", err, name);
    }
  }

  /** Deletes the blob; false when it did not exist. */
  async deleteBlob(name: string): Promise<boolean> {
    try {
      return (await this.client.getBlobClient(name).deleteIfExists()).succeeded;
    } catch (err) {
      throw this.#fail("delete-blob", err, name);
    }
  }

  /** Replaces the blob's metadata in place (no data copied); false when the blob does not exist. */
  async setMetadata(name: string, metadata: Record<string, string>): Promise<boolean> {
    try {
      await this.client.getBlobClient(name).setMetadata(metadata);
      return true;
    } catch (err) {
      if (httpErrorInfo(err).statusCode === 404) return false;
      throw this.#fail("set-metadata", err, name);
    }
  }

  /**
   * Server-side copy of `from` to `to` in this container (Copy Blob: the service moves the bytes,
   * nothing passes through this host; within one account it is authorized by this client's
   * credential). Data, Content-MD5 and metadata are copied. False when `from` does not exist.
   */
  async copyBlob(from: string, to: string, abortSignal?: AbortSignal): Promise<boolean> {
    try {
      const source = this.client.getBlobClient(from).url;
      const poller = await this.client
        .getBlobClient(to)
        .beginCopyFromURL(source, { ...(abortSignal ? { abortSignal } : {}), intervalInMs: 200 });
      await poller.pollUntilDone();
      return true;
    } catch (err) {
      if (httpErrorInfo(err).statusCode === 404) return false;
      throw this.#fail("copy-blob", err, to);
    }
  }

  /** Every blob name under `prefix` (flat listing, no metadata), page by page. */
  async *listNames(prefix: string, abortSignal?: AbortSignal): AsyncIterable<string> {
    try {
      for await (const item of this.client.listBlobsFlat({
        prefix,
        ...(abortSignal ? { abortSignal } : {}),
      })) {
        yield item.name;
      }
    } catch (err) {
      throw this.#fail("list-blobs", err, prefix === "" ? "(root)" : prefix);
    }
  }
}

/**
 * A level listing's pages (each its prefixes, then its blobs) merged into name order: a page is
 * held until its first blob after a prefix shows that the page's prefixes have all been given
 * (the next page starts with prefixes again only after a blob, or the listing ends).
 */
async function* inNameOrder(entries: AsyncIterable<BlobLevelEntry>): AsyncIterable<BlobLevelEntry> {
  let prefixes: string[] = [];
  let p = 0;
  let inBlobs = false;
  for await (const e of entries) {
    if (e.kind === "prefix") {
      if (inBlobs) {
        // A new page: what is left of the last one's prefixes sorts after all its blobs.
        for (; p < prefixes.length; p++) yield { kind: "prefix", name: prefixes[p]! };
        prefixes = [];
        p = 0;
        inBlobs = false;
      }
      prefixes.push(e.name);
      continue;
    }
    inBlobs = true;
    for (; p < prefixes.length && prefixes[p]! < e.name; p++)
      yield { kind: "prefix", name: prefixes[p]! };
    yield e;
  }
  for (; p < prefixes.length; p++) yield { kind: "prefix", name: prefixes[p]! };
}
