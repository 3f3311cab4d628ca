/**
 * Microsoft Entra ID bearer tokens for requests sent without the Azure SDK (direct-put.ts): taken
 * from the storage target's TokenCredential (DefaultAzureCredential: a VM's managed identity, …)
 * and kept until shortly before they expire, as the SDK's bearer-token policy does.
 */

/** Scope of Azure Storage data-plane tokens. */
export const STORAGE_TOKEN_SCOPE = "https://storage.azure.com/.default";

/** What a token source returns (structural subset of @azure/core-auth's AccessToken). */
export interface AccessTokenLike {
  token: string;
  expiresOnTimestamp: number;
  refreshAfterTimestamp?: number;
}

/** Structural subset of @azure/core-auth's TokenCredential. */
export interface TokenSource {
  getToken(
    scopes: string | string[],
    options?: { abortSignal?: AbortSignal },
  ): Promise<AccessTokenLike | null>;
}

/** Refresh this long before expiry (the SDK's bearer policy uses the same window). */
export const TOKEN_REFRESH_MARGIN_MS = 2 * 60_000;

export interface BearerTokenCacheOptions {
  /** Default STORAGE_TOKEN_SCOPE. */
  scope?: string;
  /** Default TOKEN_REFRESH_MARGIN_MS. */
  refreshMarginMs?: number;
  /** Clock, for tests. Default Date.now. */
  now?: () => number;
}

/**
 * One cached token: `get()` returns it while it is fresh (before its refreshAfter time, and more
 * than the margin before expiry); otherwise one refresh runs at a time for every caller. Should a
 * refresh fail while the old token is still valid, the old token is used and the next call tries
 * again. The token itself is never logged or put into messages.
 */
export class BearerTokenCache {
  readonly #source: TokenSource;
  readonly #scope: string;
  readonly #margin: number;
  readonly #now: () => number;
  #current: AccessTokenLike | undefined;
  #refreshing: Promise<string> | undefined;

  constructor(source: TokenSource, options: BearerTokenCacheOptions = {}) {
    this.#source = source;
    this.#scope = options.scope ?? STORAGE_TOKEN_SCOPE;
    this.#margin = options.refreshMarginMs ?? TOKEN_REFRESH_MARGIN_MS;
    this.#now = options.now ?? Date.now;
  }

  #fresh(t: AccessTokenLike | undefined, now: number): t is AccessTokenLike {
    if (t === undefined) return false;
    if (t.refreshAfterTimestamp !== undefined && now >= t.refreshAfterTimestamp) return false;
    return now < t.expiresOnTimestamp - this.#margin;
  }

  /** A token: the cached one while fresh, else a new one. */
  get(signal?: AbortSignal): Promise<string> {
    const now = this.#now();
    if (this.#fresh(this.#current, now)) return Promise.resolve(this.#current.token);
    this.#refreshing ??= this.#refresh(signal).finally(() => {
      this.#refreshing = undefined;
    });
    return this.#refreshing;
  }

  /** Forget the cached token (the service refused it: 401). */
  invalidate(): void {
    this.#current = undefined;
  }

  async #refresh(signal: AbortSignal | undefined): Promise<string> {
    const old = this.#current;
    try {
      const t = await this.#source.getToken(this.#scope, signal ? { abortSignal: signal } : {});
      if (t === null || t.token === "") throw new Error("the credential returned no token");
      this.#current = t;
      return t.token;
    } catch (err) {
      if (old !== undefined && this.#now() < old.expiresOnTimestamp - 30_000) return old.token;
      const e = new Error(
        `cannot get a Microsoft Entra ID token for Azure Storage: ${err instanceof Error ? err.message : String(err)}`,
        { cause: err },
      );
      e.name = "CredentialUnavailableError";
      throw e;
    }
  }
}
