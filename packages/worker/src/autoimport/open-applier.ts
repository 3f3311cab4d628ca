/**
 * Opens what an auto-import applies changes with: the import target (the import job's
 * ImportTarget, same options) and the HSM state reader its deletion rule needs.
 */
import { openHsmBackend } from "@hsmfleet/fs";
import type { BlobContainer } from "@hsmfleet/blob";
import { ImportTarget } from "../import/import-target.js";
import type { ImportTargetOptions } from "../import/import-target.js";
import { TargetHsm } from "../import/target-hsm.js";
import { BlobChangeApplier } from "./apply-blob-change.js";

export interface OpenApplierOptions extends ImportTargetOptions {
  enableDeletions?: boolean;
}

export const openBlobChangeApplier = async (
  options: OpenApplierOptions,
  container: BlobContainer,
): Promise<{ applier: BlobChangeApplier; target: ImportTarget }> => {
  const target = await ImportTarget.open(options);
  const hsm =
    options.backend === "posix"
      ? undefined
      : openHsmBackend({
          backend: options.backend === "lustre" ? "lustre" : "hsm-emulation",
          xattr: options.hsmXattr,
          lfsPath: options.lfsPath,
        });
  const states = hsm && new TargetHsm(target.root, hsm, options.archiveId);
  const applier = new BlobChangeApplier(target, container, {
    enableDeletions: options.enableDeletions ?? false,
    hasHsm: states !== undefined,
    hsmState: (rel, st) => (states ? states.state(rel, st) : Promise.resolve(undefined)),
  });
  return { applier, target };
};
