import test from "ava";
import { parseAnswerHead } from "../src/answer-head.js";
import { watchAbort } from "../src/abort-watch.js";
import { getEventListeners } from "node:events";

test("an answer's head: status, fields by lower-case name whatever their case, repeated ones joined, values trimmed", (t) => {
  const head = [
    "HTTP/1.1 206 Partial Content",
    "Content-Length: 4096",
    'ETag:   "0x8D"  ',
    "x-ms-blob-content-md5: AAAA",
    "X-Repeated: a",
    "x-repeated:b",
    "x-etag: not-the-etag",
    "x-ms-meta-note: content-md5: in a value",
    " folded: continuation",
  ].join("\r\n");
  const a = parseAnswerHead(head);
  t.truthy(a);
  t.is(a!.status, 206);
  t.is(a!.headers.get("content-length"), "4096");
  t.is(a!.headers.get("etag"), '"0x8D"');
  t.is(a!.headers.get("x-ms-blob-content-md5"), "AAAA");
  t.is(a!.headers.get("x-repeated"), "a, b");
  t.is(a!.headers.get("content-md5"), undefined, "a name inside a value is not a field");
  t.is(a!.headers.get("folded"), undefined, "a folded line is not a field");
  t.is(a!.headers.get("http/1.1 206 partial content"), undefined);
  t.true(a!.headers.has("x-etag"));
  t.false(a!.headers.has("transfer-encoding"));
  t.is(parseAnswerHead("HTTP/1.0 404 Not Found")!.status, 404);
  t.is(parseAnswerHead("HTTP/1.0 404 Not Found")!.headers.get("etag"), undefined);
  t.is(parseAnswerHead("HTTP/2 200"), undefined);
  t.is(parseAnswerHead("garbage\r\nContent-Length: 1"), undefined);
});

test("watchAbort: one listener per signal for any number of watches; an abort calls the watches not yet removed, once", (t) => {
  const ac = new AbortController();
  const called: number[] = [];
  const unwatch = Array.from({ length: 100 }, (_, i) =>
    watchAbort(ac.signal, () => called.push(i)),
  );
  t.is(getEventListeners(ac.signal, "abort").length, 1);
  for (let i = 0; i < 100; i += 2) unwatch[i]!();
  t.is(getEventListeners(ac.signal, "abort").length, 1, "kept for the signal's next watches");
  ac.abort();
  ac.abort();
  t.deepEqual(
    called,
    Array.from({ length: 50 }, (_, i) => 2 * i + 1),
  );
  unwatch[1]!(); // after the abort: no effect
  t.is(called.length, 50);
});
