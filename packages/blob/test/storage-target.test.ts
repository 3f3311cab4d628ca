import test, { type ExecutionContext } from "ava";
import { UsageError } from "@hsmfleet/core";
import {
  describeStorageTarget,
  parseConnectionString,
  parseStorageTarget,
  redactSecrets,
} from "../src/index.js";

const KEY = "c2VjcmV0LWtleS1kby1ub3QtbGVhay1tZS1wbGVhc2UtMDEyMzQ1Njc4OWFiY2RlZg==";
const SIG = "Zm9vYmFyc2lnbmF0dXJlJTJCc2VjcmV0";
const CS = `DefaultEndpointsProtocol=https;AccountName=hpcdata;AccountKey=${KEY};EndpointSuffix=core.windows.net`;

const noLeak = (t: ExecutionContext, text: string) => {
  t.false(text.includes(KEY), `key leaked: ${text}`);
  t.false(text.includes(KEY.slice(0, 20)), `key prefix leaked: ${text}`);
  t.false(text.includes(SIG), `sig leaked: ${text}`);
};

test("connection strings", (t) => {
  t.deepEqual(parseStorageTarget(CS), {
    kind: "connection-string",
    connectionString: CS,
    accountName: "hpcdata",
    blobEndpoint: "https://hpcdata.blob.core.windows.net",
  });
  const azurite =
    `DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=${KEY};` +
    "BlobEndpoint=http://127.0.0.1:10000/devstoreaccount1/;";
  t.like(parseStorageTarget(azurite), {
    kind: "connection-string",
    accountName: "devstoreaccount1",
    blobEndpoint: "http://127.0.0.1:10000/devstoreaccount1",
  });
  t.like(parseStorageTarget("UseDevelopmentStorage=true"), {
    accountName: "devstoreaccount1",
    blobEndpoint: "http://127.0.0.1:10000/devstoreaccount1",
  });
  // SAS connection string: account name from the endpoint.
  const sasCs = `BlobEndpoint=https://acct2.blob.core.windows.net/;SharedAccessSignature=sv=2024-08-04&ss=b&srt=sco&sp=rwdlac&se=2030-01-01T00:00:00Z&sig=${SIG}`;
  t.like(parseStorageTarget(sasCs), {
    kind: "connection-string",
    accountName: "acct2",
    blobEndpoint: "https://acct2.blob.core.windows.net",
  });
  t.like(parseConnectionString(sasCs), {
    sas: `sv=2024-08-04&ss=b&srt=sco&sp=rwdlac&se=2030-01-01T00:00:00Z&sig=${SIG}`,
  });
  // Keys are case-insensitive, sovereign clouds have their own suffix.
  t.like(
    parseStorageTarget(`accountname=gov;accountkey=${KEY};endpointsuffix=core.usgovcloudapi.net`),
    { blobEndpoint: "https://gov.blob.core.usgovcloudapi.net" },
  );
});

test("account URLs (Entra ID) and SAS URLs", (t) => {
  t.deepEqual(parseStorageTarget("https://hpcdata.blob.core.windows.net"), {
    kind: "account-url",
    accountUrl: "https://hpcdata.blob.core.windows.net",
  });
  t.deepEqual(parseStorageTarget(" https://hpcdata.blob.core.windows.net/ "), {
    kind: "account-url",
    accountUrl: "https://hpcdata.blob.core.windows.net",
  });
  t.deepEqual(parseStorageTarget("https://hpcdata.blob.core.windows.net/archive"), {
    kind: "account-url",
    accountUrl: "https://hpcdata.blob.core.windows.net",
    container: "archive",
  });
  const accountSas = `https://hpcdata.blob.core.windows.net/?sv=2024-08-04&ss=b&srt=sco&sp=rwlac&se=2030-01-01T00:00:00Z&sig=${SIG}`;
  t.deepEqual(parseStorageTarget(accountSas), {
    kind: "sas-url",
    accountUrl: "https://hpcdata.blob.core.windows.net",
    sas: `sv=2024-08-04&ss=b&srt=sco&sp=rwlac&se=2030-01-01T00:00:00Z&sig=${SIG}`,
  });
  const containerSas = `https://hpcdata.blob.core.windows.net/archive?sv=2024-08-04&sr=c&sp=racwl&sig=${SIG}`;
  t.deepEqual(parseStorageTarget(containerSas), {
    kind: "sas-url",
    accountUrl: "https://hpcdata.blob.core.windows.net",
    sas: `sv=2024-08-04&sr=c&sp=racwl&sig=${SIG}`,
    container: "archive",
  });
  // Emulator URLs are path-style: the account is the first path segment.
  t.deepEqual(parseStorageTarget(`http://127.0.0.1:10000/devstoreaccount1/box?sp=r&sig=${SIG}`), {
    kind: "sas-url",
    accountUrl: "http://127.0.0.1:10000/devstoreaccount1",
    sas: `sp=r&sig=${SIG}`,
    container: "box",
  });
});

test("environment fallback", (t) => {
  const env = { AZURE_STORAGE_CONNECTION_STRING: CS };
  t.like(parseStorageTarget(undefined, env), { kind: "connection-string", accountName: "hpcdata" });
  t.like(parseStorageTarget("  ", env), { kind: "connection-string" });
  t.like(parseStorageTarget("https://other.blob.core.windows.net", env), { kind: "account-url" });
  t.is(parseStorageTarget(undefined, {}), undefined);
  t.is(parseStorageTarget(undefined, { AZURE_STORAGE_CONNECTION_STRING: "" }), undefined);
  const err = t.throws(
    () => parseStorageTarget(undefined, { AZURE_STORAGE_CONNECTION_STRING: `AccountKey=${KEY}` }),
    { instanceOf: UsageError },
  );
  t.regex(
    err.message,
    /^AZURE_STORAGE_CONNECTION_STRING: has neither AccountName nor BlobEndpoint/,
  );
  noLeak(t, err.message);
});

test("unparseable input is a UsageError that never shows the key or the signature", (t) => {
  const bad: Array<[string, RegExp]> = [
    [KEY, /is neither a connection string/],
    [`AccountName=a;AccountKey=${KEY}!!`, /AccountKey is not a base64 key/],
    [`AccountName=a;AccountKey=${KEY};junk`, /part 3 is not Key=Value/],
    [`AccountName=a;SharedAccessSignature=sv=1&sp=r`, /SharedAccessSignature has no sig=/],
    [`AccountName=a`, /neither AccountKey nor SharedAccessSignature/],
    [`AccountName=a;AccountKey=${KEY};DefaultEndpointsProtocol=ftp`, /DefaultEndpointsProtocol/],
    [
      `BlobEndpoint=http://acct.blob.core.windows.net;AccountKey=${KEY};AccountName=a`,
      /http:\/\/ is only allowed for a local emulator/,
    ],
    [`https://acct.blob.core.windows.net/box?sv=1&sp=r&se=2030-01-01&s1g=${SIG}`, /no sig=/],
    [`https://acct.blob.core.windows.net/box?sv=1&sig=`, /empty sig=/],
    [
      `https://acct.blob.core.windows.net/box/dir/blob?sig=${SIG}`,
      /names a blob path \(box\/dir\/blob\)/,
    ],
    [`https://acct.blob.core.windows.net/Bad_Name?sig=${SIG}`, /not a container name/],
    [
      `https://acct.dfs.core.windows.net/?sig=${SIG}`,
      /Data Lake \(dfs\) endpoint; use the blob endpoint \(acct.blob.core.windows.net\)/,
    ],
    [`http://acct.blob.core.windows.net/?sig=${SIG}`, /only allowed for a local emulator/],
    [`https://user:${KEY}@acct.blob.core.windows.net/`, /user name or password/],
    [`https://acct.blob.core.windows.net:99999/?sig=${SIG}`, /is not a valid URL/],
    [`ftp://acct.blob.core.windows.net/?sig=${SIG}`, /ftp: URLs are not storage endpoints/],
    [`http://127.0.0.1:10000/?sig=${SIG}`, /the account name must follow it/],
  ];
  for (const [input, message] of bad) {
    const err = t.throws(() => parseStorageTarget(input), { instanceOf: UsageError }, input);
    t.regex(err.message, message, input);
    t.regex(err.message, /^--storage/);
    noLeak(t, err.message);
  }
});

test("describe and redact keep secrets out", (t) => {
  const cs = parseStorageTarget(CS)!;
  t.is(
    describeStorageTarget(cs),
    "DefaultEndpointsProtocol=https;AccountName=hpcdata;AccountKey=[redacted];EndpointSuffix=core.windows.net",
  );
  const sas = parseStorageTarget(
    `https://hpcdata.blob.core.windows.net/archive?sv=2024-08-04&se=2030-01-01T00%3A00%3A00Z&sr=c&sp=racwl&sig=${SIG}`,
  )!;
  t.is(
    describeStorageTarget(sas),
    "https://hpcdata.blob.core.windows.net/archive?sv=2024-08-04&se=2030-01-01T00%3A00%3A00Z&sr=c&sp=racwl&sig=[redacted]",
  );
  t.is(
    describeStorageTarget(parseStorageTarget("https://hpcdata.blob.core.windows.net")!),
    "https://hpcdata.blob.core.windows.net (Microsoft Entra ID)",
  );
  const texts = [
    `connect failed: ${CS}`,
    `GET https://a.blob.core.windows.net/c/b?sv=1&sig=${SIG}&sp=r failed`,
    `GET https://a.blob.core.windows.net/c/b?SIG=${SIG}`,
    `x-ms-copy-source: https%3A%2F%2Fa%2Fb%3Fsv%3D1%26sig%3D${SIG}%26sp%3Dr`,
    `BlobEndpoint=https://a/;SharedAccessSignature=sv=1&sig=${SIG};`,
    `"accountKey":"${KEY}" AccountKey = ${KEY}`,
    `authorization: Bearer ${KEY}.${SIG}`,
    `Authorization: SharedKey hpcdata:${KEY}`,
  ];
  for (const text of texts) {
    const out = redactSecrets(text);
    noLeak(t, out);
    t.true(out.includes("[redacted]"), out);
  }
  t.is(
    redactSecrets(`?sv=1&sig=${SIG}&sp=r`),
    "?sv=1&sig=[redacted]&sp=r",
    "other SAS fields stay readable",
  );
  t.is(
    redactSecrets(`a%3Fsv%3D1%26sig%3D${SIG}%26sp%3Dr`),
    "a%3Fsv%3D1%26sig%3D[redacted]%26sp%3Dr",
  );
  t.is(redactSecrets("nothing secret here; design=1"), "nothing secret here; design=1");
});
