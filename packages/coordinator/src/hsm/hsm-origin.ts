import { HSM_REQUEST_NAMES } from "@hsmfleet/core";
import type { HsmRequestName } from "@hsmfleet/core";

/**
 * Who started an HSM job and which request it carries: the job's `createdBy` reads
 * `user@host hsm <request>` (the request has no field of its own in the job spec).
 */
export const hsmJobOrigin = (spec: {
  createdBy: string;
}): { request: HsmRequestName | "unknown"; createdBy: string } => {
  const m = / hsm (\w+)$/.exec(spec.createdBy);
  const request = HSM_REQUEST_NAMES.find((r) => r === m?.[1]);
  return request === undefined
    ? { request: "unknown", createdBy: spec.createdBy }
    : { request, createdBy: spec.createdBy.slice(0, m!.index) };
};
