import { mkdir, readFile, utimes, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

import test from "ava";
import { HsmFlag } from "@hsmfleet/core";
import { fileSystemUsage, parsePolicyText, servePolicies } from "@hsmfleet/coordinator";
import type { PolicyRunSummary } from "@hsmfleet/coordinator";
import { HsmEmulationBackend, hsmAtAbsolutePaths } from "@hsmfleet/fs";
import { tempDir } from "@hsmfleet/testkit";

import { TEST_TOPOLOGY, startBus, startWorkers, waitFor } from "./helpers.js";
import { mountSmallFs } from "./policy-fs.js";

const { Exists: E, Archived: A, Released: R } = HsmFlag;
const MiB = 1 << 20;
/** The `lfs` STAND-IN of the fs package's tests (over the emulation, lfs's formats). */
const STANDIN = fileURLToPath(
  new URL("../test/fixtures/lfs-standin.js", import.meta.resolve("@hsmfleet/fs")),
);

test.serial(
  "lustre backend: the OST watermark rule drives lfs df and lfs hsm_release --filelist batches (stand-in lfs)",
  async (t) => {
    t.timeout(300_000);
    const fs = await mountSmallFs(t, 64);
    if ("skip" in fs) {
      t.log(`SKIPPED: ${fs.skip}`);
      t.pass();
      return;
    }
    const dir = await tempDir();
    t.teardown(() => dir.cleanup());
    const lfs = join(dir.path, "lfs");
    await writeFile(lfs, `#!/bin/sh\nexec "${process.execPath}" "${STANDIN}" "$@"\n`, {
      mode: 0o755,
    });
    const log = join(dir.path, "lfs.log");
    process.env.LFS_STANDIN_LOG = log;
    process.env.LFS_STANDIN_OSTS = "2";
    t.teardown(() => {
      delete process.env.LFS_STANDIN_LOG;
      delete process.env.LFS_STANDIN_OSTS;
    });
    const root = fs.path;
    const hsm = hsmAtAbsolutePaths(new HsmEmulationBackend({ xattr: "trusted.hsm" }));
    const now = Date.now() / 1000;
    const names: string[] = [];
    for (let i = 0; i < 57; i++) {
      const name = `d${i % 3}/f${String(i).padStart(2, "0")}`;
      const p = join(root, name);
      await mkdir(join(p, ".."), { recursive: true });
      await writeFile(p, Buffer.alloc(MiB, i));
      await utimes(p, now - (100 - i) * 3600, now - 7200);
      // Archived by the (stand-in) copytool: the state Lustre's MDT would hold.
      await hsm.setState(Buffer.from(p), {
        compat: 1,
        flags: E | A,
        archiveId: 1n,
        archiveVersion: 0n,
      });
      names.push(name);
    }
    t.true((await fileSystemUsage(root)).percent > 85);
    const { server, nc } = await startBus(t, TEST_TOPOLOGY);
    await startWorkers(t, server.url, 2, undefined, { lfsPath: lfs });
    const file = parsePolicyText(`
settings: { backend: lustre, lfs: ${lfs}, partitions: 2 }
policies:
  release-lru:
    action: release
    root: ${root}
    rules: [{ last_access: 1h }]
    triggers:
      usage: { of: ost, high: 85%, low: 70% }
      check_every: 1s
`);
    const runs: PolicyRunSummary[] = [];
    const abort = new AbortController();
    const serving = servePolicies({
      nc,
      file,
      signal: abort.signal,
      tickMs: 250,
      onRun: (_, s) => runs.push(s),
    });
    try {
      await waitFor(
        "usage under the low watermark",
        async () => runs.length > 0 && (await fileSystemUsage(root)).percent < 70,
        120_000,
      );
    } finally {
      abort.abort();
      await serving;
    }
    const done = runs.reduce((n, r) => n + r.done, 0);
    t.log(
      `released ${done} files in ${runs.length} runs (stopped by ${runs.map((r) => r.stoppedBy).join(", ")})`,
    );
    t.true(runs.every((r) => r.failed === 0));
    const after = await fileSystemUsage(root);
    t.true(after.percent < 70, `${after.percent} % < low`);
    const calls = (await readFile(log, "utf8"))
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l) as string[]);
    t.true(
      calls.some((c) => c[0] === "df"),
      "usage measured per OST with lfs df",
    );
    const releases = calls.filter((c) => c[0] === "hsm_release");
    t.true(releases.length > 0 && releases.every((c) => c.includes("--filelist")), "batches");
    t.true(releases.length < done, `${releases.length} lfs calls for ${done} releases`);
    const released = [];
    for (const n of names)
      if (((await hsm.state(Buffer.from(join(root, n))))?.flags ?? 0) & R) released.push(n);
    t.is(released.length, done);
    t.deepEqual(released, names.slice(0, released.length), "least recently accessed first");
  },
);
