import { metrics } from "@opentelemetry/api";
import type {
  Counter,
  Histogram,
  MeterProvider,
  ObservableResult,
  UpDownCounter,
} from "@opentelemetry/api";
import { SERVICE_VERSION } from "./version.js";

/** Direction of a transfer: export = file system → blob; import/restore = blob → file system. */
export type Direction = "export" | "import" | "restore";

/**
 * hsmfleet's instruments. OpenTelemetry names; the Prometheus endpoint shows them with dots as
 * underscores plus unit and _total suffixes (docs/observability.md lists both).
 */
export interface Instruments {
  bytes: Counter;
  files: Counter;
  errors: Counter;
  transfersInFlight: UpDownCounter;
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
  const meter = provider.getMeter("hsmfleet", SERVICE_VERSION);
  const instruments: Instruments = {
    bytes: meter.createCounter("hsmfleet.transfer.bytes", {
      unit: "By",
      description: "Bytes moved, by direction and job (counted as blocks complete)",
    }),
    files: meter.createCounter("hsmfleet.transfer.files", {
      description:
        "Entries transferred (files, directories, symlinks), by direction, job and outcome",
    }),
    errors: meter.createCounter("hsmfleet.errors", {
      description: "Errors by kind (the operation that failed) and code",
    }),
    transfersInFlight: meter.createUpDownCounter("hsmfleet.transfer.in_flight", {
      description: "File transfers in progress",
    }),
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
