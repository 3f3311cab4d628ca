import { DEFAULT_HSM_XATTR } from "@hsmfleet/core";

import type { HsmBackend, OpenHsmBackendOptions } from "./hsm-backend.js";
import { HsmEmulationBackend } from "./hsm-emulation-backend.js";
import { LustreHsmBackend } from "./lustre-backend.js";

/** The backend `options.backend` names. */
export const openHsmBackend = (options: OpenHsmBackendOptions): HsmBackend => {
  switch (options.backend) {
    case "hsm-emulation":
      return new HsmEmulationBackend({ xattr: options.xattr ?? DEFAULT_HSM_XATTR });
    case "lustre":
      return new LustreHsmBackend({ xattr: options.xattr, lfsPath: options.lfsPath });
    default:
      throw new TypeError(`unknown HSM backend ${JSON.stringify(options.backend)}`);
  }
};
