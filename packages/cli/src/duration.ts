import { UsageError, parseDurationText } from "@hsmfleet/core";

/** `500ms`, `30s`, `5m`, `1h`, `2d` or plain seconds (`30`) → milliseconds. */
export const parseDuration = (text: string): number => {
  const ms = parseDurationText(text);
  if (ms === undefined)
    throw new UsageError(`"${text}" is not a duration (e.g. 500ms, 30s, 5m, 1h)`);
  return ms;
};
