/**
 * Retries with exponential backoff and jitter for what is worth another try: 429 (after
 * Retry-After), 5xx, dropped or refused connections, timeouts. Everything else fails at once.
 */
import { UserError } from "../user-error.ts";
import { RegistryError } from "./errors.ts";
import type { TransferEvent } from "./types.ts";

/** A failure worth another attempt; `retryAfterMs` is the server's own wish (429, 503). */
export class RetryableError extends Error {
  override readonly name = "RetryableError";
  constructor(
    readonly reason: string,
    readonly retryAfterMs?: number,
  ) {
    super(reason);
  }
}

/** Network errors of undici and Node that a later attempt may not hit. */
const RETRY_CODES = new Set([
  "ECONNRESET",
  "ECONNREFUSED",
  "ECONNABORTED",
  "EPIPE",
  "ETIMEDOUT",
  "EAI_AGAIN",
  "ENETUNREACH",
  "EHOSTUNREACH",
  "UND_ERR_SOCKET",
  "UND_ERR_CLOSED",
  "UND_ERR_CONNECT_TIMEOUT",
  "UND_ERR_HEADERS_TIMEOUT",
  "UND_ERR_BODY_TIMEOUT",
]);

const REASONS: Record<string, string> = {
  ECONNRESET: "the connection was reset",
  ECONNREFUSED: "the connection was refused",
  EPIPE: "the connection was closed while sending",
  ETIMEDOUT: "the connection timed out",
  EAI_AGAIN: "the host name could not be resolved (temporary failure)",
  ENETUNREACH: "the network is unreachable",
  EHOSTUNREACH: "the host is unreachable",
  UND_ERR_SOCKET: "the connection was closed by the other side",
  UND_ERR_CLOSED: "the connection was closed",
  UND_ERR_CONNECT_TIMEOUT: "connecting timed out",
  UND_ERR_HEADERS_TIMEOUT: "the registry did not answer in time",
  UND_ERR_BODY_TIMEOUT: "the transfer stalled",
};

/** The longest Retry-After honoured; a longer one (a rate limit for hours) fails at once. */
const MAX_RETRY_AFTER_MS = 60_000;
const MAX_DELAY_MS = 15_000;

export function errorCode(error: unknown): string | undefined {
  for (let current = error, depth = 0; current && depth < 5; depth++) {
    const code = (current as { code?: unknown }).code;
    if (typeof code === "string") return code;
    current = (current as { cause?: unknown }).cause;
  }
  return undefined;
}

export function isRetryableNetworkError(error: unknown): boolean {
  return RETRY_CODES.has(errorCode(error) ?? "");
}

/** A short description of a failure for messages and retry events (never a stack). */
export function reasonOf(error: unknown): string {
  if (error instanceof RetryableError) return error.reason;
  const code = errorCode(error);
  if (code !== undefined && REASONS[code] !== undefined) return `${REASONS[code]} (${code})`;
  const message = error instanceof Error ? error.message : String(error);
  return code !== undefined && !message.includes(code) ? `${message} (${code})` : message;
}

/** Seconds or an HTTP date → milliseconds from now. */
export function parseRetryAfter(value: string | undefined): number | undefined {
  if (value === undefined || value.trim() === "") return undefined;
  if (/^\d+$/.test(value.trim())) return Number(value.trim()) * 1000;
  const at = Date.parse(value);
  return Number.isFinite(at) ? Math.max(0, at - Date.now()) : undefined;
}

export interface RetryOptions {
  /** Attempts in all (at least 1). */
  attempts: number;
  /** The first retry waits about this long, each next one twice as long. */
  baseDelayMs: number;
  signal?: AbortSignal | undefined;
  onEvent?: ((event: TransferEvent) => void) | undefined;
}

/**
 * Runs `attempt` until it succeeds, fails with something not worth retrying, or has run
 * `attempts` times: then TOO_MANY_RETRIES naming `what` (the manifest or blob) and the last
 * reason, after `prefix` ("cannot pull alpine:latest").
 */
export async function withRetries<T>(what: string, prefix: string, options: RetryOptions, attempt: (index: number) => Promise<T>): Promise<T> {
  const attempts = Math.max(1, Math.floor(options.attempts));
  for (let index = 1; ; index++) {
    options.signal?.throwIfAborted();
    try {
      return await attempt(index);
    } catch (error) {
      if (options.signal?.aborted) throw options.signal.reason;
      const retryable = error instanceof RetryableError || isRetryableNetworkError(error);
      if (!retryable) throw describeNetworkError(error, prefix);
      const reason = reasonOf(error);
      const wish = error instanceof RetryableError ? error.retryAfterMs : undefined;
      if (wish !== undefined && wish > MAX_RETRY_AFTER_MS) {
        throw new RegistryError("TOO_MANY_RETRIES", `${prefix}: ${what}: ${reason}; the registry asks to wait ${Math.ceil(wish / 1000)} s before trying again`, {
          hint: "wait and try again later (logging in often raises rate limits)",
          cause: error,
        });
      }
      if (index >= attempts) {
        throw new RegistryError("TOO_MANY_RETRIES", `${prefix}: ${what}: gave up after ${attempts} attempt${attempts === 1 ? "" : "s"}; the last one failed: ${reason}`, {
          hint: "check that the registry is up and reachable (and any proxy in between), then try again",
          cause: error,
        });
      }
      const backoff = Math.min(MAX_DELAY_MS, options.baseDelayMs * 2 ** (index - 1));
      // Full jitter on the upper half: parallel transfers do not retry in lock step.
      const delayMs = Math.round(wish ?? backoff / 2 + (Math.random() * backoff) / 2);
      options.onEvent?.({ kind: "retry", what, attempt: index, delayMs, reason });
      await sleep(delayMs, options.signal);
    }
  }
}

/**
 * A network failure that retrying cannot fix (unknown host, bad certificate) as a
 * RegistryError NETWORK; anything else is returned as it is.
 */
export function describeNetworkError(error: unknown, prefix: string): unknown {
  if (error instanceof UserError) return error;
  const code = errorCode(error);
  if (code === undefined) return error;
  if (code === "ENOTFOUND") {
    return new RegistryError("NETWORK", `${prefix}: ${reasonOf(error)}: the registry's host name does not resolve`, {
      hint: "check the registry name in the image reference, and the DNS settings",
      cause: error,
    });
  }
  if (/CERT|SSL|TLS|SELF_SIGNED|UNABLE_TO_VERIFY|UNABLE_TO_GET_ISSUER|HOSTNAME_MISMATCH/.test(code)) {
    return new RegistryError("NETWORK", `${prefix}: a TLS connection could not be made: ${reasonOf(error)}`, {
      hint: 'if the registry uses a self-signed certificate or plain http, list it as insecure ("insecure" in /etc/tsbuild/registries.json)',
      cause: error,
    });
  }
  if (/^(ECONN|EHOST|ENET|EPROTO|EADDRNOTAVAIL|UND_ERR_(SOCKET|CLOSED|CONNECT|HEADERS|BODY|RESPONSE))/.test(code)) {
    return new RegistryError("NETWORK", `${prefix}: ${reasonOf(error)}`, { hint: "check that the registry is reachable", cause: error });
  }
  return error;
}

export function sleep(ms: number, signal: AbortSignal | undefined): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal?.reason);
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}
