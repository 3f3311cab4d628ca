// Codecs of the HSM action pipeline's messages (action lists, results, progress, cancel).
import { hsmfleet } from "./gen/hsmfleet.js";
import { bytes } from "./codecs.js";
import { fromBigInt, fromNumber, toBigInt, toSafeNumber } from "./long.js";
import type {
  HsmAction,
  HsmActionList,
  HsmActionResult,
  HsmCancel,
  HsmItemStatus,
  HsmProgress,
} from "./hsm-messages.js";

const pb = hsmfleet.v1;
export const encodeHsmActionList = (m: HsmActionList): Uint8Array =>
  pb.HsmActionList.encode({
    ...m,
    flags: fromBigInt(m.flags),
    items: m.items.map((i) => ({
      ...i,
      extent: {
        offset: fromNumber(i.extent.offset, "extent.offset"),
        length: fromNumber(i.extent.length, "extent.length"),
      },
      cookie: fromBigInt(i.cookie),
      gid: fromBigInt(i.gid),
    })),
  }).finish();

export const decodeHsmActionList = (data: Uint8Array): HsmActionList => {
  const m = pb.HsmActionList.decode(data);
  return {
    jobId: m.jobId,
    listId: m.listId,
    archiveId: m.archiveId,
    fsname: m.fsname,
    flags: toBigInt(m.flags),
    items: m.items.map((i) => ({
      action: (i.action ?? 0) as HsmAction,
      fid: i.fid ?? "",
      dfid: i.dfid ?? "",
      extent: {
        offset: toSafeNumber(i.extent?.offset, "extent.offset"),
        length: toSafeNumber(i.extent?.length, "extent.length"),
      },
      cookie: toBigInt(i.cookie),
      gid: toBigInt(i.gid),
      data: bytes(i.data),
      path: bytes(i.path),
    })),
    partition: m.partition,
  };
};

export const encodeHsmActionResult = (m: HsmActionResult): Uint8Array =>
  pb.HsmActionResult.encode({
    ...m,
    items: m.items.map((i) => ({
      ...i,
      cookie: fromBigInt(i.cookie),
      bytes: fromNumber(i.bytes, "bytes"),
    })),
  }).finish();

export const decodeHsmActionResult = (data: Uint8Array): HsmActionResult => {
  const m = pb.HsmActionResult.decode(data);
  return {
    jobId: m.jobId,
    listId: m.listId,
    workerId: m.workerId,
    attempt: m.attempt,
    items: m.items.map((i) => ({
      fid: i.fid ?? "",
      cookie: toBigInt(i.cookie),
      action: (i.action ?? 0) as HsmAction,
      path: bytes(i.path),
      status: (i.status ?? 0) as HsmItemStatus,
      error: i.error ?? "",
      bytes: toSafeNumber(i.bytes, "bytes"),
    })),
  };
};

export const encodeHsmProgress = (m: HsmProgress): Uint8Array =>
  pb.HsmProgress.encode({
    ...m,
    bytesDone: fromNumber(m.bytesDone, "bytesDone"),
    bytesTotal: fromNumber(m.bytesTotal, "bytesTotal"),
  }).finish();

export const decodeHsmProgress = (data: Uint8Array): HsmProgress => {
  const m = pb.HsmProgress.decode(data);
  return {
    jobId: m.jobId,
    listId: m.listId,
    fid: m.fid,
    action: m.action as HsmAction,
    bytesDone: toSafeNumber(m.bytesDone, "bytesDone"),
    bytesTotal: toSafeNumber(m.bytesTotal, "bytesTotal"),
    workerId: m.workerId,
  };
};

export const encodeHsmCancel = (m: HsmCancel): Uint8Array =>
  pb.HsmCancel.encode({ fids: m.fids, cookie: fromBigInt(m.cookie), jobId: m.jobId }).finish();

export const decodeHsmCancel = (data: Uint8Array): HsmCancel => {
  const m = pb.HsmCancel.decode(data);
  return { fids: m.fids, cookie: toBigInt(m.cookie), jobId: m.jobId };
};
