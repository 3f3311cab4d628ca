import { InvalidArgumentError, Option } from "commander";
import { errorMessage } from "@hsmfleet/core";
import type { JobLimits } from "@hsmfleet/protocol";
import { parseRate } from "../plan.js";
import { intArg } from "./context.js";

export interface JobLimitFlags {
  maxBandwidth?: number;
  maxRequestsPerSecond?: number;
}

const rateArg = (value: string): number => {
  try {
    return Math.max(1, Math.round(parseRate(value)));
  } catch (err) {
    throw new InvalidArgumentError(errorMessage(err));
  }
};

/** --max-bandwidth: a job's fleet-wide data rate cap (export, import, restore). */
export const maxBandwidthOption = (): Option =>
  new Option(
    "--max-bandwidth <rate>",
    "cap the job's data rate across the whole fleet (e.g. 5GiB/s, 40Gbps, 800MB/s); each live worker takes an equal share",
  ).argParser(rateArg);

/** --max-requests-per-second: a job's fleet-wide storage request rate cap. */
export const maxRequestsOption = (): Option =>
  new Option(
    "--max-requests-per-second <n>",
    "cap the job's storage requests per second across the whole fleet (every try counts); each live worker takes an equal share",
  ).argParser(intArg("--max-requests-per-second", 1));

export const jobLimitsFrom = (flags: JobLimitFlags): Partial<JobLimits> => ({
  maxBandwidthBytesPerSec: flags.maxBandwidth ?? 0,
  maxRequestsPerSec: flags.maxRequestsPerSecond ?? 0,
});
