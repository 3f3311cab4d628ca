import type { JobStatus } from "@hsmfleet/protocol";
import { ImportTarget } from "./import-target.js";

/** Import targets by job id, each opened once per job (each keeps a cache of verified directories). */
export class ImportTargets {
  readonly #lfsPath: string;
  readonly #targets = new Map<string, Promise<ImportTarget>>();

  constructor(lfsPath: string) {
    this.#lfsPath = lfsPath;
  }

  /** The import target of a job (opened once per job). */
  for(job: JobStatus): Promise<ImportTarget> {
    const id = job.spec.jobId;
    let target = this.#targets.get(id);
    if (!target) {
      target = ImportTarget.open({
        root: job.spec.root.toString(),
        mode: job.spec.import.mode,
        conflict: job.spec.import.conflict,
        archiveId: job.spec.import.archiveId,
        backend: job.spec.backend,
        hsmXattr: job.spec.hsmXattr || "trusted.hsm",
        lfsPath: this.#lfsPath,
        container: job.spec.container,
      });
      target.catch(() => this.#targets.delete(id));
      if (this.#targets.size > 64) this.#targets.delete(this.#targets.keys().next().value!);
      this.#targets.set(id, target);
    }
    return target;
  }
}
