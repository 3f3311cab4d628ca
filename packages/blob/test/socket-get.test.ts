import { execFile } from "node:child_process";
import { randomBytes } from "node:crypto";
import { readFile, writeFile } from "node:fs/promises";
import { createServer as createTlsServer } from "node:tls";
import { join } from "node:path";
import { promisify } from "node:util";
import { tempDir } from "@hsmfleet/testkit";
import { getEventListeners } from "node:events";
import { createServer, type Server, type Socket } from "node:net";
import test from "ava";
import { SocketPool, type SocketEndpoint } from "../src/socket-get.js";

/** What the scripted server does with the n-th request (0-based) it reads. */
type Behaviour = (socket: Socket, head: string, n: number) => void;

interface RawServer {
  endpoint: SocketEndpoint;
  requests: string[];
  /** Connections accepted. */
  connections: () => number;
  close: () => Promise<void>;
}

/** A loopback TCP server that reads request heads and answers them as `behave` says. */
const rawServer = async (behave: Behaviour): Promise<RawServer> => {
  const requests: string[] = [];
  const sockets = new Set<Socket>();
  let accepted = 0;
  const server: Server = createServer((socket) => {
    accepted++;
    sockets.add(socket);
    socket.on("close", () => sockets.delete(socket));
    socket.on("error", () => undefined);
    let pending = "";
    socket.on("data", (d: Buffer) => {
      pending += d.toString("latin1");
      for (;;) {
        const end = pending.indexOf("\r\n\r\n");
        if (end < 0) return;
        const head = pending.slice(0, end);
        pending = pending.slice(end + 4);
        requests.push(head);
        behave(socket, head, requests.length - 1);
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const port = (server.address() as { port: number }).port;
  return {
    endpoint: { protocol: "http:", hostname: "127.0.0.1", port: String(port) },
    requests,
    connections: () => accepted,
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
};

const ok = (body: Buffer, extra = ""): Buffer =>
  Buffer.concat([
    Buffer.from(
      `HTTP/1.1 206 Partial Content\r\nContent-Length: ${body.length}\r\nETag: "0x1"\r\n${extra}\r\n`,
      "latin1",
    ),
    body,
  ]);

test("a body lands byte-identical in the buffer; the connection is kept and reused; headers are read", async (t) => {
  const body = randomBytes(3 * 1024 * 1024 + 17);
  const srv = await rawServer((s) => {
    // In pieces, to cross the head/body boundary inside one read and spread the body over many.
    const all = ok(body, "x-ms-blob-content-md5: AAAA\r\nX-Repeated: a\r\nx-repeated: b\r\n");
    s.write(all.subarray(0, 10));
    setTimeout(() => s.write(all.subarray(10)), 5);
  });
  t.teardown(() => srv.close());
  const pool = new SocketPool();
  t.teardown(() => pool.close());
  for (let i = 0; i < 3; i++) {
    const into = Buffer.alloc(body.length);
    const a = await pool.get(
      srv.endpoint,
      "/acct/c/b?x=1",
      { "x-ms-range": "bytes=0-9" },
      into,
      undefined,
      undefined,
    );
    t.is(a.status, 206);
    t.is(a.contentLength, body.length);
    t.is(a.headers.get("etag"), '"0x1"');
    t.is(a.headers.get("x-repeated"), "a, b");
    t.false(a.lengthMismatch);
    t.true(into.equals(body), `answer ${i} byte-identical`);
  }
  t.is(srv.connections(), 1, "one keep-alive connection for three GETs");
  t.regex(srv.requests[0]!, /^GET \/acct\/c\/b\?x=1 HTTP\/1\.1\r\n/);
  t.regex(srv.requests[0]!, /\r\nhost: 127\.0\.0\.1:\d+/);
  t.regex(srv.requests[0]!, /\r\nx-ms-range: bytes=0-9/);
});

test("a BodyListener is told when the body begins and how much of it is in the buffer after each read", async (t) => {
  const body = randomBytes(2 * 1024 * 1024 + 5);
  const srv = await rawServer((s) => {
    const all = ok(body);
    // The head with the first 100 body bytes, then the rest in two writes.
    const cut = all.length - body.length + 100;
    s.write(all.subarray(0, cut));
    setTimeout(() => s.write(all.subarray(cut, cut + 1024 * 1024)), 5);
    setTimeout(() => s.write(all.subarray(cut + 1024 * 1024)), 10);
  });
  t.teardown(() => srv.close());
  const pool = new SocketPool();
  t.teardown(() => pool.close());
  const into = Buffer.alloc(body.length);
  const seen: Array<string | number> = [];
  const a = await pool.get(srv.endpoint, "/c/b", {}, into, undefined, undefined, {
    begin: () => seen.push("begin"),
    received: (n) => {
      // What is announced is in the buffer already.
      if (!into.subarray(0, n).equals(body.subarray(0, n)))
        seen.push(`not yet in the buffer: ${n}`);
      seen.push(n);
    },
  });
  t.is(a.status, 206);
  t.true(into.equals(body));
  t.is(seen[0], "begin");
  t.is(seen.filter((x) => x === "begin").length, 1);
  const counts = seen.slice(1) as number[];
  t.true(
    counts.every((n) => typeof n === "number"),
    JSON.stringify(seen.slice(0, 5)),
  );
  t.true(counts.length >= 3, `several reads: ${counts.length}`);
  t.deepEqual(
    [...counts].sort((x, y) => x - y),
    counts,
    "growing",
  );
  t.is(counts.at(-1), body.length);
});

test("a body cut short by a close, or by a reset mid-body, is ECONNRESET naming the bytes received", async (t) => {
  const body = randomBytes(1024 * 1024);
  const srv = await rawServer((s, _h, n) => {
    const all = ok(body);
    s.write(all.subarray(0, all.length - body.length / 2), () => {
      if (n === 0) s.end();
      else s.resetAndDestroy();
    });
  });
  t.teardown(() => srv.close());
  const pool = new SocketPool();
  t.teardown(() => pool.close());
  for (const what of ["close", "reset"]) {
    const err = await t.throwsAsync(
      pool.get(srv.endpoint, "/c/b", {}, Buffer.alloc(body.length), undefined, undefined),
    );
    t.is((err as NodeJS.ErrnoException).code, "ECONNRESET", `${what}: ${err?.message}`);
    if (what === "close") t.regex(err.message, /after \d+ bytes/);
  }
});

test("another length is lengthMismatch (not read); an error answer keeps its body text and the connection", async (t) => {
  const xml =
    '<?xml version="1.0"?><Error><Code>BlobNotFound</Code><Message>no such blob</Message></Error>';
  const srv = await rawServer((s, _h, n) => {
    if (n === 0) s.write(ok(Buffer.alloc(10)));
    else if (n === 1)
      s.write(
        `HTTP/1.1 404 Not Found\r\nContent-Length: ${xml.length}\r\nx-ms-error-code: BlobNotFound\r\n\r\n${xml}`,
      );
    else s.write(ok(Buffer.from("abcd")));
  });
  t.teardown(() => srv.close());
  const pool = new SocketPool();
  t.teardown(() => pool.close());
  const into = Buffer.alloc(20, 7);
  const a = await pool.get(srv.endpoint, "/c/b", {}, into, undefined, undefined);
  t.true(a.lengthMismatch);
  t.is(a.contentLength, 10);
  t.true(into.equals(Buffer.alloc(20, 7)), "nothing written into the buffer");
  const b = await pool.get(srv.endpoint, "/c/b", {}, Buffer.alloc(4), undefined, undefined);
  t.is(b.status, 404);
  t.is(b.errorBody, xml);
  t.is(b.headers.get("x-ms-error-code"), "BlobNotFound");
  const four = Buffer.alloc(4);
  const c = await pool.get(srv.endpoint, "/c/b", {}, four, undefined, undefined);
  t.is(c.status, 206);
  t.is(four.toString(), "abcd");
  // The mismatched answer closed its connection; the error answer's was reused.
  t.is(srv.connections(), 2);
});

test("a pooled connection the server closed while idle is replaced once, without an error", async (t) => {
  const srv = await rawServer((s) => {
    s.end(ok(Buffer.from("hello")));
  });
  t.teardown(() => srv.close());
  const pool = new SocketPool();
  t.teardown(() => pool.close());
  for (let i = 0; i < 3; i++) {
    const into = Buffer.alloc(5);
    const a = await pool.get(srv.endpoint, "/c/b", {}, into, undefined, undefined);
    t.is(into.toString(), "hello");
    t.is(a.status, 206);
  }
  t.is(srv.connections(), 3);
});

test("abort destroys the connection and rejects with an AbortError; a silent server times out", async (t) => {
  const srv = await rawServer(() => undefined); // never answers
  t.teardown(() => srv.close());
  const pool = new SocketPool();
  t.teardown(() => pool.close());
  const ac = new AbortController();
  const p = pool.get(srv.endpoint, "/c/b", {}, Buffer.alloc(5), ac.signal, undefined);
  setTimeout(() => ac.abort(), 50);
  const err = await t.throwsAsync(p);
  t.is(err?.name, "AbortError");
  const slow = await t.throwsAsync(
    pool.get(srv.endpoint, "/c/b", {}, Buffer.alloc(5), undefined, 100),
  );
  t.is((slow as NodeJS.ErrnoException).code, "ETIMEDOUT");
});

test("a header value with a line break is refused (no request smuggling)", async (t) => {
  const pool = new SocketPool();
  await t.throwsAsync(
    pool.get(
      { protocol: "http:", hostname: "127.0.0.1", port: "9" },
      "/c/b",
      { "if-match": 'x"\r\nx-evil: 1' },
      Buffer.alloc(1),
      undefined,
      undefined,
    ),
    { instanceOf: TypeError },
  );
});

test("https: the body is read through TLS (certificate checked against the IP) byte-identical, over one connection", async (t) => {
  const dir = await tempDir();
  t.teardown(() => dir.cleanup());
  const key = join(dir.path, "key.pem");
  const cert = join(dir.path, "cert.pem");
  const ext = join(dir.path, "ext.cnf");
  await writeFile(ext, "[req]\ndistinguished_name=dn\n[dn]\n[san]\nsubjectAltName=IP:127.0.0.1\n");
  await promisify(execFile)("openssl", [
    ...["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", cert],
    ...["-days", "1", "-subj", "/CN=hsmfleet-test", "-config", ext, "-extensions", "san"],
  ]);
  const body = randomBytes(2 * 1024 * 1024 + 3);
  const server = createTlsServer({ key: await readFile(key), cert: await readFile(cert) }, (s) => {
    s.on("error", () => undefined);
    let pending = "";
    s.on("data", (d: Buffer) => {
      pending += d.toString("latin1");
      while (pending.includes("\r\n\r\n")) {
        pending = pending.slice(pending.indexOf("\r\n\r\n") + 4);
        s.write(ok(body));
      }
    });
  });
  let connections = 0;
  server.on("secureConnection", () => connections++);
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  t.teardown(() => new Promise<void>((resolve) => server.close(() => resolve())));
  const port = String((server.address() as { port: number }).port);
  const pool = new SocketPool({ ca: await readFile(cert) });
  t.teardown(() => pool.close());
  for (let i = 0; i < 2; i++) {
    const into = Buffer.alloc(body.length);
    const a = await pool.get(
      { protocol: "https:", hostname: "127.0.0.1", port },
      "/c/b",
      {},
      into,
      undefined,
      undefined,
    );
    t.is(a.status, 206);
    t.true(into.equals(body));
  }
  t.is(connections, 1);
  // Without the CA the certificate is refused.
  const strict = new SocketPool();
  t.teardown(() => strict.close());
  await t.throwsAsync(
    strict.get(
      { protocol: "https:", hostname: "127.0.0.1", port },
      "/c/b",
      {},
      Buffer.alloc(1),
      undefined,
      undefined,
    ),
  );
});

test("an error answer whose body does not fit beside the head is answered without it (the connection is closed), not read past the buffer", async (t) => {
  const big = "x".repeat(64 * 1024 - 20);
  const srv = await rawServer((s, _h, n) => {
    if (n === 0)
      s.write(
        `HTTP/1.1 500 Internal Server Error\r\nContent-Length: ${big.length}\r\nx-ms-error-code: InternalError\r\n\r\n${big}`,
      );
    else s.write(ok(Buffer.from("fine")));
  });
  t.teardown(() => srv.close());
  const pool = new SocketPool();
  t.teardown(() => pool.close());
  const a = await pool.get(srv.endpoint, "/c/b", {}, Buffer.alloc(4), undefined, 5000);
  t.is(a.status, 500);
  t.is(a.errorBody.length, 0);
  t.is(a.headers.get("x-ms-error-code"), "InternalError");
  const into = Buffer.alloc(4);
  await pool.get(srv.endpoint, "/c/b", {}, into, undefined, 5000);
  t.is(into.toString(), "fine");
  t.is(srv.connections(), 2);
});

test("a GET waiting for a free connection (maxSockets reached) is released by its abort signal at once", async (t) => {
  const srv = await rawServer(() => undefined); // holds the one connection's request forever
  t.teardown(() => srv.close());
  const pool = new SocketPool({ maxSockets: 1 });
  t.teardown(() => pool.close());
  const first = new AbortController();
  const busy = pool.get(srv.endpoint, "/c/a", {}, Buffer.alloc(1), first.signal, undefined);
  busy.catch(() => undefined);
  const ac = new AbortController();
  const waiting = pool.get(srv.endpoint, "/c/b", {}, Buffer.alloc(1), ac.signal, undefined);
  setTimeout(() => ac.abort(), 50);
  const t0 = Date.now();
  const err = await t.throwsAsync(
    Promise.race([
      waiting,
      new Promise((_r, reject) => setTimeout(() => reject(new Error("still waiting")), 3000)),
    ]),
  );
  t.is(err.name, "AbortError", err.message);
  t.true(Date.now() - t0 < 3000);
  first.abort();
});

test("GETs in flight on one signal share one abort listener; an abort rejects every one of them; finished GETs leave none of theirs", async (t) => {
  const hold: Socket[] = [];
  const srv = await rawServer((s, _head, n) => {
    if (n < 4) s.write(ok(Buffer.from("hello")));
    else hold.push(s); // never answers
  });
  t.teardown(() => srv.close());
  const pool = new SocketPool();
  t.teardown(() => pool.close());
  const ac = new AbortController();
  for (let i = 0; i < 4; i++) {
    const into = Buffer.alloc(5);
    await pool.get(srv.endpoint, "/c/b", {}, into, ac.signal, undefined);
    t.is(into.toString(), "hello");
  }
  t.true(getEventListeners(ac.signal, "abort").length <= 1);
  const stuck = Array.from({ length: 3 }, () =>
    pool.get(srv.endpoint, "/c/b", {}, Buffer.alloc(5), ac.signal, undefined),
  );
  while (hold.length < 3) await new Promise((r) => setTimeout(r, 5));
  t.is(getEventListeners(ac.signal, "abort").length, 1);
  ac.abort();
  for (const p of stuck) t.is((await t.throwsAsync(p))?.name, "AbortError");
});

test("an idle connection is closed idleMs after its last answer, not after its first: each answer starts its idle time again", async (t) => {
  const srv = await rawServer((s) => s.write(ok(Buffer.from("hello"))));
  t.teardown(() => srv.close());
  const pool = new SocketPool({ idleMs: 400 });
  t.teardown(() => pool.close());
  const get = () => pool.get(srv.endpoint, "/c/b", {}, Buffer.alloc(5), undefined, undefined);
  // Answers 250 ms apart: never 400 ms idle, so one connection throughout.
  for (let i = 0; i < 4; i++) {
    await get();
    await new Promise((r) => setTimeout(r, 250));
  }
  t.is(srv.connections(), 1);
  await new Promise((r) => setTimeout(r, 900));
  await get();
  t.is(srv.connections(), 2, "closed once idle for longer than idleMs");
});
