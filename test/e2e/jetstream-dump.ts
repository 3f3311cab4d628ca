/**
 * A readable dump of what each JetStream node of a test cluster holds — streams (leader, replicas
 * and their lag, messages) and consumers (leader, pending, ack pending, waiting pulls) — read from
 * every node's HTTP monitoring endpoint (/jsz). Used when a clustered test overruns, so the failure
 * names where the work stands instead of only "timed out".
 */
import type { NatsServerFixture } from "@hsmfleet/testkit";

interface JszReplica {
  name: string;
  current: boolean;
  offline?: boolean;
  lag?: number;
  active?: number;
}

interface JszCluster {
  leader?: string;
  replicas?: JszReplica[];
}

interface JszConsumer {
  name: string;
  config?: { durable_name?: string; filter_subject?: string; num_replicas?: number };
  cluster?: JszCluster;
  delivered?: { stream_seq: number; consumer_seq: number };
  ack_floor?: { stream_seq: number };
  num_pending?: number;
  num_ack_pending?: number;
  num_waiting?: number;
  num_redelivered?: number;
}

interface JszStream {
  name: string;
  cluster?: JszCluster;
  state?: { messages: number; first_seq: number; last_seq: number; consumer_count: number };
  consumer_detail?: JszConsumer[];
}

interface Jsz {
  meta_cluster?: { leader?: string; replicas?: JszReplica[] };
  account_details?: Array<{ name: string; stream_detail?: JszStream[] }>;
}

const replicas = (c: JszCluster | undefined): string =>
  (c?.replicas ?? [])
    .map(
      (r) =>
        `${r.name}${r.offline === true ? " offline" : r.current ? "" : " behind"}${r.lag ? ` lag ${r.lag}` : ""}`,
    )
    .join(", ");

const describeConsumer = (c: JszConsumer): string =>
  `    consumer ${c.name} (leader ${c.cluster?.leader ?? "?"}${c.cluster?.replicas?.length ? `; ${replicas(c.cluster)}` : ""}): ` +
  `pending ${c.num_pending ?? 0}, ack pending ${c.num_ack_pending ?? 0}, waiting pulls ${c.num_waiting ?? 0}, ` +
  `redelivered ${c.num_redelivered ?? 0}, delivered stream seq ${c.delivered?.stream_seq ?? 0}, ` +
  `ack floor ${c.ack_floor?.stream_seq ?? 0}`;

const getJson = async <T>(url: string, timeoutMs: number): Promise<T> => {
  const res = await fetch(url, { signal: AbortSignal.timeout(timeoutMs) });
  return (await res.json()) as T;
};

/** The node's JetStream view and its server name (/jsz of nats-server 2.9 does not carry it). */
const readJsz = async (monitorUrl: string, timeoutMs: number): Promise<Jsz & { name: string }> => {
  const [varz, jsz] = await Promise.all([
    getJson<{ server_name?: string }>(`${monitorUrl}/varz`, timeoutMs),
    getJson<Jsz>(`${monitorUrl}/jsz?accounts=true&streams=true&consumers=true`, timeoutMs),
  ]);
  return { ...jsz, name: varz.server_name ?? "?" };
};

/** One node's view; the node's own failure (it is down, it does not answer) is part of the text. */
export const dumpNode = async (node: NatsServerFixture, timeoutMs = 5000): Promise<string> => {
  if (node.monitorUrl === undefined) return `${node.url}: no monitoring endpoint`;
  let jsz: Jsz & { name: string };
  try {
    jsz = await readJsz(node.monitorUrl, timeoutMs);
  } catch (err) {
    return `${node.url} (pid ${node.pid}): /jsz did not answer (${err instanceof Error ? err.message : String(err)})`;
  }
  const lines = [
    `node ${jsz.name} ${node.url} (pid ${node.pid}): meta leader ${jsz.meta_cluster?.leader ?? "none"}; peers ${replicas(jsz.meta_cluster)}`,
  ];
  for (const account of jsz.account_details ?? []) {
    for (const s of account.stream_detail ?? []) {
      lines.push(
        `  stream ${s.name} (leader ${s.cluster?.leader ?? "none"}; ${replicas(s.cluster)}): ` +
          `${s.state?.messages ?? 0} messages, seq ${s.state?.first_seq ?? 0}–${s.state?.last_seq ?? 0}, ` +
          `${s.state?.consumer_count ?? 0} consumers`,
      );
      for (const c of s.consumer_detail ?? []) lines.push(describeConsumer(c));
    }
  }
  return lines.join("\n");
};

/** Every node's view, one block each. */
export const dumpCluster = async (nodes: readonly NatsServerFixture[]): Promise<string> =>
  (await Promise.all(nodes.map((n) => dumpNode(n)))).join("\n");

/** Consumers of `stream` whose leader is this node (empty when the node does not answer). */
export const consumersLedBy = async (
  node: NatsServerFixture,
  stream: string,
  timeoutMs = 2000,
): Promise<string[]> => {
  if (node.monitorUrl === undefined) return [];
  try {
    const jsz = await readJsz(node.monitorUrl, timeoutMs);
    return (jsz.account_details ?? [])
      .flatMap((a) => a.stream_detail ?? [])
      .filter((s) => s.name === stream)
      .flatMap((s) => s.consumer_detail ?? [])
      .filter((c) => c.cluster?.leader === jsz.name)
      .map((c) => c.name);
  } catch {
    return [];
  }
};
