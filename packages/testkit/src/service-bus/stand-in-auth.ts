// Claims-based security of the Service Bus STAND-IN: the `$cbs` put-token check. A SAS token
// (`SharedAccessSignature sr=…&sig=…&se=…&skn=…`) is verified with the namespace key as Service
// Bus does (HMAC-SHA256 of `<encoded audience>\n<expiry>`); a JWT (Entra ID) is accepted only
// when the stand-in is told to, since it cannot check one.
import { createHmac, timingSafeEqual } from "node:crypto";

export type TokenCheck =
  { ok: true; audience: string } | { ok: false; status: number; description: string };

export interface StandInKeys {
  keyName: string;
  key: string;
  acceptJwt: boolean;
}

export const checkPutToken = (
  keys: StandInKeys,
  type: string,
  audience: string,
  token: unknown,
  nowMs = Date.now(),
): TokenCheck => {
  if (type === "jwt") {
    return keys.acceptJwt
      ? { ok: true, audience }
      : {
          ok: false,
          status: 401,
          description: "the stand-in does not accept JWT tokens (start it with acceptJwt)",
        };
  }
  if (type !== "servicebus.windows.net:sastoken" || typeof token !== "string") {
    return { ok: false, status: 400, description: `unsupported token type ${type}` };
  }
  const prefix = "SharedAccessSignature ";
  if (!token.startsWith(prefix))
    return { ok: false, status: 401, description: "not a shared access signature" };
  const fields = new Map<string, string>();
  for (const part of token.slice(prefix.length).split("&")) {
    const eq = part.indexOf("=");
    if (eq > 0) fields.set(part.slice(0, eq), part.slice(eq + 1));
  }
  const sr = fields.get("sr") ?? "";
  const se = fields.get("se") ?? "";
  const skn = decodeURIComponent(fields.get("skn") ?? "");
  const sig = decodeURIComponent(fields.get("sig") ?? "");
  if (skn !== keys.keyName)
    return { ok: false, status: 401, description: `unknown key name ${skn}` };
  if (!(Number(se) * 1000 > nowMs)) return { ok: false, status: 401, description: "token expired" };
  const expected = createHmac("sha256", keys.key).update(`${sr}\n${se}`).digest();
  const given = Buffer.from(sig, "base64");
  if (given.length !== expected.length || !timingSafeEqual(given, expected)) {
    return { ok: false, status: 401, description: "signature does not match the key" };
  }
  return { ok: true, audience: decodeURIComponent(sr) };
};

/** True if a token granted for `audience` covers the entity path (the audience is a URL). */
export const audienceCovers = (audience: string, entityPath: string): boolean => {
  let path: string;
  try {
    path = new URL(audience).pathname;
  } catch {
    return false;
  }
  const granted = path.replace(/^\/+|\/+$/g, "").toLowerCase();
  const wanted = entityPath.replace(/^\/+|\/+$/g, "").toLowerCase();
  return granted === "" || wanted === granted || wanted.startsWith(`${granted}/`);
};
