import { metrics } from "@opentelemetry/api";
import type {
  Attributes,
  Counter,
  Histogram,
  MeterProvider,
  ObservableResult,
  UpDownCounter,
} from "@opentelemetry/api";
import { metricsEnabled } from "./state.js";
import { SERVICE_VERSION } from "./version.js";

/** Direction of a transfer: export = file system → blob; import/restore = blob → file system. */
export type Direction = "export" | "import" | "restore";

/** One series of a SummedCounter: add to `value`. */
export interface CounterSeries {
  value: number;
}

/**
 * A counter summed by hsmfleet and reported at collection time through an observable instrument.
 * For the per-file path: adding is one number addition on a series object (found by nested map
 * lookups of the attribute values, no key built), where a synchronous OpenTelemetry counter hashes
 * its attribute set on every add (JSON of the sorted attributes; with two readers, Prometheus and
 * OTLP, twice): that hashing was most of what telemetry cost per small file (docs/benchmarks.md).
 * Values are cumulative from the moment the meter provider was installed.
 */
export class SummedCounter {
  readonly #names: readonly [string, string] | readonly [string, string, string];
  /** Series by attribute values, nested (a → b → c): no key string is built per add. */
  readonly #tree = new Map<string, Map<string, Map<string, Series>>>();
  readonly #all: Series[] = [];

  /** `names`: the attribute names, two or three, in the order `series` takes their values. */
  constructor(names: readonly [string, string] | readonly [string, string, string]) {
    this.#names = names;
  }

  /** The series with these attribute values (`c` only for a counter with three attributes). */
  series(a: string, b: string, c = ""): CounterSeries {
    let bs = this.#tree.get(a);
    if (bs === undefined) this.#tree.set(a, (bs = new Map<string, Map<string, Series>>()));
    let cs = bs.get(b);
    if (cs === undefined) bs.set(b, (cs = new Map<string, Series>()));
    let s = cs.get(c);
    if (s === undefined) {
      const [na, nb, nc] = this.#names;
      const attributes: Attributes =
        nc === undefined ? { [na]: a, [nb]: b } : { [na]: a, [nb]: b, [nc]: c };
      cs.set(c, (s = { value: 0, attributes }));
      this.#all.push(s);
    }
    return s;
  }

  /** Reports every series (an observable instrument's callback). */
  observe(result: ObservableResult): void {
    for (const s of this.#all) result.observe(s.value, s.attributes);
  }
}

interface Series extends CounterSeries {
  readonly attributes: Attributes;
}

/** A series that counts into nothing (metrics off). */
const nowhere = (): CounterSeries => ({ value: 0 });

/**
 * hsmfleet's instruments. OpenTelemetry names; the Prometheus endpoint shows them with dots as
 * underscores plus unit and _total suffixes (docs/observability.md lists both). The three the
 * per-file path touches (bytes, files, transfers in flight) are summed by hsmfleet and observed at
 * collection (SummedCounter); the others are synchronous instruments, used per work item or per
 * error, and the duration histogram per file (one attribute, an attribute object per direction).
 */
export interface Instruments {
  /** Whether a meter provider is installed (else every instrument is a no-op: skip the work). */
  enabled: boolean;
  /** hsmfleet.transfer.bytes (direction, job). */
  bytes: SummedCounter;
  /** hsmfleet.transfer.files (direction, job, outcome). */
  files: SummedCounter;
  errors: Counter;
  /** hsmfleet.transfer.in_flight (no attributes): the one series. */
  transfersInFlight: CounterSeries;
  transferDuration: Histogram;
  itemsInFlight: UpDownCounter;
  items: Counter;
  itemDuration: Histogram;
}

let cached: { provider: MeterProvider; instruments: Instruments } | undefined;

/** Instruments of the current global meter provider (no-ops until startTelemetry installs one). */
export const instruments = (): Instruments => {
  const provider = metrics.getMeterProvider();
  if (cached?.provider === provider) return cached.instruments;
  const enabled = metricsEnabled();
  const meter = provider.getMeter("hsmfleet", SERVICE_VERSION);
  const bytes = new SummedCounter(["direction", "job"]);
  const files = new SummedCounter(["direction", "job", "outcome"]);
  const transfersInFlight = enabled ? { value: 0 } : nowhere();
  meter
    .createObservableCounter("hsmfleet.transfer.bytes", {
      unit: "By",
      description: "Bytes moved, by direction and job (counted as blocks complete)",
    })
    .addCallback((r) => bytes.observe(r));
  meter
    .createObservableCounter("hsmfleet.transfer.files", {
      description:
        "Entries transferred (files, directories, symlinks), by direction, job and outcome",
    })
    .addCallback((r) => files.observe(r));
  meter
    .createObservableUpDownCounter("hsmfleet.transfer.in_flight", {
      description: "File transfers in progress",
    })
    .addCallback((r) => r.observe(transfersInFlight.value));
  const instruments: Instruments = {
    enabled,
    bytes,
    files,
    errors: meter.createCounter("hsmfleet.errors", {
      description: "Errors by kind (the operation that failed) and code",
    }),
    transfersInFlight,
    transferDuration: meter.createHistogram("hsmfleet.transfer.duration", {
      unit: "s",
      description: "Time to transfer one file",
      advice: { explicitBucketBoundaries: [0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300] },
    }),
    itemsInFlight: meter.createUpDownCounter("hsmfleet.work_items.in_flight", {
      description: "Work items being handled (walk shards, transfer batches), by kind",
    }),
    items: meter.createCounter("hsmfleet.work_items", {
      description: "Work items handled, by kind and outcome (ok, retry, failed, skipped)",
    }),
    itemDuration: meter.createHistogram("hsmfleet.work_item.duration", {
      unit: "s",
      description: "Time to handle one work item",
      advice: { explicitBucketBoundaries: [0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 1800] },
    }),
  };
  cached = { provider, instruments };
  return instruments;
};

/** The series of hsmfleet.transfer.bytes for a direction and job (a no-op one when metrics are off). */
export const bytesSeries = (m: Instruments, direction: Direction, jobId: string): CounterSeries =>
  m.enabled ? m.bytes.series(direction, jobId) : nowhere();

/** Counts one entry transferred into hsmfleet.transfer.files. */
export const countFile = (
  m: Instruments,
  direction: Direction,
  jobId: string,
  outcome: string,
): void => {
  if (m.enabled) m.files.series(direction, jobId, outcome).value++;
};

/** Per-worker values read at collection time (configured concurrency, items in flight). */
export interface WorkerGaugeSource {
  workerId: string;
  vmName: string;
  concurrency: () => number;
  /** Storage requests allowed in flight now (adaptive or fixed request concurrency). */
  requestConcurrency?: (() => number) | undefined;
}

const workerSources = new Map<string, WorkerGaugeSource>();
let gaugeProvider: MeterProvider | undefined;

const ensureWorkerGauges = (): void => {
  const provider = metrics.getMeterProvider();
  if (gaugeProvider === provider) return;
  gaugeProvider = provider;
  provider
    .getMeter("hsmfleet", SERVICE_VERSION)
    .createObservableGauge("hsmfleet.worker.concurrency", {
      description: "Work items a worker runs at once (its configured concurrency)",
    })
    .addCallback((result: ObservableResult) => {
      for (const s of workerSources.values())
        result.observe(s.concurrency(), { worker_id: s.workerId, vm_name: s.vmName });
    });
  provider
    .getMeter("hsmfleet", SERVICE_VERSION)
    .createObservableGauge("hsmfleet.worker.request_concurrency", {
      description:
        "Storage data requests a worker lets run at once now (its current adaptive or fixed request concurrency)",
    })
    .addCallback((result: ObservableResult) => {
      for (const s of workerSources.values()) {
        if (s.requestConcurrency !== undefined)
          result.observe(s.requestConcurrency(), { worker_id: s.workerId, vm_name: s.vmName });
      }
    });
};

/** Reports a worker's concurrency until the returned function is called. */
export const observeWorker = (source: WorkerGaugeSource): (() => void) => {
  ensureWorkerGauges();
  workerSources.set(source.workerId, source);
  return () => workerSources.delete(source.workerId);
};

/** A followed job's progress, read at collection time. */
export interface JobGaugeValues {
  jobId: string;
  kind: string;
  itemsPublished: number;
  itemsCompleted: number;
  /** Bytes moved so far (export: uploaded; scan: found). */
  bytesDone: number;
  /** Bytes found by the walk so far (the total to move once the walk is over). */
  bytesFound: number;
  /** Files (HSM: items, import: blobs) done and found so far, in the job kind's own counters. */
  filesDone?: number | undefined;
  filesFound?: number | undefined;
  errors: number;
}

const jobSources = new Map<string, () => JobGaugeValues>();
let jobGaugeProvider: MeterProvider | undefined;

const ensureJobGauges = (): void => {
  const provider = metrics.getMeterProvider();
  if (jobGaugeProvider === provider) return;
  jobGaugeProvider = provider;
  const meter = provider.getMeter("hsmfleet", SERVICE_VERSION);
  const gauges = {
    published: meter.createObservableGauge("hsmfleet.job.items_published", {
      description: "Work items published for the job so far",
    }),
    completed: meter.createObservableGauge("hsmfleet.job.items_completed", {
      description: "Work items of the job that reported",
    }),
    bytesDone: meter.createObservableGauge("hsmfleet.job.bytes_done", {
      unit: "By",
      description: "Bytes the job moved so far",
    }),
    bytesFound: meter.createObservableGauge("hsmfleet.job.bytes_found", {
      unit: "By",
      description: "Bytes the job's walk found so far",
    }),
    filesDone: meter.createObservableGauge("hsmfleet.job.files_done", {
      description: "Files the job finished so far (HSM jobs: items; imports: blobs)",
    }),
    filesFound: meter.createObservableGauge("hsmfleet.job.files_found", {
      description: "Files the job found so far (HSM jobs: items dispatched; imports: blobs walked)",
    }),
    errors: meter.createObservableGauge("hsmfleet.job.errors", {
      description: "Errors counted against the job (--max-errors)",
    }),
  };
  meter.addBatchObservableCallback((result) => {
    for (const source of jobSources.values()) {
      const v = source();
      const attributes = { job: v.jobId, kind: v.kind };
      result.observe(gauges.published, v.itemsPublished, attributes);
      result.observe(gauges.completed, v.itemsCompleted, attributes);
      result.observe(gauges.bytesDone, v.bytesDone, attributes);
      result.observe(gauges.bytesFound, v.bytesFound, attributes);
      if (v.filesDone !== undefined) result.observe(gauges.filesDone, v.filesDone, attributes);
      if (v.filesFound !== undefined) result.observe(gauges.filesFound, v.filesFound, attributes);
      result.observe(gauges.errors, v.errors, attributes);
    }
  }, Object.values(gauges));
};

/** Reports a job's progress (coordinator side) until the returned function is called. */
export const observeJob = (jobId: string, values: () => JobGaugeValues): (() => void) => {
  ensureJobGauges();
  jobSources.set(jobId, values);
  return () => jobSources.delete(jobId);
};
