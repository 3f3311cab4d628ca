/**
 * HSMFLEET_SMALL_FILE_JOB=0 turns off the one-native-job path of small files (import --mode full
 * downloads and restores of released files that fit in one GET: fs smallFileJob/inspectFile) and
 * takes the step-by-step path instead: for a before/after in one benchmark run
 * (`HSMFLEET_BENCH_FULL_NATS=running,running-stepwise`), and as a way around a problem in the
 * native path. Default: on.
 */
export const SMALL_FILE_JOB_ENV = "HSMFLEET_SMALL_FILE_JOB";

export const smallFileJobsEnabled = (): boolean => process.env[SMALL_FILE_JOB_ENV] !== "0";
