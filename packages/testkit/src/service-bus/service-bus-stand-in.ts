// A Service Bus STAND-IN for tests: an AMQP 1.0 server on loopback (rhea, as the Azure SDK's own
// mock-hub) that answers what @azure/service-bus 7.9 does against a namespace reached with
// `UseDevelopmentEmulator=true`: SASL ANONYMOUS/PLAIN, `$cbs` put-token (SAS signatures checked
// with the key), sender links to queues and topics (single messages and batches), receiver links
// in peek-lock or receive-and-delete mode with credit and drain, settlement (complete, abandon,
// dead-letter with reason and description, lock lost), `$management` (renew-lock, peek,
// update-disposition). It is not Service Bus: no sessions, filters, scheduling or deferral.
import { randomBytes } from "node:crypto";
import type { AddressInfo, Server, Socket } from "node:net";
import rhea from "rhea";
import type { Connection, Delivery, EventContext, Message, Receiver, Sender } from "rhea";
import { audienceCovers } from "./stand-in-auth.js";
import type { StandInKeys } from "./stand-in-auth.js";
import { StandInNamespace } from "./stand-in-namespace.js";
import type {
  StandInCounters,
  StandInQueueOptions,
  StandInSendEntityOptions,
} from "./stand-in-namespace.js";
import { guidString, reorderGuidBytes } from "./stand-in-entity.js";
import type { StandInEntity, StandInEntityOptions } from "./stand-in-entity.js";
import { handleCbsRequest, handleManagementRequest, responseTo } from "./stand-in-requests.js";

export interface ServiceBusStandInOptions {
  /** Shared access key name; default `RootManageSharedAccessKey`. */
  keyName?: string;
  /** Shared access key; default 32 random bytes, base64. */
  key?: string;
  /** Accept JWT put-tokens (Entra ID) unchecked; default false. */
  acceptJwt?: boolean;
  /** How often expired locks are returned to their queue; default 100 ms. */
  lockSweepMs?: number;
}

export interface ServiceBusStandIn {
  readonly port: number;
  readonly keyName: string;
  readonly key: string;
  /** `Endpoint=sb://127.0.0.1:<port>;SharedAccessKeyName=…;SharedAccessKey=…;UseDevelopmentEmulator=true`. */
  readonly connectionString: string;
  readonly counters: StandInCounters & {
    putTokens: number;
    refusedTokens: number;
    refusedAttaches: number;
  };
  createQueue(name: string, options?: StandInQueueOptions): StandInEntity;
  createTopic(name: string, options?: StandInSendEntityOptions): void;
  createSubscription(topic: string, name: string, options?: StandInEntityOptions): StandInEntity;
  /** A queue, subscription or dead-letter queue by its address (for assertions). */
  entity(address: string): StandInEntity | undefined;
  /**
   * Detaches every receiver link of an entity with an error (default `amqp:link:detach-forced`),
   * as Service Bus does to an idle link or when it moves an entity; the connection stays. The
   * messages delivered on those links stay locked until settled by lock token or their lock expires.
   */
  detachReceivers(address: string, condition?: string): number;
  /** Drops every connection (as a service restart or network cut would). */
  dropConnections(): void;
  stop(): Promise<void>;
}

const MAX_MESSAGE_SIZE = 1024 * 1024;
const BATCH_FORMAT = 0x80013700;

interface ReceiveLink {
  sender: Sender;
  entity: StandInEntity;
  peekLock: boolean;
}

interface ConnectionState {
  audiences: string[];
  /** Reply links of `$cbs`/`$management` by their target address (the requests' reply_to). */
  replyLinks: Map<string, Sender>;
}

/** rhea link internals its typings leave out. */
interface LinkInternals {
  credit: number;
  _draining?: boolean;
  remote: { attach: { source?: unknown; target?: unknown; snd_settle_mode?: number } };
  local: { attach: { max_message_size?: number } };
}
const internals = (link: Sender | Receiver): LinkInternals => link as unknown as LinkInternals;

/**
 * Answers a drain request: the link's credit is used up and a flow with `drain` set goes back, as
 * AMQP 1.0 (2.6.7) asks and Service Bus does, also when the credit is already 0 (every credited
 * message sent). rhea only answers while credit is left, so a receiver draining after its last
 * message waited for an answer that never came (the SDK then closes the link after its drain
 * timeout, and the messages in flight on it stay locked until their lock expires).
 */
const answerDrain = (sender: Sender): void => {
  const link = sender as unknown as LinkInternals & {
    delivery_count: number;
    issue_flow: boolean;
    _drained: boolean;
    _get_drain: () => boolean;
    connection: { _register: () => void };
  };
  // rhea's own `_get_drain` minus its `credit > 0` condition, and answered once per request: the
  // credit left is used up and the flow carries `drain` with link-credit 0.
  link._get_drain = function (this: typeof link): boolean {
    if (!(this._draining === true && this._drained)) return false;
    this.delivery_count += this.credit;
    this.credit = 0;
    this._draining = false;
    return true;
  };
  link._drained = true;
  link.issue_flow = true;
  link.connection._register();
};

/** rhea's outgoing side of a session (its typings leave it out). */
interface OutgoingInternals {
  next_delivery_id: number;
  next_pending_delivery: number;
  available: () => number;
  transfer_window: () => number;
}
const outgoingOf = (sender: Sender): OutgoingInternals =>
  (sender.session as unknown as { outgoing: OutgoingInternals }).outgoing;

/**
 * Whether one more message can go out on the link now. Service Bus locks a message when it
 * delivers it, within the link's credit and the session's incoming window. rhea's `sendable()`
 * only asks for credit and a free slot in the session's 2,048-delivery buffer, and takes credit
 * only when a delivery is transferred: messages sent beyond the credit (or the peer's window)
 * waited in the buffer, locked though not delivered, and a drain (credit used up) stranded them
 * there until their lock expired. So the deliveries not transferred yet count against both.
 */
const canTransfer = (sender: Sender): boolean => {
  const out = outgoingOf(sender);
  const pending = out.next_delivery_id - out.next_pending_delivery;
  return (
    internals(sender).credit > pending && out.transfer_window() > pending && out.available() > 0
  );
};

const watchedSessions = new WeakSet<object>();
/**
 * A session flow (the receiver's incoming window opened) may let deliveries out that `canTransfer`
 * held back: the links of that session are pumped again (rhea raises no event for it).
 */
const watchSessionFlow = (sender: Sender, onFlow: (session: object) => void): void => {
  const session = sender.session as unknown as { on_flow: (frame: unknown) => void };
  if (watchedSessions.has(session)) return;
  watchedSessions.add(session);
  const original = session.on_flow.bind(session);
  session.on_flow = (frame: unknown) => {
    original(frame);
    onFlow(session);
  };
};

/** An AMQP `rejected` outcome carrying an error (rhea builds it; its typings omit it). */
const rejectedOutcome = (condition: string, description: string): unknown =>
  (rhea.message as unknown as { rejected: (o: unknown) => { described: () => unknown } })
    .rejected({ error: { condition, description } })
    .described();

const optionalText = (v: unknown): string | undefined =>
  typeof v === "string"
    ? v
    : typeof v === "number" || typeof v === "boolean"
      ? String(v)
      : undefined;

const ACCEPTED = (rhea.message as unknown as { accepted: () => { described: () => unknown } })
  .accepted()
  .described();

const addressOf = (terminus: unknown): string => {
  const address = (terminus as { address?: unknown } | undefined)?.address;
  return typeof address === "string" ? address.replace(/^amqps?:\/\/[^/]*\//, "") : "";
};

export const startServiceBusStandIn = async (
  options: ServiceBusStandInOptions = {},
): Promise<ServiceBusStandIn> => {
  const keys: StandInKeys = {
    keyName: options.keyName ?? "RootManageSharedAccessKey",
    key: options.key ?? randomBytes(32).toString("base64"),
    acceptJwt: options.acceptJwt ?? false,
  };
  const ns = new StandInNamespace();
  const counters = Object.assign(ns.counters, {
    putTokens: 0,
    refusedTokens: 0,
    refusedAttaches: 0,
  });
  const container = rhea.create_container({ id: "hsmfleet-service-bus-stand-in" });
  const mechanisms = container.sasl_server_mechanisms as {
    enable_anonymous: () => void;
    enable_plain: (check: () => boolean) => void;
  };
  mechanisms.enable_anonymous();
  mechanisms.enable_plain(() => true);
  const connections = new Map<Connection, ConnectionState>();
  const receiveLinks = new Set<ReceiveLink>();
  const linkBySender = new Map<Sender, ReceiveLink>();

  const stateOf = (c: Connection): ConnectionState => {
    let s = connections.get(c);
    if (!s) {
      s = { audiences: [], replyLinks: new Map() };
      connections.set(c, s);
    }
    return s;
  };
  const authorised = (c: Connection, entityPath: string): boolean =>
    stateOf(c).audiences.some((a) => audienceCovers(a, entityPath));
  const refuse = (link: Sender | Receiver, condition: string, description: string): void => {
    counters.refusedAttaches += 1;
    link.close({ condition, description });
  };

  const pump = (link: ReceiveLink): void => {
    const { sender } = link;
    watchSessionFlow(sender, onSessionFlow);
    while (sender.is_open() && canTransfer(sender)) {
      const d = link.entity.take(link.peekLock);
      if (!d) break;
      const delivery = sender.send(d.annotated, d.tag);
      if (!link.peekLock) delivery.update(true, ACCEPTED);
    }
    if (sender.is_open() && internals(sender)._draining) answerDrain(sender);
  };
  const pumpAll = (): void => {
    for (const link of receiveLinks) pump(link);
  };
  function onSessionFlow(session: object): void {
    for (const link of receiveLinks) if (link.sender.session === session) pump(link);
  }

  container.on("sender_open", (ctx: EventContext) => {
    const sender = ctx.sender!;
    const remote = internals(sender).remote.attach;
    const source = addressOf(remote.source);
    sender.set_source({ address: source });
    sender.set_target(remote.target as { address: string });
    if (source === "$cbs" || source.toLowerCase().endsWith("/$management")) {
      stateOf(ctx.connection).replyLinks.set(addressOf(remote.target), sender);
      return;
    }
    const entity = ns.entity(source);
    if (!entity)
      return refuse(
        sender,
        "amqp:not-found",
        `The messaging entity '${source}' could not be found.`,
      );
    if (!authorised(ctx.connection, source)) {
      return refuse(
        sender,
        "amqp:unauthorized-access",
        `Unauthorized access to '${source}': no valid put-token.`,
      );
    }
    const link: ReceiveLink = { sender, entity, peekLock: remote.snd_settle_mode !== 1 };
    receiveLinks.add(link);
    linkBySender.set(sender, link);
  });

  container.on("receiver_open", (ctx: EventContext) => {
    const receiver = ctx.receiver!;
    const remote = internals(receiver).remote.attach;
    const target = addressOf(remote.target);
    receiver.set_target({ address: target });
    receiver.set_source(remote.source as { address: string });
    internals(receiver).local.attach.max_message_size = MAX_MESSAGE_SIZE;
    if (target === "$cbs" || target.toLowerCase().endsWith("/$management")) return;
    if (!ns.isSendTarget(target))
      return refuse(
        receiver,
        "amqp:not-found",
        `The messaging entity '${target}' could not be found.`,
      );
    if (!authorised(ctx.connection, target)) {
      return refuse(
        receiver,
        "amqp:unauthorized-access",
        `Unauthorized access to '${target}': no valid put-token.`,
      );
    }
  });

  const answer = (ctx: EventContext, request: Message, target: string): void => {
    let response;
    if (target === "$cbs") {
      response = handleCbsRequest(keys, request);
      if (response.grantedAudience !== undefined) {
        counters.putTokens += 1;
        stateOf(ctx.connection).audiences.push(response.grantedAudience);
      } else counters.refusedTokens += 1;
    } else {
      const entityPath = target.slice(0, -"/$management".length);
      const entity = ns.entity(entityPath);
      if (!entity)
        response = {
          status: 404,
          description: `The messaging entity '${entityPath}' could not be found.`,
        };
      else if (!authorised(ctx.connection, entityPath))
        response = { status: 401, description: "no valid put-token" };
      else response = handleManagementRequest(entity, request);
    }
    const replyLinks = stateOf(ctx.connection).replyLinks;
    const reply =
      replyLinks.get(String(request.reply_to)) ??
      [...replyLinks.values()].find((s) => s.session === ctx.session);
    reply?.send(responseTo(request, response));
    pumpAll();
  };

  container.on("message", (ctx: EventContext) => {
    const target = addressOf(internals(ctx.receiver!).remote.attach.target);
    const format = (ctx as { format?: number }).format;
    if (target === "$cbs" || target.toLowerCase().endsWith("/$management")) {
      answer(ctx, ctx.message!, target);
      return;
    }
    let messages: Message[];
    if (format === BATCH_FORMAT) {
      const outer = rhea.message.decode(ctx.message as unknown as Buffer) as {
        body?: { content?: unknown };
      };
      const content = outer.body?.content;
      const sections = Array.isArray(content) ? content : [content];
      messages = sections.map((b) => rhea.message.decode(b as Buffer) as unknown as Message);
    } else messages = [ctx.message!];
    for (const m of messages) ns.send(target, m);
    pumpAll();
  });

  const settle = (
    ctx: EventContext,
    kind: "accepted" | "rejected" | "modified" | "released",
  ): void => {
    const link = linkBySender.get(ctx.sender!);
    const delivery = ctx.delivery as Delivery & {
      tag: Buffer;
      remote_state?: Record<string, unknown>;
      remote_settled?: boolean;
      settled?: boolean;
    };
    if (!link || delivery.settled) return; // a second disposition of a delivery already settled
    // In rcv-settle-mode "second" the receiver settles first and never confirms our settlement
    // (rhea's receiver sends no disposition for a delivery the sender settled): without this,
    // rhea keeps every delivery in the session's 2,048-slot buffer and the link stalls.
    const settleDelivery = (outcome: unknown): void => {
      delivery.update(true, outcome);
      delivery.remote_settled = true;
    };
    const token = guidString(reorderGuidBytes(Buffer.from(delivery.tag)));
    const state = delivery.remote_state ?? {};
    let ok: boolean;
    if (kind === "accepted") ok = link.entity.complete(token);
    else if (kind === "rejected") {
      const error = (state.error ?? {}) as {
        condition?: unknown;
        description?: unknown;
        info?: Record<string, unknown>;
      };
      const info = { ...error.info };
      const reason = info.DeadLetterReason;
      const description = info.DeadLetterErrorDescription;
      delete info.DeadLetterReason;
      delete info.DeadLetterErrorDescription;
      ok = link.entity.deadLetterMessage(
        token,
        optionalText(reason),
        optionalText(description),
        info,
      );
    } else if (kind === "modified" && state.undeliverable_here === true) {
      settleDelivery(
        rejectedOutcome("amqp:not-implemented", "the stand-in does not implement deferral"),
      );
      return;
    } else {
      ok = link.entity.abandon(
        token,
        state.message_annotations as Record<string, unknown> | undefined,
      );
    }
    if (ok) settleDelivery(ACCEPTED);
    else {
      settleDelivery(
        rejectedOutcome(
          "com.microsoft:message-lock-lost",
          `The lock supplied is invalid. Either the lock expired, or the message has already been removed from the queue. Lock token: ${token}`,
        ),
      );
    }
    pumpAll();
  };
  container.on("accepted", (ctx: EventContext) => settle(ctx, "accepted"));
  container.on("rejected", (ctx: EventContext) => settle(ctx, "rejected"));
  container.on("modified", (ctx: EventContext) => settle(ctx, "modified"));
  container.on("released", (ctx: EventContext) => settle(ctx, "released"));
  container.on("sendable", (ctx: EventContext) => {
    const link = linkBySender.get(ctx.sender!);
    if (link) pump(link);
  });
  container.on("sender_draining", (ctx: EventContext) => {
    const link = linkBySender.get(ctx.sender!);
    if (link) pump(link);
    else ctx.sender!.set_drained(true);
  });

  const forgetSender = (sender: Sender): void => {
    const link = linkBySender.get(sender);
    if (link) {
      linkBySender.delete(sender);
      receiveLinks.delete(link);
    }
  };
  container.on("sender_close", (ctx: EventContext) => {
    forgetSender(ctx.sender!);
    ctx.sender!.close();
  });
  container.on("receiver_close", (ctx: EventContext) => ctx.receiver!.close());
  const forgetConnection = (c: Connection): void => {
    connections.delete(c);
    for (const link of [...receiveLinks])
      if (link.sender.connection === c) forgetSender(link.sender);
  };
  container.on("connection_close", (ctx: EventContext) => {
    forgetConnection(ctx.connection);
    ctx.connection.close();
  });
  container.on("disconnected", (ctx: EventContext) => forgetConnection(ctx.connection));
  container.on("error", () => undefined);

  const server = container.listen({
    port: 0,
    host: "127.0.0.1",
    treat_modified_as_released: false,
  } as never) as Server;
  await new Promise<void>((resolve, reject) => {
    server.once("listening", resolve);
    server.once("error", reject);
  });
  const sockets = new Set<Socket>();
  server.on("connection", (s) => {
    sockets.add(s);
    s.on("close", () => sockets.delete(s));
  });
  const port = (server.address() as AddressInfo).port;
  const sweep = setInterval(() => {
    let changed = false;
    for (const e of ns.entities()) changed = e.expireLocks() || changed;
    if (changed) pumpAll();
  }, options.lockSweepMs ?? 100);
  sweep.unref();

  return {
    port,
    keyName: keys.keyName,
    key: keys.key,
    connectionString: `Endpoint=sb://127.0.0.1:${port};SharedAccessKeyName=${keys.keyName};SharedAccessKey=${keys.key};UseDevelopmentEmulator=true`,
    counters,
    createQueue: (name, o) => ns.createQueue(name, o),
    createTopic: (name, o) => ns.createTopic(name, o),
    createSubscription: (topic, name, o) => ns.createSubscription(topic, name, o),
    entity: (address) => ns.entity(address),
    detachReceivers: (address, condition = "amqp:link:detach-forced") => {
      const links = [...receiveLinks].filter((l) => l.entity.path === address);
      for (const l of links) {
        forgetSender(l.sender);
        l.sender.close({
          condition,
          description: `The link was detached by the stand-in (${condition}).`,
        });
      }
      return links.length;
    },
    dropConnections: () => {
      for (const s of sockets) s.destroy();
    },
    stop: async () => {
      clearInterval(sweep);
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
};
