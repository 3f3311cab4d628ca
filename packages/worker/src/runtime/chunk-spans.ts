import type { Chunk } from "@hsmfleet/protocol";
import { startStep } from "@hsmfleet/telemetry";
import type { Attributes, TracedStep } from "@hsmfleet/telemetry";

/** What a chunk's spans say about it: its place in the file (the path is added redacted). */
export const chunkSpanAttributes = (chunk: Chunk): Attributes => ({
  "hsmfleet.chunk.index": chunk.index,
  "hsmfleet.chunk.count": chunk.count,
  "hsmfleet.chunk.offset": chunk.offset,
  "hsmfleet.chunk.length": chunk.length,
  "hsmfleet.chunk.blocks": chunk.blockCount,
  "hsmfleet.file.size": chunk.fileSize,
});

/**
 * A step of a chunk item ("export chunk": its byte range moving; "export commit": the block list
 * committed by the chunk that completed the file; "import chunk", "import finalize") as a child of
 * the chunk's item span. `size` decides, as for whole files, whether it gets a span even when it
 * succeeds (HSMFLEET_TRACE_FILE_MIN_BYTES); failures always do.
 */
export const startChunkStep = (msg: object, name: string, chunk: Chunk, size: number): TracedStep =>
  startStep(msg, name, {
    jobId: chunk.jobId,
    path: chunk.path,
    size,
    attributes: chunkSpanAttributes(chunk),
  });
