import { setTimeout as sleep } from "node:timers/promises";
import { Kvm } from "@nats-io/kv";
import type { KV } from "@nats-io/kv";
import type { NatsConnection, TopologyOptions } from "@hsmfleet/bus";
import type { BlobContainer } from "@hsmfleet/blob";
import { errorMessage } from "@hsmfleet/core";
import type { OwnerUsageTrigger, PolicyFile, ResolvedPolicy } from "@hsmfleet/core";
import type { Logger } from "@hsmfleet/telemetry";
import { runPolicyEvaluation } from "./policy-job.js";
import { runPolicy } from "./policy-run.js";
import type { PolicyRunSummary } from "./policy-run.js";
import { RemovalService } from "./pending-removals.js";
import { bytesAboveLow, bytesToFree, measureUsage } from "./usage.js";
import type { UsageSample } from "./usage.js";

/** `policy serve` state: one key per policy (last run, last usage), for restarts and the dashboard. */
export const POLICY_STATE_BUCKET = "hsmfleet-policy";

export interface PolicyState {
  policy: string;
  action: string;
  lastRunStartMs: number;
  lastRunEndMs: number;
  lastTrigger: string;
  lastRun?: PolicyRunSummary | undefined;
  usage?:
    { atMs: number; highPercent: number; lowPercent: number; samples: UsageSample[] } | undefined;
  removals?: RemovalService["stats"] | undefined;
}

export interface PolicyServeOptions {
  nc: NatsConnection;
  file: PolicyFile;
  /** Archive container (hsm-emulation remove policies delete blobs in it). */
  container?: BlobContainer | undefined;
  /** How often triggers are looked at. Default 1,000 ms. */
  tickMs?: number | undefined;
  signal: AbortSignal;
  logger?: Logger | undefined;
  topology?: TopologyOptions | undefined;
  onRun?: ((trigger: string, summary: PolicyRunSummary) => void) | undefined;
  onUsage?: ((policy: string, samples: UsageSample[]) => void) | undefined;
}

export const POLICY_SERVE_DEFAULTS = { tickMs: 1000 } as const;

/**
 * `hsmfleet policy serve`: evaluates every policy's triggers continuously — periodic runs, usage
 * watermarks (a release run above `high` frees bytes LRU-first until `low`), remove policies on the
 * change stream — and keeps each policy's state in KV (so a restart after kill -9 keeps the
 * schedule, and the dashboard shows the last runs and the watermarks). One run at a time.
 */
export const servePolicies = async (o: PolicyServeOptions): Promise<void> => {
  const tickMs = o.tickMs ?? POLICY_SERVE_DEFAULTS.tickMs;
  const kv: KV = await new Kvm(o.nc).create(POLICY_STATE_BUCKET, { history: 1 });
  const state = new Map<string, PolicyState>();
  for (const p of o.file.policies) {
    const e = await kv.get(p.name).catch(() => null);
    let s: PolicyState = {
      policy: p.name,
      action: p.action,
      lastRunStartMs: 0,
      lastRunEndMs: 0,
      lastTrigger: "",
    };
    if (e?.operation === "PUT") {
      try {
        s = { ...s, ...(JSON.parse(e.string()) as PolicyState) };
      } catch {
        // a damaged record: start afresh
      }
    }
    state.set(p.name, s);
  }
  const save = async (s: PolicyState) => {
    await kv.put(s.policy, JSON.stringify(s)).catch((err: unknown) => {
      o.logger?.warn({ err: errorMessage(err) }, `policy ${s.policy}: state not saved`);
    });
  };

  const removals: { p: ResolvedPolicy; svc: RemovalService }[] = [];
  const followers: Promise<void>[] = [];
  for (const p of o.file.policies.filter((q) => q.action === "remove")) {
    const svc = new RemovalService({
      nc: o.nc,
      policy: p,
      settings: o.file.settings,
      container: o.container,
      logger: o.logger,
    });
    await svc.start();
    removals.push({ p, svc });
    followers.push(
      svc.follow(o.signal).catch((err: unknown) => {
        if (!o.signal.aborted)
          o.logger?.error({ err: errorMessage(err) }, `policy ${p.name}: change stream lost`);
      }),
    );
  }

  const lastCheck = new Map<string, number>();
  const run = async (
    p: ResolvedPolicy,
    trigger: string,
    extra: Partial<Parameters<typeof runPolicy>[0]>,
  ): Promise<PolicyRunSummary | undefined> => {
    const s = state.get(p.name)!;
    s.lastRunStartMs = Date.now();
    s.lastTrigger = trigger;
    await save(s);
    o.logger?.info({ policy: p.name, trigger }, `policy ${p.name}: run (${trigger})`);
    try {
      const summary = await runPolicy({
        nc: o.nc,
        file: o.file,
        name: p.name,
        execute: true,
        signal: o.signal,
        logger: o.logger,
        topology: o.topology,
        ...extra,
      });
      s.lastRun = summary;
      o.onRun?.(trigger, summary);
      return summary;
    } catch (err) {
      if (!o.signal.aborted)
        o.logger?.error({ err: errorMessage(err) }, `policy ${p.name}: run failed`);
      return undefined;
    } finally {
      s.lastRunEndMs = Date.now();
      await save(s);
    }
  };

  /**
   * Per-user/group usage: a report walk gives each owner's resident bytes (files not released);
   * every owner above `high` gets a run restricted to their files, freeing down to `low`.
   */
  const ownerRuns = async (p: ResolvedPolicy, u: OwnerUsageTrigger) => {
    try {
      const ev = await runPolicyEvaluation({
        nc: o.nc,
        file: o.file,
        root: p.root,
        reportTop: 0,
        topK: 0,
        signal: o.signal,
        logger: o.logger,
        topology: o.topology,
      });
      const usage = u.by === "user" ? ev.report?.residentByUid : ev.report?.residentByGid;
      for (const [id, tally] of Object.entries(usage ?? {})) {
        if (o.signal.aborted || id === "other" || tally.bytes <= u.highBytes) continue;
        const only = [Number(id)];
        await run(p, `${u.by} ${id} above ${u.highBytes} bytes`, {
          targetBytes: tally.bytes - u.lowBytes,
          ...(u.by === "user" ? { onlyUids: only } : { onlyGids: only }),
        });
      }
    } catch (err) {
      if (!o.signal.aborted)
        o.logger?.error({ err: errorMessage(err) }, `policy ${p.name}: ${u.by} usage check failed`);
    }
  };

  while (!o.signal.aborted) {
    const now = Date.now();
    for (const p of o.file.policies) {
      if (o.signal.aborted) break;
      const s = state.get(p.name)!;
      if (p.action === "remove") continue;
      const t = p.triggers;
      if (t.usage && now - (lastCheck.get(p.name) ?? 0) >= t.checkEveryMs) {
        lastCheck.set(p.name, now);
        const usage = t.usage;
        try {
          const samples = await measureUsage(p.root, usage, o.file.settings);
          s.usage = {
            atMs: now,
            highPercent: usage.highPercent,
            lowPercent: usage.lowPercent,
            samples,
          };
          o.onUsage?.(p.name, samples);
          // Above high: runs until the fullest target is under low (hysteresis). On OSTs the
          // bytes a release frees land on whichever OSTs hold the files, so one run's byte
          // target may not be enough: measure again and go on while runs make progress.
          let target = bytesToFree(samples, usage);
          while (target > 0 && !o.signal.aborted) {
            const summary = await run(p, `usage above ${usage.highPercent}%`, {
              targetBytes: target,
              remainingBytes: async () =>
                bytesAboveLow(await measureUsage(p.root, usage, o.file.settings), usage),
            });
            const after = await measureUsage(p.root, usage, o.file.settings);
            s.usage = { ...s.usage, atMs: Date.now(), samples: after };
            o.onUsage?.(p.name, after);
            if (!summary || summary.done === 0 || summary.suspended) break;
            target = bytesAboveLow(after, usage);
          }
          await save(s);
        } catch (err) {
          o.logger?.error({ err: errorMessage(err) }, `policy ${p.name}: usage check failed`);
        }
      }
      if (t.ownerUsage && now - (lastCheck.get(`${p.name}.owners`) ?? 0) >= t.checkEveryMs) {
        lastCheck.set(`${p.name}.owners`, now);
        await ownerRuns(p, t.ownerUsage);
      }
      if (t.periodicMs > 0 && Date.now() - s.lastRunStartMs >= t.periodicMs)
        await run(p, `every ${t.periodicMs} ms`, {});
    }
    for (const { p, svc } of removals) {
      await svc.sweep().catch((err: unknown) => {
        o.logger?.error({ err: errorMessage(err) }, `policy ${p.name}: removal sweep failed`);
      });
      const s = state.get(p.name)!;
      s.removals = { ...svc.stats };
      await save(s);
    }
    await sleep(tickMs, undefined, { signal: o.signal }).catch(() => undefined);
  }
  await Promise.all(followers);
};
