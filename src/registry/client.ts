/**
 * Requests to one repository on one endpoint: picks https or http, adds authorization
 * (answering 401 challenges once), follows redirects without handing the Authorization
 * header to another host, and turns error statuses into RegistryErrors or retryable errors.
 */
import type { Readable } from "node:stream";
import { Authorizer, parseChallenges, type AuthContext } from "./auth.ts";
import type { Credentials } from "./credentials.ts";
import { RegistryError } from "./errors.ts";
import { isLoopback, type Endpoint } from "./hosts.ts";
import { RetryableError, parseRetryAfter, type RetryOptions } from "./retry.ts";
import { Transport, discard, header, headerList, readLimited, type HttpResponse, type Method } from "./transport.ts";
import type { RegistryOptions } from "./types.ts";

const MAX_REDIRECTS = 10;
const REDIRECTS = new Set([301, 302, 303, 307, 308]);
const MAX_ERROR_BODY = 64 * 1024;
const STATUS_TEXT: Record<number, string> = {
  400: "Bad Request",
  401: "Unauthorized",
  403: "Forbidden",
  404: "Not Found",
  405: "Method Not Allowed",
  408: "Request Timeout",
  413: "Payload Too Large",
  416: "Range Not Satisfiable",
  429: "Too Many Requests",
  500: "Internal Server Error",
  502: "Bad Gateway",
  503: "Service Unavailable",
  504: "Gateway Timeout",
};

/** What one pull, push or login shares: connections, credentials, tokens, retry settings. */
export interface Operation {
  transport: Transport;
  auth: Authorizer;
  options: RegistryOptions;
  retry: RetryOptions;
  /** Aborted by the caller's signal, or by `fail` when one of several parallel transfers fails. */
  signal: AbortSignal;
  fail(error: unknown): void;
}

export function openOperation(options: RegistryOptions, explicit?: { host: string; credentials: Credentials }): Operation {
  const controller = new AbortController();
  const signal = options.signal ? AbortSignal.any([options.signal, controller.signal]) : controller.signal;
  const transport = new Transport(options.timeouts, signal);
  return {
    transport,
    auth: new Authorizer(transport, { dockerConfigDir: options.dockerConfigDir, hosts: options.hosts, ...(explicit ? { explicit } : {}) }),
    options,
    retry: { attempts: options.retries ?? 5, baseDelayMs: options.retryDelayMs ?? 250, signal, onEvent: options.onEvent },
    signal,
    fail: (error) => controller.abort(error),
  };
}

export async function closeOperation(operation: Operation): Promise<void> {
  await operation.transport.close();
}

/**
 * Runs tasks, `concurrency` at a time. The first failure stops the others (their temp
 * files are cleaned up before this returns) and is what is thrown.
 */
export async function runAll(operation: Operation, concurrency: number, tasks: readonly (() => Promise<void>)[]): Promise<void> {
  const { default: pLimit } = await import("p-limit");
  const limit = pLimit(Math.max(1, Math.floor(concurrency)));
  let first: { error: unknown } | undefined;
  await Promise.allSettled(
    tasks.map((task) =>
      limit(async () => {
        operation.signal.throwIfAborted();
        await task();
      }).catch((error: unknown) => {
        if (first === undefined) {
          first = { error };
          operation.fail(error);
        }
      }),
    ),
  );
  if (first !== undefined) throw operation.options.signal?.aborted ? operation.options.signal.reason : first.error;
}

export interface SendRequest {
  method: Method;
  /** Under the API root: "/library/alpine/manifests/latest". */
  path?: string;
  /** An absolute URL (an upload location). */
  url?: string;
  headers?: Record<string, string>;
  /** Called for every attempt (a 401 answer means sending the body again). */
  body?: () => Buffer | Readable | string | undefined;
  followRedirects?: boolean;
}

export type Response = HttpResponse & { url: string };

/** The scheme chosen for endpoints that allow https then http, per process. */
const chosenBases = new Map<string, Promise<string>>();

export interface ClientContext {
  /** "cannot pull alpine:latest". */
  prefix: string;
  action: "pull" | "push" | "login";
  scopes: readonly string[];
}

export class RegistryClient {
  constructor(
    readonly operation: Operation,
    readonly endpoint: Endpoint,
    readonly repository: string,
    readonly context: ClientContext,
  ) {}

  private get authContext(): AuthContext {
    return { prefix: this.context.prefix, registry: this.endpoint.registry, host: this.endpoint.host, scopes: this.context.scopes };
  }

  /** The API root URL ("https://reg/v2"); for insecure and loopback hosts https is tried first, then http. */
  async base(): Promise<string> {
    const { bases } = this.endpoint;
    if (bases.length === 1) return bases[0]!;
    const key = bases.join(" ");
    let chosen = chosenBases.get(key);
    if (!chosen) {
      chosen = this.probe();
      chosenBases.set(key, chosen);
      chosen.catch(() => chosenBases.delete(key));
    }
    return chosen;
  }

  private async probe(): Promise<string> {
    let lastError: unknown;
    for (const base of this.endpoint.bases) {
      try {
        const response = await this.operation.transport.request(`${base}/`, { method: "GET", verifyTls: this.endpoint.verifyTls });
        if (response.statusCode === 401) this.operation.auth.noteChallenge(new URL(base).origin, headerList(response, "www-authenticate"));
        await discard(response);
        // 400 is what a TLS server answers plain http with ("client sent an HTTP request to an HTTPS server").
        if (response.statusCode === 400) {
          lastError = this.badResponse(`400 Bad Request to GET ${base}/ (is it a registry? does it speak this protocol?)`);
          continue;
        }
        return base;
      } catch (error) {
        if (this.operation.signal.aborted) throw this.operation.signal.reason;
        lastError = error;
      }
    }
    throw lastError;
  }

  async send(request: SendRequest): Promise<Response> {
    const base = await this.base();
    const origin = new URL(base).origin;
    let url = request.url ?? `${base}${request.path ?? ""}`;
    for (let hop = 0; hop <= MAX_REDIRECTS; hop++) {
      const target = new URL(url);
      // Credentials go only to the registry itself, never to the storage it redirects to.
      const response = target.origin === origin ? await this.authorized(url, origin, request) : await this.anonymous(url, request);
      if (request.followRedirects && REDIRECTS.has(response.statusCode)) {
        const location = header(response, "location");
        await discard(response);
        if (location === undefined) throw this.badResponse(`a redirect (${response.statusCode}) without a Location header`);
        const next = new URL(location, url);
        if (next.protocol !== "https:" && next.protocol !== "http:") throw this.badResponse(`a redirect to a ${next.protocol} URL`);
        url = next.href;
        continue;
      }
      return Object.assign(response, { url });
    }
    throw this.badResponse(`more than ${MAX_REDIRECTS} redirects`);
  }

  private anonymous(url: string, request: SendRequest): Promise<HttpResponse> {
    const host = new URL(url).host.toLowerCase();
    const verifyTls = !(isLoopback(host) || (this.operation.options.hosts?.insecure.has(host) ?? false));
    return this.operation.transport.request(url, { method: request.method, headers: request.headers ?? {}, body: request.body?.(), verifyTls });
  }

  private async authorized(url: string, origin: string, request: SendRequest): Promise<HttpResponse> {
    const { auth, transport } = this.operation;
    const send = (authorization: string | undefined) =>
      transport.request(url, {
        method: request.method,
        headers: { ...request.headers, ...(authorization !== undefined ? { authorization } : {}) },
        body: request.body?.(),
        verifyTls: this.endpoint.verifyTls,
      });
    const authorization = await auth.authorization(origin, this.authContext);
    const first = await send(authorization);
    if (first.statusCode !== 401) return first;
    const challenges = headerList(first, "www-authenticate");
    const firstErrors = await registryErrors(first);
    const credentials = await auth.credentialsFor(this.endpoint.host);
    if (!auth.noteChallenge(origin, challenges)) throw this.unauthorized(credentials, firstErrors, challenges);
    if (authorization !== undefined) auth.forget(origin, this.authContext, credentials);
    const retry = await auth.authorization(origin, this.authContext);
    if (retry === undefined) throw this.unauthorized(credentials, firstErrors, challenges);
    const second = await send(retry);
    if (second.statusCode !== 401) return second;
    const secondChallenges = headerList(second, "www-authenticate");
    throw this.unauthorized(credentials, await registryErrors(second), secondChallenges);
  }

  private unauthorized(credentials: Credentials | undefined, errors: RegistryErrorBody[], challenges: string[]): RegistryError {
    const { prefix, action } = this.context;
    const registry = this.endpoint.registry;
    const insufficientScope =
      errors.some((error) => error.code === "DENIED") || parseChallenges(challenges).some((challenge) => challenge.params.error === "insufficient_scope");
    const login = `tsbuild login ${this.endpoint.host}`;
    if (action !== "login" && insufficientScope) {
      return credentials === undefined
        ? new RegistryError("UNAUTHORIZED", `${prefix}: ${action} access to ${this.repository} on ${registry} was denied: the repository does not exist or needs credentials`, {
            hint: `check the image name; if the repository is private, log in with \`${login}\``,
          })
        : new RegistryError("DENIED", `${prefix}: the credentials stored for ${registry} do not allow ${action} access to ${this.repository}`, {
            hint: `check the repository name and your account's permissions, or log in as someone else with \`${login}\``,
          });
    }
    return credentials === undefined
      ? new RegistryError("UNAUTHORIZED", `${prefix}: ${this.endpoint.host} requires authentication and no credentials are stored for it`, {
          hint: `log in with \`${login}\``,
        })
      : new RegistryError("UNAUTHORIZED", `${prefix}: ${this.endpoint.host} rejected the credentials`, {
          hint: `log in again with \`${login}\``,
        });
  }

  badResponse(problem: string): RegistryError {
    return new RegistryError("BAD_RESPONSE", `${this.context.prefix}: the registry ${this.endpoint.host} sent ${problem}`, {
      hint: "the registry (or a proxy in front of it) is misbehaving: try again later or tell its operator",
    });
  }

  /**
   * The error for an unexpected status: retryable for 408/429/5xx, NOT_FOUND for 404 (with
   * `notFound`'s message), DENIED for 403, BAD_RESPONSE otherwise. Consumes the body.
   */
  async failure(response: HttpResponse, what: string, notFound?: () => RegistryError): Promise<Error> {
    const status = response.statusCode;
    const errors = await registryErrors(response);
    const detail = errors.length > 0 ? `: ${errors.map((error) => [error.code, error.message].filter(Boolean).join(": ")).join("; ")}` : "";
    const statusLine = `${status}${STATUS_TEXT[status] ? ` ${STATUS_TEXT[status]}` : ""}`;
    if (status === 408 || status === 429 || status >= 500) {
      return new RetryableError(`the registry answered ${statusLine}${detail}`, parseRetryAfter(header(response, "retry-after")));
    }
    if (status === 404) {
      return notFound?.() ?? new RegistryError("NOT_FOUND", `${this.context.prefix}: ${what} was not found on ${this.endpoint.host}${detail}`, { hint: "check the image name" });
    }
    if (status === 403) {
      return new RegistryError("DENIED", `${this.context.prefix}: ${this.endpoint.host} denied ${this.context.action} access to ${this.repository}${detail}`, {
        hint: `check the repository name and your account's permissions (\`tsbuild login ${this.endpoint.host}\`)`,
      });
    }
    return new RegistryError("BAD_RESPONSE", `${this.context.prefix}: ${what}: the registry ${this.endpoint.host} answered ${statusLine}${detail}`, {
      hint: "the registry refused the request: check the image and the registry's logs",
    });
  }
}

export interface RegistryErrorBody {
  code?: string;
  message?: string;
}

/** The `errors` of a distribution error body (consumes it); [] when there are none. */
async function registryErrors(response: HttpResponse): Promise<RegistryErrorBody[]> {
  const body = await readLimited(response, MAX_ERROR_BODY).catch(() => undefined);
  if (body === undefined || body.length === 0) return [];
  try {
    const parsed = JSON.parse(body.toString("utf8")) as { errors?: unknown };
    if (!Array.isArray(parsed.errors)) return [];
    return parsed.errors
      .filter((error): error is Record<string, unknown> => typeof error === "object" && error !== null)
      .map((error) => ({
        ...(typeof error.code === "string" ? { code: error.code } : {}),
        ...(typeof error.message === "string" ? { message: error.message.slice(0, 200) } : {}),
      }));
  } catch {
    return [];
  }
}
