import $protobuf from "protobufjs/minimal.js";
import type { JobKind, JobState } from "./messages.js";

/** The few fields of a JobStatus record a watcher needs to decide whether it cares. */
export interface JobStatusPeek {
  kind: JobKind | 0;
  state: JobState | 0;
}

// Field numbers in proto/hsmfleet/v1/job.proto.
const STATUS_SPEC = 1;
const STATUS_STATE = 2;
const SPEC_KIND = 2;
const VARINT = 0;
const LENGTH_DELIMITED = 2;

/**
 * The job kind and state of an encoded JobStatus without decoding the rest (its spec, counters,
 * outstanding ids and error samples: ~0.3 ms per record). A worker watching every job record for
 * the few of its kind skips the others with this — every command's in-process workers replay the
 * whole job history at start, so its cost grew with the number of past jobs (issue 17). A field
 * that is absent (proto3 default) reads as 0. Throws, as decode does, on a malformed record.
 */
export const peekJobStatus = (data: Uint8Array): JobStatusPeek => {
  const reader = $protobuf.Reader.create(data);
  let kind = 0;
  let state = 0;
  let seen = 0;
  while (reader.pos < reader.len && seen < 2) {
    const tag = reader.uint32();
    const field = tag >>> 3;
    const wire = tag & 7;
    if (field === STATUS_STATE && wire === VARINT) {
      state = reader.int32();
      seen++;
    } else if (field === STATUS_SPEC && wire === LENGTH_DELIMITED) {
      const end = reader.uint32() + reader.pos;
      while (reader.pos < end) {
        const specTag = reader.uint32();
        if (specTag >>> 3 === SPEC_KIND && (specTag & 7) === VARINT) {
          kind = reader.int32();
          reader.pos = end;
        } else {
          reader.skipType(specTag & 7);
        }
      }
      seen++;
    } else {
      reader.skipType(wire);
    }
  }
  return { kind: kind as JobKind | 0, state: state as JobState | 0 };
};
