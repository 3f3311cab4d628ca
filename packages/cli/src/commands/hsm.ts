import { resolve } from "node:path";

import { Option } from "commander";
import {
  HSM_JOB_DEFAULTS,
  formatHsmSummary,
  hsmJobOrigin,
  resolveAbs,
  runHsmJob,
} from "@hsmfleet/coordinator";
import type { HsmJobSummary } from "@hsmfleet/coordinator";
import {
  HSM_STREAM,
  HsmItemStatus,
  JobKind,
  JobState,
  hsmConsumerName,
  jobStateName,
} from "@hsmfleet/protocol";
import type { HsmItemResult } from "@hsmfleet/protocol";
import { jetstreamManager, listHsmPartitions } from "@hsmfleet/bus";
import {
  DEFAULT_HSM_XATTR,
  HSM_REQUEST_NAMES,
  UsageError,
  displayPath,
  errorMessage,
  formatHsmState,
  hsmFlagWords,
} from "@hsmfleet/core";
import type { HsmAttrs, HsmRequestName } from "@hsmfleet/core";
import { HSM_BACKEND_KINDS, openHsmBackend, parentAndName } from "@hsmfleet/fs";
import type { HsmBackend, HsmBackendKind, JobRoot } from "@hsmfleet/fs";

import { expandOperands, openPathList, readPathList } from "../path-list.js";
import { ProgressLine } from "../progress.js";
import type { ListSeparator } from "../path-list.js";
import { openRuntime } from "../runtime.js";
import { resolveStateDir } from "../state-dir.js";
import { ExitCode, intArg, onInterrupt } from "./context.js";
import type { CliContext } from "./context.js";

export interface HsmCommonOptions {
  backend: HsmBackendKind;
  hsmXattr: string;
  lfs: string;
  from?: string;
  null?: boolean;
  recursive?: boolean;
}

/** Operands, then --from's list; each directory walked when -r is given. */
export async function* hsmPaths(
  operands: string[],
  opts: HsmCommonOptions,
): AsyncGenerator<Buffer> {
  const separator: ListSeparator = opts.null ? "nul" : "auto";
  async function* sources(): AsyncGenerator<Buffer> {
    for (const p of operands) yield Buffer.from(resolve(p));
    if (opts.from !== undefined) {
      for await (const p of readPathList(openPathList(opts.from), separator)) {
        yield p[0] === 0x2f ? p : Buffer.from(resolve(p.toString()));
      }
    }
  }
  yield* expandOperands(sources(), opts.recursive ?? false);
}

const commonOptions = (): Option[] => [
  new Option(
    "--backend <kind>",
    "HSM backend: hsm-emulation (xattr on any file system) or lustre (lfs)",
  )
    .choices(HSM_BACKEND_KINDS)
    .env("HSMFLEET_HSM_BACKEND")
    .default("hsm-emulation"),
  new Option(
    "--hsm-xattr <name>",
    "xattr holding struct hsm_attrs (e.g. user.hsm when not root)",
  ).default(DEFAULT_HSM_XATTR),
  new Option("--lfs <path>", "lfs binary for --backend lustre").env("HSMFLEET_LFS").default("lfs"),
  new Option("--from <file>", "read more paths from FILE ('-' = stdin), NUL- or newline-separated"),
  new Option("-0, --null", "the --from list is NUL-separated (default: detected)"),
  new Option("-r, --recursive", "walk directory operands and act on every regular file under them"),
];

/** Runs `fn` over `paths` with at most `concurrency` at once; returns the number that failed. */
const forEachPath = async (
  paths: AsyncIterable<Buffer> | Iterable<Buffer>,
  concurrency: number,
  fn: (path: Buffer) => Promise<void>,
): Promise<{ done: number; failed: number }> => {
  let done = 0;
  let failed = 0;
  const inFlight = new Set<Promise<void>>();
  for await (const path of paths) {
    const task = fn(path)
      .then(() => void done++)
      .catch((err: unknown) => {
        failed++;
        process.stderr.write(`hsmfleet: ${errorMessage(err)}\n`);
      })
      .finally(() => inFlight.delete(task));
    inFlight.add(task);
    if (inFlight.size >= concurrency) await Promise.race(inFlight);
  }
  await Promise.all(inFlight);
  return { done, failed };
};

/** One path's HSM state in `hsm state --json` (docs/hsm.md). */
const stateJson = (path: Buffer, attrs: HsmAttrs | undefined) => {
  const flags = attrs?.flags ?? 0;
  return {
    path: displayPath(path),
    flags,
    hex: `0x${flags.toString(16).padStart(8, "0")}`,
    states: hsmFlagWords(flags),
    archiveId: Number(attrs?.archiveId ?? 0n),
  };
};

/**
 * `lfs hsm_state` output for each path, in input order; with `json`, one JSON array written as
 * the paths go (a recursive state of a large tree never waits for the whole list).
 */
const printStates = async (
  backend: HsmBackend,
  paths: AsyncIterable<Buffer>,
  json: boolean,
): Promise<number> => {
  let failed = 0;
  let chunk: Buffer[] = [];
  let first = true;
  const flush = async () => {
    const results = await Promise.allSettled(
      chunk.map(async (p) => {
        const { root, rel } = await parentAndName(p);
        return backend.state(root, rel);
      }),
    );
    let out = "";
    results.forEach((r, i) => {
      if (r.status === "fulfilled") {
        if (json) {
          out += `${first ? "[" : ",\n"}${JSON.stringify(stateJson(chunk[i]!, r.value))}`;
          first = false;
        } else out += `${formatHsmState(displayPath(chunk[i]!), r.value)}\n`;
      } else {
        failed++;
        process.stderr.write(`hsmfleet: ${errorMessage(r.reason)}\n`);
      }
    });
    process.stdout.write(out);
    chunk = [];
  };
  for await (const p of paths) {
    chunk.push(p);
    if (chunk.length >= 256) await flush();
  }
  await flush();
  if (json) process.stdout.write(first ? "[]\n" : "]\n");
  return failed;
};

/**
 * Requests carried out in this process: on Lustre, `lfs hsm_*` in --filelist batches (the HSM
 * coordinator and its copytool do the rest); a failed batch is retried one file at a time so each
 * refusal is named. On the emulation only release and cancel are local (nothing else moves data).
 */
const runLocal = async (
  backend: HsmBackend,
  request: HsmRequestName,
  paths: AsyncIterable<Buffer>,
  archiveId: number,
): Promise<{ done: number; failed: number }> => {
  if (backend.kind === "hsm-emulation") {
    if (request !== "release" && request !== "cancel") {
      throw new UsageError(
        `hsm ${request} --local on the hsm-emulation backend would change the state without moving data; run it through the workers (without --local)`,
      );
    }
    return forEachPath(paths, 64, async (p) => {
      const { root, rel } = await parentAndName(p);
      if (request === "release") await backend.release(root, rel);
      else await backend.cancel(root, rel);
    });
  }
  let done = 0;
  let failed = 0;
  let batch: Buffer[] = [];
  const flush = async () => {
    if (batch.length === 0) return;
    try {
      // One request per directory: each file is named beneath its parent's fd, never followed.
      const byParent = new Map<string, { root: JobRoot; rels: Buffer[] }>();
      for (const p of batch) {
        const { root, rel } = await parentAndName(p);
        const group = byParent.get(root.path) ?? { root, rels: [] };
        group.rels.push(rel);
        byParent.set(root.path, group);
      }
      for (const { root, rels } of byParent.values())
        await backend.requestMany(request, root, rels, { archiveId });
      done += batch.length;
    } catch {
      const r = await forEachPath(batch, 8, async (p) => {
        const { root, rel } = await parentAndName(p);
        await backend.requestMany(request, root, [rel], { archiveId });
      });
      done += r.done;
      failed += r.failed;
    }
    batch = [];
  };
  for await (const p of paths) {
    batch.push(p);
    if (batch.length >= 1000) await flush();
  }
  await flush();
  return { done, failed };
};

/** `hsmfleet hsm state|archive|release|restore|remove|cancel|action`: Lustre HSM, like `lfs hsm_*`. */
export const registerHsmCommand = (ctx: CliContext): void => {
  const hsm = ctx.program
    .command("hsm")
    .description(
      "Lustre HSM requests like lfs hsm_*: state, archive, release, restore, remove, cancel",
    );

  const state = hsm
    .command("state")
    .description("print each file's HSM state as `lfs hsm_state` does")
    .argument("[paths...]", "files (directories with -r)");
  for (const o of commonOptions()) state.addOption(o);
  state.option("--json", "one JSON array on stdout: path, flags, hex, states, archiveId");
  state.action(async (paths: string[], opts: HsmCommonOptions & { json?: boolean }) => {
    if (paths.length === 0 && opts.from === undefined)
      throw new UsageError("hsm state needs paths (operands or --from FILE)");
    const backend = openHsmBackend({
      backend: opts.backend,
      xattr: opts.hsmXattr,
      lfsPath: opts.lfs,
    });
    const failed = await printStates(backend, hsmPaths(paths, opts), opts.json ?? false);
    process.exitCode = failed > 0 ? ExitCode.WithErrors : ExitCode.Ok;
  });

  hsm
    .command("action")
    .description(
      "what is in flight: running HSM jobs, and lists queued and in flight per partition",
    )
    .option("--json", "one JSON object on stdout")
    .action(async (opts: { json?: boolean }) => showActions(ctx, opts.json ?? false));

  for (const request of HSM_REQUEST_NAMES) {
    const cmd = hsm
      .command(request)
      .description(describe(request))
      .argument("[paths...]", "files (directories with -r)");
    for (const o of commonOptions()) cmd.addOption(o);
    cmd
      .addOption(
        new Option("--archive-id <n>", "archive id (lfs --archive)")
          .argParser(intArg("--archive-id", 0))
          .default(1),
      )
      .addOption(
        new Option(
          "--local",
          "carry the requests out in this process (lustre: lfs batches from this client; emulation: release only)",
        ),
      )
      .addOption(
        new Option(
          "--fleet",
          "send the requests to the workers as action lists (default on hsm-emulation; on lustre the workers run the lfs batches)",
        ),
      )
      .addOption(
        new Option(
          "--root <dir>",
          "file system root the paths are under; blob names are relative to it",
        ).default("/"),
      )
      .addOption(
        new Option("--container <name>", "archive container (hsm-emulation)").default(
          "hsmfleet-archive",
        ),
      )
      .addOption(new Option("--prefix <prefix>", "name prefix inside the container").default(""))
      .addOption(
        new Option("--partitions <n>", "HSM partitions to shard action items onto (by FID hash)")
          .argParser(intArg("--partitions", 1))
          .default(HSM_JOB_DEFAULTS.partitions),
      )
      .addOption(new Option("-v, --verbose", "print every item's outcome as its list completes"))
      .addOption(new Option("--json", "print the summary as one JSON object on stdout"))
      .addOption(new Option("--quiet", "no progress line"))
      .action(async (paths: string[], opts: HsmRequestOptions) => {
        const backend = openHsmBackend({
          backend: opts.backend,
          xattr: opts.hsmXattr,
          lfsPath: opts.lfs,
        });
        if (paths.length === 0 && opts.from === undefined) {
          throw new UsageError(`hsm ${request} needs paths (operands or --from FILE)`);
        }
        if (opts.local && opts.fleet)
          throw new UsageError("--local and --fleet exclude each other");
        const local = opts.local ?? (!opts.fleet && opts.backend === "lustre");
        if (!local) {
          await runFleet(ctx, request, hsmPaths(paths, opts), opts);
          return;
        }
        const r = await runLocal(backend, request, hsmPaths(paths, opts), opts.archiveId);
        process.stderr.write(`hsm ${request}: ${r.done} done, ${r.failed} failed\n`);
        process.exitCode = r.failed > 0 ? ExitCode.WithErrors : ExitCode.Ok;
      });
  }
};

interface HsmRequestOptions extends HsmCommonOptions {
  archiveId: number;
  local?: boolean;
  fleet?: boolean;
  root: string;
  container: string;
  prefix: string;
  partitions: number;
  verbose?: boolean;
  json?: boolean;
  quiet?: boolean;
}

const STATUS_WORDS: Record<number, string> = {
  [HsmItemStatus.Done]: "done",
  [HsmItemStatus.Skipped]: "skipped",
  [HsmItemStatus.Failed]: "failed",
  [HsmItemStatus.Cancelled]: "cancelled",
};

/** Through the fleet: embedded or given NATS, in-process workers unless --workers 0. */
const runFleet = async (
  ctx: CliContext,
  request: HsmRequestName,
  paths: AsyncIterable<Buffer>,
  opts: HsmRequestOptions,
): Promise<void> => {
  const g = ctx.globals();
  const log = ctx.logger("coordinator");
  const stateDir = resolveStateDir(g.stateDir);
  const needsStorage =
    opts.backend === "hsm-emulation" && request !== "release" && request !== "cancel";
  const storage = needsStorage ? await ctx.resolveStorage(stateDir) : undefined;
  const abort = new AbortController();
  const undo = onInterrupt(abort, `hsm ${request}`);
  const progress = new ProgressLine();
  let runtime: Awaited<ReturnType<typeof openRuntime>> | undefined;
  let summary: HsmJobSummary;
  const root = Buffer.from(resolve(opts.root));
  try {
    runtime = await openRuntime(
      ctx.runtimeOptions({ stateDir, logger: log, storage: storage?.target }),
    );
    summary = await runHsmJob({
      nc: runtime.nc,
      request,
      root: resolve(opts.root),
      paths,
      backend: opts.backend,
      hsmXattr: opts.hsmXattr,
      lfsPath: opts.lfs,
      archiveId: opts.archiveId,
      partitions: opts.partitions,
      container: opts.container,
      prefix: opts.prefix,
      signal: abort.signal,
      logger: log,
      onProgress: opts.quiet ? undefined : (p) => progress.hsm(p),
      onItem: opts.verbose
        ? (item: HsmItemResult) => {
            const path = displayPath(resolveAbs(root, item.path));
            progress.done();
            process.stdout.write(
              `${path}: ${STATUS_WORDS[item.status] ?? "unknown"}${item.error ? ` (${item.error})` : ""}\n`,
            );
          }
        : undefined,
    });
  } finally {
    progress.done();
    undo();
    await runtime?.close();
    await storage?.azurite?.close();
  }
  process.stdout.write(
    opts.json ? `${JSON.stringify(summary)}\n` : `${formatHsmSummary(summary)}\n`,
  );
  process.exitCode =
    summary.state === "cancelled"
      ? ExitCode.Cancelled
      : summary.failed > 0
        ? ExitCode.WithErrors
        : ExitCode.Ok;
};

/** `hsmfleet hsm action`: HSM jobs running and what each partition holds. */
const showActions = async (ctx: CliContext, json: boolean): Promise<void> => {
  await ctx.withStore(async (store, nc) => {
    const jsm = await jetstreamManager(nc);
    const partitions = [];
    for (const p of await listHsmPartitions(jsm)) {
      const info = await jsm.consumers.info(HSM_STREAM, hsmConsumerName(p));
      partitions.push({ partition: p, queued: info.num_pending, inFlight: info.num_ack_pending });
    }
    const jobs = (await store.list())
      .filter((j) => j.spec.kind === JobKind.Hsm)
      .filter(
        (j) =>
          j.state === JobState.Running ||
          j.state === JobState.Pending ||
          j.state === JobState.Cancelling,
      )
      .map((j) => {
        const { request, createdBy } = hsmJobOrigin(j.spec);
        return {
          jobId: j.spec.jobId,
          state: jobStateName(j.state),
          request,
          createdBy,
          backend: j.spec.backend,
          root: displayPath(j.spec.root),
        };
      });
    if (json) {
      process.stdout.write(`${JSON.stringify({ jobs, partitions })}\n`);
      return;
    }
    const lines = [`HSM jobs running: ${jobs.length}`];
    for (const j of jobs)
      lines.push(`  ${j.jobId} ${j.state} ${j.request} ${j.backend} ${j.root} (by ${j.createdBy})`);
    lines.push("partition  queued lists  in flight");
    for (const p of partitions) {
      lines.push(
        `${String(p.partition).padStart(9)}  ${String(p.queued).padStart(12)}  ${String(p.inFlight).padStart(9)}`,
      );
    }
    process.stdout.write(`${lines.join("\n")}\n`);
  });
};

const describe = (request: HsmRequestName): string =>
  ({
    archive: "copy files to the archive (HUA_ARCHIVE); they become exists archived (0x9)",
    release: "drop the data of archived, clean files, keeping their size (HUA_RELEASE; 0xd)",
    restore: "bring released files' data back from the archive (HUA_RESTORE)",
    remove: "delete files' archive copies (HUA_REMOVE); released files are refused",
    cancel: "cancel requests in flight on files (HUA_CANCEL)",
  })[request];
