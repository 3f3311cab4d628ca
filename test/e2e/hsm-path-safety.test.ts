/**
 * Path safety of HSM actions (the last hole of the issue-14 class): a user who owns a directory
 * inside the tree swaps it for a symlink to a directory outside the job between the dispatch of an
 * HSM action list and the worker's HSM call. The worker must refuse the item, naming the path, the
 * operation and the cause, and nothing outside the tree may change: no xattr set, no data dropped
 * (release truncates!), no state flipped. Run on the hsm-emulation backend and on the lustre
 * backend driven through the lfs STAND-IN (packages/fs/test/fixtures/lfs-standin.ts: no Lustre
 * client here), on the openat2 path and the forced openat fallback.
 *
 * The swap is deterministic without a seam: the coordinator dispatches the list while no worker
 * runs, the test waits for the list on the HSM stream, swaps, then starts the worker.
 */
import { mkdir, readFile, rename, symlink, truncate, unlink, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

import test from "ava";
import type { ExecutionContext } from "ava";
import { connectBus, jetstreamManager } from "@hsmfleet/bus";
import type { NatsConnection } from "@hsmfleet/bus";
import { HSM_COMPAT, HsmFlag, decodeHsmAttrs, encodeHsmAttrs } from "@hsmfleet/core";
import type { HsmRequestName } from "@hsmfleet/core";
import { runHsmJob } from "@hsmfleet/coordinator";
import type { HsmJobSummary } from "@hsmfleet/coordinator";
import { getXattr, setOpenat2Disabled, setXattr } from "@hsmfleet/fs";
import type { HsmBackendKind } from "@hsmfleet/fs";
import { HSM_STREAM } from "@hsmfleet/protocol";
import { tempDir } from "@hsmfleet/testkit";
import { Worker } from "@hsmfleet/worker";

import { startBus, waitFor } from "./helpers.js";

const XATTR = "user.hsm";
const { Exists: E, Archived: A, Released: R } = HsmFlag;

const setFlags = (p: string, flags: number) =>
  setXattr(
    Buffer.from(p),
    XATTR,
    encodeHsmAttrs({ compat: HSM_COMPAT, flags, archiveId: 1n, archiveVersion: 0n }),
  );
const flagsOf = async (p: string): Promise<number | undefined> => {
  const v = await getXattr(Buffer.from(p), XATTR);
  return v === undefined ? undefined : decodeHsmAttrs(v).flags;
};

/** What a file looks like: its bytes and its hsm xattr (undefined: none). */
const snapshot = async (p: string) => ({
  data: (await readFile(p)).toString("latin1"),
  hsm: (await getXattr(Buffer.from(p), XATTR))?.toString("hex"),
});

interface Tree {
  root: string;
  /** root/alice/x: the directory alice swaps. */
  inside: string;
  /** The directory the symlink points to, outside the job. */
  outside: string;
  lfs: string;
}

/** Files by request: its state inside and outside (same names in both directories). */
const FILES: Record<string, { flags: number | undefined; size?: number }> = {
  rel: { flags: E | A },
  arc: { flags: undefined },
  rem: { flags: E | A },
  rst: { flags: E | A | R, size: 4096 },
};

const makeTree = async (t: ExecutionContext): Promise<Tree> => {
  const dir = await tempDir();
  t.teardown(() => dir.cleanup());
  const root = join(dir.path, "fs");
  const inside = join(root, "alice", "x");
  const outside = join(dir.path, "outside");
  await mkdir(inside, { recursive: true });
  await mkdir(outside);
  for (const [name, f] of Object.entries(FILES)) {
    for (const [where, content] of [
      [inside, `inside ${name}\n`],
      [outside, `OUTSIDE THE JOB, ${name}: must never change\n`],
    ] as const) {
      const p = join(where, name);
      if (f.size !== undefined) {
        // A released stub: the size, no data.
        await writeFile(p, "");
        await truncate(p, f.size);
      } else {
        await writeFile(p, content);
      }
      if (f.flags !== undefined) await setFlags(p, f.flags);
    }
  }
  const standIn = fileURLToPath(
    new URL("../../../packages/fs/dist/test/fixtures/lfs-standin.js", import.meta.url),
  );
  const lfs = join(dir.path, "lfs");
  await writeFile(lfs, `#!/bin/sh\nexec "${process.execPath}" "${standIn}" "$@"\n`, {
    mode: 0o755,
  });
  return { root, inside, outside, lfs };
};

const lastHsmSeq = async (nc: NatsConnection): Promise<number> =>
  (await (await jetstreamManager(nc)).streams.info(HSM_STREAM)).state.last_seq;

/**
 * Runs `request` on root/alice/x/<name>: dispatched with no worker running, then alice/x is
 * swapped for a symlink to the outside directory, then a worker handles the list. The swap is
 * undone afterwards.
 */
const runSwapped = async (
  t: ExecutionContext,
  url: string,
  nc: NatsConnection,
  tree: Tree,
  backend: HsmBackendKind,
  request: HsmRequestName,
  name: string,
): Promise<HsmJobSummary> => {
  const before = await lastHsmSeq(nc);
  const job = runHsmJob({
    nc,
    request,
    root: tree.root,
    paths: [Buffer.from(join(tree.inside, name))],
    backend,
    hsmXattr: XATTR,
    lfsPath: tree.lfs,
    container: "archive",
    partitions: 1,
    listMaxItems: 8,
  });
  job.catch(() => undefined);
  await waitFor("the action list on the HSM stream", async () => (await lastHsmSeq(nc)) > before);
  // alice swaps her directory for a symlink to a directory outside the job.
  const real = `${tree.inside}.real`;
  await rename(tree.inside, real);
  await symlink(tree.outside, tree.inside);
  const wnc = await connectBus({ servers: url, reconnectForever: false });
  const worker = await Worker.create({ nc: wnc, workerId: `w-${request}`, lfsPath: tree.lfs });
  const running = worker.run();
  try {
    return await job;
  } finally {
    await worker.shutdown();
    await running.catch(() => undefined);
    await wnc.close();
    await unlink(tree.inside);
    await rename(real, tree.inside);
    t.log(`${backend} ${request} ${name}: swap undone`);
  }
};

const REQUESTS: Record<HsmBackendKind, Array<[HsmRequestName, string]>> = {
  "hsm-emulation": [
    ["release", "rel"],
    ["archive", "arc"],
    ["remove", "rem"],
  ],
  lustre: [
    ["release", "rel"],
    ["archive", "arc"],
    ["restore", "rst"],
    ["remove", "rem"],
  ],
};

for (const backend of ["hsm-emulation", "lustre"] as const) {
  for (const fallback of [false, true]) {
    test.serial(
      `${backend}${fallback ? " (openat fallback)" : ""}: a directory swapped for a symlink before the HSM call is refused by name and nothing outside the job changes`,
      async (t) => {
        t.timeout(180_000);
        setOpenat2Disabled(fallback);
        t.teardown(() => setOpenat2Disabled(false));
        process.env["LFS_STANDIN_XATTR"] = XATTR;
        const tree = await makeTree(t);
        const { server, nc } = await startBus(t);
        const outsideBefore = new Map<string, Awaited<ReturnType<typeof snapshot>>>();
        const insideBefore = new Map<string, Awaited<ReturnType<typeof snapshot>>>();
        for (const name of Object.keys(FILES)) {
          outsideBefore.set(name, await snapshot(join(tree.outside, name)));
          insideBefore.set(name, await snapshot(join(tree.inside, name)));
        }
        for (const [request, name] of REQUESTS[backend]) {
          const summary = await runSwapped(t, server.url, nc, tree, backend, request, name);
          t.log(`${request}: ${JSON.stringify(summary.errorSamples)}`);
          for (const n of Object.keys(FILES)) {
            t.deepEqual(
              await snapshot(join(tree.outside, n)),
              outsideBefore.get(n),
              `${request}: outside file ${n} unchanged`,
            );
            t.deepEqual(
              await snapshot(join(tree.inside, n)),
              insideBefore.get(n),
              `${request}: inside file ${n} unchanged`,
            );
          }
          t.like(summary, { state: "failed", items: 1, failed: 1 }, `${request} refused`);
          const error = summary.errorSamples[0]?.error ?? "";
          // Names the path (the swapped directory), the operation and the cause.
          // "<op> of <root>/alice/x/<name> refused: unsafe path <root>/alice/x: is a symlink (not
          // followed; …)": the operation, the file, the component and why.
          t.regex(
            error,
            new RegExp(
              `^(hsm_)?${request} of \\S*/alice/x/${name} refused: unsafe path \\S*/alice/x: is a symlink \\(not followed`,
            ),
            `${request}: names the operation, the path and the cause`,
          );
        }
        t.is(await flagsOf(join(tree.outside, "rel")), E | A, "outside file still not released");
      },
    );
  }
}
