import { UsageError } from "@hsmfleet/core";
import { CONTAINER_NAME } from "./storage-target.js";

const RULE = "3-63 lowercase letters, digits and single hyphens";

/**
 * The containers of an export or import, checked before anything starts: the data container and
 * the log container (`--log-container`, default `<container>-logs`). Returns the log container's
 * name. A data container of 59 to 63 characters is valid but its default log container is not: the
 * error says so and names --log-container.
 */
export const jobLogContainer = (container: string, logContainer?: string): string => {
  if (!CONTAINER_NAME.test(container))
    throw new UsageError(
      `--container ${JSON.stringify(container)} is not a valid container name: ${RULE}`,
    );
  if (logContainer !== undefined) {
    if (!CONTAINER_NAME.test(logContainer))
      throw new UsageError(
        `--log-container ${JSON.stringify(logContainer)} is not a valid container name: ${RULE}`,
      );
    return logContainer;
  }
  const derived = `${container}-logs`;
  if (derived.length > 63)
    throw new UsageError(
      `the default log container "${derived}" would be ${derived.length} characters; Azure allows at most 63: give --log-container NAME (${RULE})`,
    );
  return derived;
};
