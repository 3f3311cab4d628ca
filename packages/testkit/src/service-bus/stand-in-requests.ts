// Request/response nodes of the Service Bus STAND-IN: `$cbs` (put-token) and
// `<entity>/$management` (renew-lock, peek-message, update-disposition), answered the way
// @azure/core-amqp and @azure/service-bus read the answers: `status-code`/`statusCode` in the
// application properties, `correlation_id` = the request's `message_id`.
import rhea from "rhea";
import type { Message } from "rhea";
import { checkPutToken } from "./stand-in-auth.js";
import type { StandInKeys } from "./stand-in-auth.js";
import { guidString } from "./stand-in-entity.js";
import type { StandInEntity } from "./stand-in-entity.js";

export interface StandInResponse {
  status: number;
  description: string;
  body?: unknown;
  /** `$cbs`: the audience a valid token grants. */
  grantedAudience?: string;
  /** AMQP error condition of a failure (the SDK maps it to a ServiceBusError code). */
  condition?: string;
}

/** Builds the response message to a request. */
export const responseTo = (request: Message, response: StandInResponse): Message => ({
  to: request.reply_to,
  correlation_id: request.message_id,
  application_properties: {
    "status-code": response.status,
    statusCode: response.status,
    "status-description": response.description,
    statusDescription: response.description,
    ...(response.condition
      ? { "error-condition": response.condition, errorCondition: response.condition }
      : {}),
  },
  body: response.body ?? {},
});

export const handleCbsRequest = (keys: StandInKeys, request: Message): StandInResponse => {
  const props = (request.application_properties ?? {}) as Record<string, unknown>;
  if (props.operation !== "put-token")
    return { status: 400, description: `unknown $cbs operation ${String(props.operation)}` };
  const check = checkPutToken(keys, String(props.type), String(props.name), request.body);
  if (!check.ok) return { status: check.status, description: check.description };
  return { status: 202, description: "Accepted", grantedAudience: check.audience };
};

const lockTokensOf = (body: Record<string, unknown>): string[] => {
  const raw = body["lock-tokens"];
  const list = Array.isArray(raw) ? raw : [];
  return list.map((t) => (Buffer.isBuffer(t) ? guidString(t) : String(t)));
};

const numberOf = (v: unknown): number => {
  if (typeof v === "number") return v;
  if (typeof v === "bigint") return Number(v);
  if (Buffer.isBuffer(v) && v.length === 8) return Number(v.readBigInt64BE());
  return Number(v);
};

/** A `$management` request on one entity. */
export const handleManagementRequest = (
  entity: StandInEntity,
  request: Message,
  nowMs = Date.now(),
): StandInResponse => {
  const props = (request.application_properties ?? {}) as Record<string, unknown>;
  const body = (request.body ?? {}) as Record<string, unknown>;
  switch (props.operation) {
    case "com.microsoft:renew-lock": {
      const expirations: Date[] = [];
      for (const token of lockTokensOf(body)) {
        const until = entity.renewLock(token, nowMs);
        if (until === undefined) return lockLost(token);
        expirations.push(new Date(until));
      }
      return { status: 200, description: "OK", body: { expirations } };
    }
    case "com.microsoft:peek-message": {
      const from = numberOf(body["from-sequence-number"]);
      const count = numberOf(body["message-count"]);
      const messages = entity.peek(from, count).map((m) => ({ message: rhea.message.encode(m) }));
      if (messages.length === 0) return { status: 204, description: "No Content" };
      return { status: 200, description: "OK", body: { messages } };
    }
    case "com.microsoft:update-disposition": {
      const status = String(body["disposition-status"]);
      for (const token of lockTokensOf(body)) {
        let ok: boolean;
        if (status === "completed") ok = entity.complete(token);
        else if (status === "abandoned") ok = entity.abandon(token);
        else if (status === "suspended") {
          const reason = body["deadletter-reason"];
          const description = body["deadletter-description"];
          ok = entity.deadLetterMessage(
            token,
            typeof reason === "string" ? reason : undefined,
            typeof description === "string" ? description : undefined,
          );
        } else
          return {
            status: 400,
            description: `the stand-in does not implement disposition ${status}`,
          };
        if (!ok) return lockLost(token);
      }
      return { status: 200, description: "OK" };
    }
    default:
      return {
        status: 501,
        description: `the stand-in does not implement ${String(props.operation)}`,
      };
  }
};

const lockLost = (token: string): StandInResponse => ({
  status: 410,
  condition: "com.microsoft:message-lock-lost",
  description: `The lock supplied is invalid. Either the lock expired, or the message has already been removed from the queue. Lock token: ${token}`,
});
