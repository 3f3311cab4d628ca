import test from "ava";
import { AggregateAuthenticationError, CredentialUnavailableError } from "@azure/identity";
import { BlobOperationError } from "../src/index.js";

const where = { container: "abc", location: "https://acct.blob.core.windows.net/abc" };

test("a failed Microsoft Entra ID sign-in says how the account URL form signs in and what else to give; an HTTP error gets no such hint", (t) => {
  // What DefaultAzureCredential throws when no source of a token is there (the SDK's own classes).
  const chained = new AggregateAuthenticationError(
    [new CredentialUnavailableError("EnvironmentCredential is unavailable.")],
    "ChainedTokenCredential authentication failed.",
  );
  const unavailable = new CredentialUnavailableError("ManagedIdentityCredential: no endpoint.");
  for (const cause of [chained, unavailable]) {
    const e = new BlobOperationError("create-container", where, cause);
    t.true(
      e.message.startsWith(`create-container container "abc" (${where.location}): `),
      e.message,
    );
    t.regex(
      e.message,
      /; no Microsoft Entra ID token: an account URL signs in with DefaultAzureCredential \(a managed identity on the VM, az login, or AZURE_TENANT_ID\/AZURE_CLIENT_ID\/AZURE_CLIENT_SECRET\); or give --storage a connection string or a SAS URL$/,
    );
    t.false(e.retryable, "signing in again the same way fails the same way");
  }
  const notFound = Object.assign(new Error("The specified container does not exist."), {
    statusCode: 404,
    code: "ContainerNotFound",
  });
  t.false(new BlobOperationError("list-blobs", where, notFound).message.includes("Entra ID"));
  // A hint the caller gives wins.
  t.true(
    new BlobOperationError("create-container", where, chained, { hint: "; own" }).message.endsWith(
      "; own",
    ),
  );
});
