/**
 * A local rehearsal of a deployed fleet: the NATS configs `hsmfleet deploy azure` renders (for
 * three nodes on 127.0.0.11-13, the addresses and ports being inputs of the renderer) start a real
 * 3-node JetStream cluster with TLS and the fleet's users; two workers start with the command line
 * of the rendered hsmfleet-worker.service and the environment the template writes
 * (fleet.env); an export run as the coordinator user goes through the cluster into Azurite, and
 * the fleet's streams are R3.
 */
import { spawn } from "node:child_process";
import type { ChildProcess } from "node:child_process";
import { mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import test from "ava";
import { connectBus } from "@hsmfleet/bus";
import { jetstreamManager } from "@nats-io/jetstream";
import { ContainerClient } from "@azure/storage-blob";
import { deployInputs, fleetEnvFormat, renderAzureDeployment } from "@hsmfleet/cli";
import { freePorts, tempDir } from "@hsmfleet/testkit";
import { makeNatsTls, present, skipNote } from "./deploy-tools.js";
import { CLI_BIN, runCli, startStorage, waitFor } from "./helpers.js";

const HOSTS: [string, string, string] = ["127.0.0.11", "127.0.0.12", "127.0.0.13"];
const PASSWORDS = {
  coordinator: "rehearsal-coordinator-0123456789",
  worker: "rehearsal-worker-0123456789",
};

const ready = present("nats-server") && present("openssl");
if (!ready) console.warn(skipNote(present("nats-server") ? "openssl" : "nats-server"));

/** KEY=value lines (a systemd EnvironmentFile) → an environment. */
const envFile = (text: string): Record<string, string> =>
  Object.fromEntries(
    text
      .split("\n")
      .filter((l) => l.includes("="))
      .map((l) => [l.slice(0, l.indexOf("=")), l.slice(l.indexOf("=") + 1)]),
  );

/** format() as ARM does it, for the settings the template writes. */
const armFormat = (text: string, ...args: string[]): string =>
  text.replace(/\{(\d+)\}/g, (_, i: string) => args[Number(i)]!);

/**
 * The ExecStart of a unit as argv, with ${VAR} and $VAR from `env` as systemd expands them
 * (${VAR}: one word; $VAR: split on white space).
 */
const execStart = (unit: string, env: Record<string, string>): string[] => {
  const line = unit
    .split("\n")
    .find((l) => l.startsWith("ExecStart="))!
    .slice("ExecStart=".length);
  return line.split(/\s+/).flatMap((word) => {
    const braced = /^\$\{(\w+)\}$/.exec(word);
    if (braced) return [env[braced[1]!] ?? ""];
    const bare = /^\$(\w+)$/.exec(word);
    if (bare) return (env[bare[1]!] ?? "").split(/\s+/).filter((w) => w !== "");
    return [word];
  });
};

(ready ? test : test.skip)(
  "rehearsal: the rendered NATS configs make a 3-node TLS JetStream cluster on 127.0.0.11-13, workers started with the rendered unit's command line join it, and an export runs through it on R3 streams",
  async (t) => {
    t.timeout(5 * 60_000);
    const dir = await tempDir();
    t.teardown(() => dir.cleanup());
    const tls = join(dir.path, "tls");
    await mkdir(tls);
    await makeNatsTls(
      tls,
      HOSTS.map((h) => `IP:${h}`),
    );
    // Three ports that differ (one port per role on every node's address).
    const [natsPort, natsClusterPort, natsMonitorPort] = (await freePorts(3)) as [
      number,
      number,
      number,
    ];
    const inputs = deployInputs({
      workers: 2,
      workerVmSize: "Standard_D16ds_v5",
      sizing: "rehearsal",
      natsHosts: HOSTS,
      natsListenAddress: "host",
      natsPort,
      natsClusterPort,
      natsMonitorPort,
      natsStoreDir: join(dir.path, "nats"),
      natsTlsDir: tls,
      workerMetricsPort: 0, // two workers on one machine: no shared metrics port
      hsmfleetBin: CLI_BIN,
    });
    const files = renderAzureDeployment(inputs, "rehearsal");

    // The cluster, from the rendered configs; passwords in the environment as NATS_ENV_FILE has them.
    const natsEnv = {
      ...process.env,
      HSMFLEET_NATS_COORDINATOR_PASSWORD: PASSWORDS.coordinator,
      HSMFLEET_NATS_WORKER_PASSWORD: PASSWORDS.worker,
    };
    const children: ChildProcess[] = [];
    const logs: string[] = [];
    t.teardown(async () => {
      for (const c of children) if (c.exitCode === null) c.kill("SIGTERM");
      await Promise.all(
        children.map((c) =>
          c.exitCode === null ? new Promise((r) => c.once("exit", r)) : Promise.resolve(),
        ),
      );
    });
    const start = (cmd: string, args: string[], env: NodeJS.ProcessEnv, name: string) => {
      const child = spawn(cmd, args, { env, stdio: ["ignore", "pipe", "pipe"] });
      const keep = (d: Buffer) => logs.push(`[${name}] ${d.toString()}`);
      child.stdout.on("data", keep);
      child.stderr.on("data", keep);
      children.push(child);
      return child;
    };
    for (const i of [0, 1, 2]) {
      const conf = join(dir.path, `nats-${i}.conf`);
      await writeFile(conf, files.get(`nats/nats-${i}.conf`)!);
      start(
        "nats-server",
        ["-c", conf],
        { ...natsEnv, PATH: `${process.env["PATH"]}:/usr/sbin` },
        `nats-${i}`,
      );
    }
    await waitFor(
      "the three NATS nodes to be healthy",
      async () => {
        const health = await Promise.all(
          HOSTS.map((h) =>
            fetch(`http://${h}:${inputs.natsMonitorPort}/healthz`)
              .then((r) => r.ok)
              .catch(() => false),
          ),
        );
        return health.every(Boolean);
      },
      60_000,
    ).catch((err: unknown) => {
      throw new Error(`the cluster did not become healthy: ${String(err)}\n${logs.join("")}`);
    });

    // fleet.env as the template writes it on a worker and on the coordinator.
    const azurite = await startStorage(t);
    const caFile = join(tls, "ca.pem");
    const fleetEnv = (user: "worker" | "coordinator") => {
      const env = envFile(
        armFormat(
          fleetEnvFormat(inputs, user),
          PASSWORDS[user],
          "acct",
          "core.windows.net",
          "client-id",
        ),
      );
      t.is(env["NATS_USER"], user);
      t.is(env["HSMFLEET_NATS_REPLICAS"], "3");
      t.is(env["HSMFLEET_NATS_URL"], HOSTS.map((h) => `tls://${h}:${inputs.natsPort}`).join(","));
      // The rehearsal's only substitutions: the CA's path here, and Azurite for the account URL.
      return {
        ...env,
        NATS_CA: caFile,
        HSMFLEET_STORAGE: azurite.connectionString,
        AZURE_CLIENT_ID: "",
      };
    };

    // The topology first, as the coordinator (workers may not create the work streams).
    const coordinatorEnv = {
      ...process.env,
      ...fleetEnv("coordinator"),
      HSMFLEET_LOG_LEVEL: "warn",
    };
    const jobs = await runCli(["--workers", "0", "jobs", "--json"], {
      env: coordinatorEnv,
      timeoutMs: 60_000,
    });
    t.is(jobs.code, 0, jobs.stderr);

    const unit = files.get("systemd/hsmfleet-worker.service")!;
    for (const w of [1, 2]) {
      const env = { ...process.env, ...fleetEnv("worker"), UV_THREADPOOL_SIZE: "64" };
      const argv = execStart(unit, env);
      t.is(argv[0], CLI_BIN);
      t.true(argv.includes("worker"));
      start(process.execPath, [...argv, "--vm-name", `rehearsal-vm-${w}`], env, `worker-${w}`);
    }
    await waitFor(
      "both workers to send heartbeats",
      async () => {
        const r = await runCli(["workers", "--wait", "2000", "--json"], {
          env: coordinatorEnv,
          timeoutMs: 30_000,
        });
        if (r.code !== 0) return false;
        const list = JSON.parse(r.stdout) as unknown[];
        return list.length === 2;
      },
      90_000,
    ).catch((err: unknown) => {
      throw new Error(`the workers did not join: ${String(err)}\n${logs.join("")}`);
    });

    const tree = join(dir.path, "tree");
    await mkdir(join(tree, "d"), { recursive: true });
    for (let i = 0; i < 20; i++)
      await writeFile(join(tree, i % 2 ? "d" : "", `f${i}.txt`), `file ${i}\n`);
    const exported = await runCli(
      [
        "--workers",
        "0",
        "--storage",
        azurite.connectionString,
        "export",
        tree,
        "--container",
        "rehearsal",
        "--json",
      ],
      { env: coordinatorEnv, timeoutMs: 120_000 },
    );
    t.is(exported.code, 0, `${exported.stderr}\n${logs.join("")}`);
    const summary = JSON.parse(exported.stdout.trim().split("\n").pop()!) as {
      state: string;
      filesExported: number;
    };
    t.like(summary, { state: "succeeded", filesExported: 20 });
    const names: string[] = [];
    for await (const b of new ContainerClient(
      azurite.connectionString,
      "rehearsal",
    ).listBlobsFlat())
      names.push(b.name);
    t.is(names.filter((n) => /f\d+\.txt$/.test(n)).length, 20);

    // The fleet's streams are replicated on all three nodes.
    // (connectBus: it checks a certificate against the IP of a tls://127.0.0.x URL.)
    const nc = await connectBus({
      servers: HOSTS.map((h) => `tls://${h}:${inputs.natsPort}`),
      auth: { user: "coordinator", password: PASSWORDS.coordinator, tlsCaFile: caFile },
    });
    t.teardown(() => nc.close());
    const jsm = await jetstreamManager(nc);
    const work = await jsm.streams.info("HSMFLEET_WORK");
    t.is(work.config.num_replicas, 3);
    t.is((work.cluster?.replicas?.length ?? 0) + 1, 3);
  },
);
