/**
 * The head of an HTTP/1.1 answer read by the socket pool (socket-get.ts): its status, and its
 * header fields looked up by name when asked. A GET of a small file reads about six of them
 * (framing, ETag, MD5s, error code); splitting every line, trimming it and filling a Map per
 * answer was a few microseconds of the event loop for each file (issue 17), a lookup in the
 * head's text is a fraction of that.
 *
 * Names are case-insensitive (looked up in a lower-cased copy of the head, values taken from the
 * original); a field given more than once is its values joined with ", "; values are trimmed. A
 * line that starts with white space (an obsolete folded continuation) is not a field.
 */
export interface AnswerHeaders {
  /** The field's value; `name` in lower case. */
  get(name: string): string | undefined;
  has(name: string): boolean;
}

const STATUS_LINE = /^HTTP\/1\.[01] (\d{3})/;

class HeadFields implements AnswerHeaders {
  readonly #head: string;
  #lower: string | undefined;

  constructor(head: string) {
    this.#head = head;
  }

  get(name: string): string | undefined {
    const lower = (this.#lower ??= this.#head.toLowerCase());
    const key = `\r\n${name}:`;
    let value: string | undefined;
    let at = lower.indexOf(key);
    while (at >= 0) {
      const start = at + key.length;
      let end = lower.indexOf("\r\n", start);
      if (end < 0) end = lower.length;
      const v = this.#head.slice(start, end).trim();
      value = value === undefined ? v : `${value}, ${v}`;
      at = lower.indexOf(key, end);
    }
    return value;
  }

  has(name: string): boolean {
    return this.get(name) !== undefined;
  }
}

/** `head`: the status line and the header lines (latin1), without the blank line. */
export const parseAnswerHead = (
  head: string,
): { status: number; headers: AnswerHeaders } | undefined => {
  const m = STATUS_LINE.exec(head);
  if (m === null) return undefined;
  return { status: Number(m[1]), headers: new HeadFields(head) };
};
