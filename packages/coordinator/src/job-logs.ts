import { readFile } from "node:fs/promises";
import type { BlobContainer } from "@hsmfleet/blob";
import { errorMessage } from "@hsmfleet/core";
import type { Logger } from "@hsmfleet/telemetry";

/**
 * `<job>/summary.json` plus one `<job>/<name>` per local NDJSON file (errors, conflicts) in the
 * logging container, as AMLFS jobs write them. A failure here is logged, never fatal: the job's
 * outcome is already in its record.
 */
export const writeJobLogs = async (
  container: BlobContainer,
  jobId: string,
  summary: object,
  files: ReadonlyArray<readonly [name: string, localPath: string]>,
  logger: Logger | undefined,
): Promise<void> => {
  try {
    await container.putText(
      `${jobId}/summary.json`,
      `${JSON.stringify(summary, null, 2)}\n`,
      "application/json",
    );
    for (const [name, file] of files) {
      const body = file ? await readFile(file, "utf8").catch(() => "") : "";
      await container.putText(`${jobId}/${name}`, body, "application/x-ndjson");
    }
  } catch (err) {
    logger?.warn(
      { err: errorMessage(err), container: container.name },
      "could not write the job's logs to the logging container",
    );
  }
};
