import { resolve } from "node:path";

import { Option } from "commander";
import {
  DEFAULT_HSM_XATTR,
  HSM_REQUEST_NAMES,
  HsmfleetError,
  UsageError,
  displayPath,
  errorMessage,
  formatHsmState,
} from "@hsmfleet/core";
import type { HsmRequestName } from "@hsmfleet/core";
import { HSM_BACKEND_KINDS, openHsmBackend } from "@hsmfleet/fs";
import type { HsmBackend, HsmBackendKind } from "@hsmfleet/fs";

import { expandOperands, openPathList, readPathList } from "../path-list.js";
import type { ListSeparator } from "../path-list.js";
import { ExitCode, intArg } from "./context.js";
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

/** `lfs hsm_state` output for each path, in input order. */
const printStates = async (backend: HsmBackend, paths: AsyncIterable<Buffer>): Promise<number> => {
  let failed = 0;
  let chunk: Buffer[] = [];
  const flush = async () => {
    const results = await Promise.allSettled(chunk.map((p) => backend.state(p)));
    let out = "";
    results.forEach((r, i) => {
      if (r.status === "fulfilled") out += `${formatHsmState(displayPath(chunk[i]!), r.value)}\n`;
      else {
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
    return forEachPath(paths, 64, (p) =>
      request === "release" ? backend.release(p) : backend.cancel(p),
    );
  }
  let done = 0;
  let failed = 0;
  let batch: Buffer[] = [];
  const flush = async () => {
    if (batch.length === 0) return;
    try {
      await backend.requestMany(request, batch, { archiveId });
      done += batch.length;
    } catch {
      const r = await forEachPath(batch, 8, (p) =>
        backend.requestMany(request, [p], { archiveId }),
      );
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
  state.action(async (paths: string[], opts: HsmCommonOptions) => {
    const backend = openHsmBackend({
      backend: opts.backend,
      xattr: opts.hsmXattr,
      lfsPath: opts.lfs,
    });
    const failed = await printStates(backend, hsmPaths(paths, opts));
    process.exitCode = failed > 0 ? ExitCode.WithErrors : ExitCode.Ok;
  });

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
      .action(
        async (
          paths: string[],
          opts: HsmCommonOptions & { archiveId: number; local?: boolean },
        ) => {
          const backend = openHsmBackend({
            backend: opts.backend,
            xattr: opts.hsmXattr,
            lfsPath: opts.lfs,
          });
          if (paths.length === 0 && opts.from === undefined) {
            throw new UsageError(`hsm ${request} needs paths (operands or --from FILE)`);
          }
          const local = opts.local ?? opts.backend === "lustre";
          if (!local) {
            throw new HsmfleetError(
              `hsm ${request} through the workers is not available yet; use --local`,
            );
          }
          const r = await runLocal(backend, request, hsmPaths(paths, opts), opts.archiveId);
          process.stderr.write(`hsm ${request}: ${r.done} done, ${r.failed} failed\n`);
          process.exitCode = r.failed > 0 ? ExitCode.WithErrors : ExitCode.Ok;
        },
      );
  }
};

const describe = (request: HsmRequestName): string =>
  ({
    archive: "copy files to the archive (HUA_ARCHIVE); they become exists archived (0x9)",
    release: "drop the data of archived, clean files, keeping their size (HUA_RELEASE; 0xd)",
    restore: "bring released files' data back from the archive (HUA_RESTORE)",
    remove: "delete files' archive copies (HUA_REMOVE); released files are refused",
    cancel: "cancel requests in flight on files (HUA_CANCEL)",
  })[request];
