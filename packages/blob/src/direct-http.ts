/** Small helpers of the direct requests (direct-put.ts, direct-get.ts, direct-list.ts). */
import type { IncomingMessage } from "node:http";
import type { RetryPipelineResponse } from "./retry-policy.js";

const XML_ENTITIES: Record<string, string> = {
  "&lt;": "<",
  "&gt;": ">",
  "&amp;": "&",
  "&quot;": '"',
  "&apos;": "'",
};

/** The service's <Message> text of an error body, else a status line (as the SDK's RestError). */
export const errorText = (status: number, body: string): string => {
  const m = /<Message>([\s\S]*?)<\/Message>/.exec(body);
  if (m?.[1] !== undefined)
    return m[1].replace(/&(lt|gt|amp|quot|apos);/g, (e) => XML_ENTITIES[e]!);
  return `Unexpected status code: ${status}`;
};

export const headerGetter = (res: IncomingMessage): RetryPipelineResponse["headers"] => ({
  get: (name: string) => {
    const v = res.headers[name.toLowerCase()];
    return Array.isArray(v) ? v.join(", ") : v;
  },
});

/** x-ms-date value, formatted once per second. */
let dateSecond = -1;
let dateText = "";
export const msDate = (): string => {
  const now = Date.now();
  const sec = Math.floor(now / 1000);
  if (sec !== dateSecond) {
    dateSecond = sec;
    dateText = new Date(sec * 1000).toUTCString();
  }
  return dateText;
};

/** The text of an error answer (first 64 KiB). */
export const readErrorText = (
  res: IncomingMessage,
  done: (text: string) => void,
  reject: (err: unknown) => void,
): void => {
  let text = "";
  res.setEncoding("utf8");
  res.on("data", (c: string) => {
    if (text.length < 64 * 1024) text += c;
  });
  res.on("end", () => done(text));
  res.on("error", reject);
};
