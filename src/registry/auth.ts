/**
 * Registry authentication (the distribution token spec): requests go out anonymously
 * until a 401 names a scheme in WWW-Authenticate; Basic sends the stored credentials,
 * Bearer trades them (or nothing) for a token at the challenge's realm. Tokens are cached
 * per realm, service, scopes and credentials until shortly before they expire.
 */
import { createHash } from "node:crypto";
import { lookupCredentials, type Credentials } from "./credentials.ts";
import { RegistryError } from "./errors.ts";
import { isInsecureHost, type RegistryHosts } from "./hosts.ts";
import { RetryableError, parseRetryAfter } from "./retry.ts";
import { discard, header, readLimited, type Transport } from "./transport.ts";

export interface Challenge {
  /** Lowercase: "basic", "bearer". */
  scheme: string;
  params: Record<string, string>;
}

const TOKEN_CHAR = "[!#$%&'*+.^_`|~0-9A-Za-z-]";
const TOKEN_RE = new RegExp(`^${TOKEN_CHAR}+`);
/** Tokens are renewed this long before they expire. */
const EXPIRY_MARGIN_MS = 10_000;
const DEFAULT_TOKEN_LIFETIME_S = 60;
const MAX_TOKEN_RESPONSE = 1 << 20;

/** Parses WWW-Authenticate values (several challenges per header, quoted strings, escapes). */
export function parseChallenges(values: readonly string[]): Challenge[] {
  const challenges: Challenge[] = [];
  for (const value of values) {
    let rest = value;
    let current: Challenge | undefined;
    const skip = () => (rest = rest.replace(/^[\s,]+/, ""));
    for (skip(); rest !== ""; skip()) {
      const token = TOKEN_RE.exec(rest)?.[0];
      if (token === undefined) break; // malformed: keep what was understood
      rest = rest.slice(token.length);
      const afterSpace = rest.replace(/^\s*/, "");
      if (afterSpace.startsWith("=") && current !== undefined) {
        rest = afterSpace.slice(1).replace(/^\s*/, "");
        let paramValue = "";
        if (rest.startsWith('"')) {
          let i = 1;
          for (; i < rest.length && rest[i] !== '"'; i++) {
            if (rest[i] === "\\" && i + 1 < rest.length) i++;
            paramValue += rest[i];
          }
          rest = rest.slice(i + 1);
        } else {
          paramValue = TOKEN_RE.exec(rest)?.[0] ?? "";
          rest = rest.slice(paramValue.length);
        }
        current.params[token.toLowerCase()] = paramValue;
      } else {
        current = { scheme: token.toLowerCase(), params: {} };
        challenges.push(current);
        // A token68 (Basic xyz==) is not used by registries: skip it.
        const token68 = /^[A-Za-z0-9._~+/-]+=*\s*(?=,|$)/.exec(afterSpace);
        rest = token68 ? afterSpace.slice(token68[0].length) : afterSpace;
      }
    }
  }
  return challenges;
}

interface CachedToken {
  token: string;
  expiresAt: number;
}

/** Tokens outlive one operation: a resolve followed by a pull asks the token service once. */
const tokenCache = new Map<string, Promise<CachedToken>>();

export interface AuthContext {
  /** "cannot pull alpine:latest": how errors begin. */
  prefix: string;
  /** The registry as the user names it, for `tsbuild login <registry>` hints. */
  registry: string;
  /** host[:port] whose credentials apply. */
  host: string;
  scopes: readonly string[];
}

export class Authorizer {
  private readonly challenges = new Map<string, Challenge>();
  private readonly credentials = new Map<string, Promise<Credentials | undefined>>();

  constructor(
    private readonly transport: Transport,
    private readonly options: { dockerConfigDir?: string | undefined; hosts?: RegistryHosts | undefined; explicit?: { host: string; credentials: Credentials } },
  ) {}

  credentialsFor(host: string): Promise<Credentials | undefined> {
    if (this.options.explicit?.host === host) return Promise.resolve(this.options.explicit.credentials);
    let found = this.credentials.get(host);
    if (!found) {
      found = lookupCredentials(host, this.options.dockerConfigDir);
      this.credentials.set(host, found);
      found.catch(() => this.credentials.delete(host));
    }
    return found;
  }

  /** Remembers the challenges of a 401; false when none is usable (no Basic or Bearer). */
  noteChallenge(origin: string, values: readonly string[]): boolean {
    const challenge = parseChallenges(values).find((c) => c.scheme === "bearer" || c.scheme === "basic");
    if (challenge === undefined) return false;
    this.challenges.set(origin, challenge);
    return true;
  }

  /** The Authorization header for a request to `origin`, or undefined (anonymous). */
  async authorization(origin: string, context: AuthContext): Promise<string | undefined> {
    const challenge = this.challenges.get(origin);
    if (challenge === undefined) return undefined;
    const credentials = await this.credentialsFor(context.host);
    if (challenge.scheme === "basic") {
      if (credentials?.username === undefined) return undefined;
      return `Basic ${Buffer.from(`${credentials.username}:${credentials.password ?? ""}`).toString("base64")}`;
    }
    const token = await this.token(challenge, credentials, context);
    return `Bearer ${token}`;
  }

  /** Forgets the token a 401 refused, so the next authorization asks for a new one. */
  forget(origin: string, context: AuthContext, credentials: Credentials | undefined): void {
    const challenge = this.challenges.get(origin);
    if (challenge?.scheme === "bearer") tokenCache.delete(tokenKey(challenge, credentials, context.scopes));
  }

  private async token(challenge: Challenge, credentials: Credentials | undefined, context: AuthContext): Promise<string> {
    const key = tokenKey(challenge, credentials, context.scopes);
    const cached = tokenCache.get(key);
    if (cached) {
      const token = await cached.catch(() => undefined);
      if (token !== undefined && token.expiresAt > Date.now()) return token.token;
      if (tokenCache.get(key) === cached) tokenCache.delete(key);
      else return this.token(challenge, credentials, context);
    }
    const fetching = this.fetchToken(challenge, credentials, context);
    tokenCache.set(key, fetching);
    fetching.catch(() => {
      if (tokenCache.get(key) === fetching) tokenCache.delete(key);
    });
    return (await fetching).token;
  }

  private async fetchToken(challenge: Challenge, credentials: Credentials | undefined, context: AuthContext): Promise<CachedToken> {
    const realmText = challenge.params.realm ?? "";
    let realm: URL;
    try {
      realm = new URL(realmText);
      if (realm.protocol !== "https:" && realm.protocol !== "http:") throw new Error("not http(s)");
    } catch {
      throw new RegistryError("BAD_RESPONSE", `${context.prefix}: the registry asks for a token but names no valid token service (realm ${JSON.stringify(realmText)})`, {
        hint: "the registry is misconfigured: tell its operator",
      });
    }
    const service = challenge.params.service;
    const where = `${realm.origin}${realm.pathname}`;
    const verifyTls = !(await isInsecureHost(realm.host, this.options.hosts));
    let response;
    if (credentials?.identityToken !== undefined) {
      // An identity token is an OAuth2 refresh token: it is exchanged with a POST.
      const form = new URLSearchParams({ grant_type: "refresh_token", refresh_token: credentials.identityToken, client_id: "tsbuild" });
      if (service !== undefined) form.set("service", service);
      if (context.scopes.length > 0) form.set("scope", context.scopes.join(" "));
      response = await this.transport.request(realm.href, {
        method: "POST",
        headers: { "content-type": "application/x-www-form-urlencoded" },
        body: form.toString(),
        verifyTls,
      });
    } else {
      const url = new URL(realm.href);
      if (service !== undefined) url.searchParams.set("service", service);
      for (const scope of context.scopes) url.searchParams.append("scope", scope);
      const headers: Record<string, string> = {};
      if (credentials?.username !== undefined) {
        url.searchParams.set("account", credentials.username);
        headers.authorization = `Basic ${Buffer.from(`${credentials.username}:${credentials.password ?? ""}`).toString("base64")}`;
      }
      response = await this.transport.request(url.href, { method: "GET", headers, verifyTls });
    }
    const status = response.statusCode;
    if (status === 401 || status === 403) {
      await discard(response);
      throw new RegistryError(
        "UNAUTHORIZED",
        credentials === undefined
          ? `${context.prefix}: the token service ${where} refused anonymous access to ${context.registry}`
          : `${context.prefix}: the token service ${where} rejected the credentials for ${context.registry}`,
        { hint: `log in again with \`tsbuild login ${context.registry}\`` },
      );
    }
    if (status === 429 || status >= 500) {
      await discard(response);
      throw new RetryableError(`the token service ${where} answered ${status}`, parseRetryAfter(header(response, "retry-after")));
    }
    const body = status === 200 ? await readLimited(response, MAX_TOKEN_RESPONSE) : (await discard(response), undefined);
    let parsed: { token?: unknown; access_token?: unknown; expires_in?: unknown; issued_at?: unknown } | undefined;
    try {
      parsed = body === undefined ? undefined : (JSON.parse(body.toString("utf8")) as typeof parsed);
    } catch {
      parsed = undefined;
    }
    const token = typeof parsed?.token === "string" && parsed.token !== "" ? parsed.token : typeof parsed?.access_token === "string" ? parsed.access_token : "";
    if (token === "") {
      throw new RegistryError("BAD_RESPONSE", `${context.prefix}: the token service ${where} answered ${status} without a token`, {
        hint: "the registry's token service is misbehaving: try again later or tell its operator",
      });
    }
    const lifetime = typeof parsed?.expires_in === "number" && parsed.expires_in > 0 ? parsed.expires_in : DEFAULT_TOKEN_LIFETIME_S;
    return { token, expiresAt: Date.now() + Math.max(0, lifetime * 1000 - EXPIRY_MARGIN_MS) };
  }
}

function tokenKey(challenge: Challenge, credentials: Credentials | undefined, scopes: readonly string[]): string {
  // The credentials are part of the key only as a hash: nothing secret is kept in keys.
  const who = credentials === undefined ? "" : createHash("sha256").update(JSON.stringify([credentials.username, credentials.password, credentials.identityToken])).digest("hex");
  return JSON.stringify([challenge.params.realm, challenge.params.service ?? "", [...scopes].sort(), who]);
}

