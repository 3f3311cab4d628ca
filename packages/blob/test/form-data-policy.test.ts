import { execFile } from "node:child_process";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { fileURLToPath } from "node:url";
import test from "ava";

const BLOB_INDEX = fileURLToPath(new URL("../src/index.js", import.meta.url));

/**
 * A fresh process (nothing loaded yet, unlike the test runner) creates a container through the
 * SDK client against a stand-in service, then says whether Node loaded its fetch implementation
 * (undici): the SDK's formDataPolicy used to touch the lazily loaded `FormData` global on every
 * request, a fixed cost of every command (issue 17).
 */
test("a request through the SDK client does not load Node's fetch implementation (undici)", async (t) => {
  const server = createServer((req, res) => {
    req.resume();
    req.on("end", () => res.writeHead(201, { "x-ms-request-id": "r" }).end());
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const accountUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}/acct`;
  const script = `
    const { createBlobServiceClient } = await import(${JSON.stringify(BLOB_INDEX)});
    const client = createBlobServiceClient(
      { kind: "sas-url", accountUrl: ${JSON.stringify(accountUrl)}, sas: "sig=x" },
      { maxRetries: 0 },
    );
    const created = await client.getContainerClient("box").createIfNotExists();
    process.stdout.write(JSON.stringify({
      succeeded: created.succeeded,
      undici: process.moduleLoadList.filter((m) => m.includes("undici")),
    }));`;
  try {
    const out = await new Promise<string>((resolve, reject) =>
      execFile(
        process.execPath,
        ["--input-type=module", "-e", script],
        { timeout: 60_000 },
        (err, stdout, stderr) =>
          err ? reject(new Error(`${err.message}\n${stderr}`)) : resolve(stdout),
      ),
    );
    const result = JSON.parse(out) as { succeeded: boolean; undici: string[] };
    t.true(result.succeeded, "the container was created");
    t.deepEqual(result.undici, [], "undici was loaded by the request");
  } finally {
    server.close();
  }
});
