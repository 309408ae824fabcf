/**
 * ADD of an http(s) URL (BuildKit's http source): the file is downloaded with undici
 * (timeouts, retries with backoff on 5xx and dropped connections, redirects followed),
 * checked against `--checksum` when given, and stored as a one-file layer: mode 0600,
 * owner 0:0, mtime from Last-Modified (else the epoch), named after the URL path's last
 * component. Without a checksum the URL is checked again on every build with a
 * conditional GET (ETag / Last-Modified); an unchanged answer reuses the stored layer.
 */
import { createHash, type Hash } from "node:crypto";
import { chmod, chown, mkdir, open, readFile, rename, rm, utimes, type FileHandle } from "node:fs/promises";
import { join } from "node:path";
import type { Dispatcher } from "undici";
import { canonicalJson, sha256, type SourceOp } from "../../llb/index.ts";
import { UserError } from "../../user-error.ts";
import { writeFileAtomic } from "../store/atomic-file.ts";
import type { LayerInfo, StateRoot } from "../store/index.ts";
import type { RemoteSourceOptions } from "./index.ts";

export type ChecksumAlgorithm = "sha256" | "sha384" | "sha512";

const HEX_LENGTH: Record<ChecksumAlgorithm, number> = { sha256: 64, sha384: 96, sha512: 128 };
const MAX_REDIRECTS = 10;
const REDIRECTS = new Set([301, 302, 303, 307, 308]);
/** Statuses worth another try: the server's fault, or "slow down". */
const RETRY_STATUS = (status: number) => status >= 500 || status === 408 || status === 429;
/** Network errors worth another try: the connection dropped or stalled. */
const RETRY_CODES = new Set([
  "ECONNRESET",
  "EPIPE",
  "ETIMEDOUT",
  "ECONNABORTED",
  "EAI_AGAIN",
  "UND_ERR_SOCKET",
  "UND_ERR_CLOSED",
  "UND_ERR_CONNECT_TIMEOUT",
  "UND_ERR_HEADERS_TIMEOUT",
  "UND_ERR_BODY_TIMEOUT",
]);
/** The mode Docker and BuildKit give a downloaded file. */
const FILE_MODE = 0o600;

export interface Checksum {
  algorithm: ChecksumAlgorithm;
  /** "<algorithm>:<hex>", lowercase. */
  digest: string;
}

/** Parses `--checksum` (sha256, sha384 or sha512 followed by the hex digest). */
export function parseChecksum(text: string): Checksum {
  const match = /^(sha256|sha384|sha512):([0-9a-fA-F]+)$/.exec(text.trim());
  const algorithm = match?.[1] as ChecksumAlgorithm | undefined;
  const hex = match?.[2]?.toLowerCase();
  if (algorithm === undefined || hex === undefined || hex.length !== HEX_LENGTH[algorithm]) {
    throw new UserError(`--checksum ${JSON.stringify(text)}: not a digest`, "write sha256:<64 hex digits> (or sha384:<96>, sha512:<128>), e.g. the output of sha256sum");
  }
  return { algorithm, digest: `${algorithm}:${hex}` };
}

/** The URL with any user:password replaced, for messages. */
export function redactUrl(url: string): string {
  try {
    const parsed = new URL(url);
    if (parsed.username === "" && parsed.password === "") return url;
    parsed.username = "xxxxx";
    parsed.password = "";
    return parsed.href;
  } catch {
    return url;
  }
}

/** BuildKit's file name for a URL: the last component of its (decoded) path, or "__unnamed__". */
export function fileNameOf(url: string): string {
  let path: string;
  try {
    path = new URL(url).pathname;
  } catch {
    return "__unnamed__";
  }
  let decoded = path;
  try {
    decoded = decodeURIComponent(path);
  } catch {
    // keep it encoded
  }
  const base = decoded.split("/").filter((part) => part !== "").pop();
  return base === undefined || base === "." || base === ".." ? "__unnamed__" : base;
}

export interface FetchOptions {
  signal?: AbortSignal;
  /** Sent as If-None-Match; a 200 answer with this same ETag also counts as not modified. */
  ifNoneMatch?: string;
  /** Sent as If-Modified-Since. */
  ifModifiedSince?: string;
  /** Besides sha256, also hash the body with this algorithm (for --checksum). */
  checksumAlgorithm?: ChecksumAlgorithm;
  /** Retries after the first attempt (default 3). */
  retries?: number;
  /** The first retry waits this long, each next one twice as long (default 500 ms). */
  retryDelayMs?: number;
  connectTimeoutMs?: number;
  /** Longest wait for the response headers (default 60 s). */
  headersTimeoutMs?: number;
  /** Longest pause between two chunks of the body (default 60 s). */
  bodyTimeoutMs?: number;
}

export type FetchResult =
  | { status: "not-modified"; url: string }
  | {
      status: "downloaded";
      /** The URL after redirects. */
      url: string;
      path: string;
      size: number;
      /** "sha256:<hex>" of the body. */
      sha256: string;
      /** "<checksumAlgorithm>:<hex>" when asked for. */
      checksum?: string;
      etag?: string;
      lastModified?: string;
      contentType?: string;
    };

/** A status that may be worth another try. */
class RetryableStatusError extends Error {
  constructor(readonly status: number, readonly statusText: string) {
    super(`the server answered ${status}${statusText ? ` ${statusText}` : ""}`);
  }
}

/**
 * GETs `url` into `destPath` (created or truncated), following redirects, retrying
 * 5xx answers and dropped connections with exponential backoff. Throws UserError for
 * what retries cannot fix (4xx, unknown host, refused connection, too many redirects).
 */
export async function fetchToFile(url: string, destPath: string, options: FetchOptions = {}): Promise<FetchResult> {
  const undici = await import("undici");
  // CommonJS: bundled, only its default export is there.
  const { Agent } = ((undici as unknown as { default?: typeof undici }).default ?? undici) as typeof undici;
  const agent = new Agent({
    connect: { timeout: options.connectTimeoutMs ?? 30_000 },
    headersTimeout: options.headersTimeoutMs ?? 60_000,
    bodyTimeout: options.bodyTimeoutMs ?? 60_000,
  });
  const retries = options.retries ?? 3;
  const shown = redactUrl(url);
  try {
    for (let attempt = 0; ; attempt++) {
      try {
        return await fetchOnce(agent, url, destPath, options);
      } catch (error) {
        if (options.signal?.aborted) throw error;
        const retryable = error instanceof RetryableStatusError || RETRY_CODES.has(errorCode(error) ?? "");
        if (!retryable) throw describeFetchError(shown, error);
        if (attempt >= retries) {
          const tries = attempt + 1;
          throw new UserError(`downloading ${shown} failed: ${messageOf(error)} (tried ${tries} time${tries === 1 ? "" : "s"})`, "check that the server works, then build again");
        }
        await sleep((options.retryDelayMs ?? 500) * 2 ** attempt, options.signal);
      }
    }
  } finally {
    await agent.destroy().catch(() => undefined);
  }
}

async function fetchOnce(agent: Dispatcher, url: string, destPath: string, options: FetchOptions): Promise<FetchResult> {
  const headers: Record<string, string> = { "user-agent": "tsbuild", accept: "*/*" };
  if (options.ifNoneMatch !== undefined) headers["if-none-match"] = options.ifNoneMatch;
  if (options.ifModifiedSince !== undefined) headers["if-modified-since"] = options.ifModifiedSince;
  let current = url;
  for (let hop = 0; hop <= MAX_REDIRECTS; hop++) {
    const response = await agent.request({
      origin: new URL(current).origin,
      path: pathOf(current),
      method: "GET",
      headers,
      ...(options.signal ? { signal: options.signal } : {}),
    });
    const { statusCode } = response;
    const header = (name: string): string | undefined => {
      const value = response.headers[name];
      return Array.isArray(value) ? value[0] : value;
    };
    if (REDIRECTS.has(statusCode)) {
      await response.body.dump();
      const location = header("location");
      if (location === undefined) throw new UserError(`downloading ${redactUrl(current)}: redirect ${statusCode} without a Location header`);
      const next = new URL(location, current);
      if (next.protocol !== "http:" && next.protocol !== "https:") {
        throw new UserError(`downloading ${redactUrl(url)}: redirected to ${next.protocol} URL ${redactUrl(next.href)}, which is not http(s)`);
      }
      current = next.href;
      continue;
    }
    if (statusCode === 304) {
      await response.body.dump();
      return { status: "not-modified", url: current };
    }
    if (statusCode < 200 || statusCode > 299) {
      await response.body.dump();
      const statusText = statusTextOf(statusCode);
      if (RETRY_STATUS(statusCode)) throw new RetryableStatusError(statusCode, statusText);
      throw new UserError(`downloading ${redactUrl(url)} failed: the server answered ${statusCode} ${statusText}`.trimEnd(), "check the URL");
    }
    const etag = header("etag");
    const lastModified = header("last-modified");
    const contentType = header("content-type");
    if (options.ifNoneMatch !== undefined && etag === options.ifNoneMatch) {
      await response.body.dump();
      return { status: "not-modified", url: current };
    }
    const hash = createHash("sha256");
    const extra: Hash | undefined = options.checksumAlgorithm && options.checksumAlgorithm !== "sha256" ? createHash(options.checksumAlgorithm) : undefined;
    let size = 0;
    const handle = await open(destPath, "w", 0o600);
    try {
      for await (const chunk of response.body as AsyncIterable<Buffer>) {
        hash.update(chunk);
        extra?.update(chunk);
        size += chunk.length;
        await writeAll(handle, chunk);
      }
    } finally {
      await handle.close();
    }
    const sha = hash.digest("hex");
    const checksum = options.checksumAlgorithm === undefined ? undefined : `${options.checksumAlgorithm}:${extra ? extra.digest("hex") : sha}`;
    return {
      status: "downloaded",
      url: current,
      path: destPath,
      size,
      sha256: `sha256:${sha}`,
      ...(checksum !== undefined ? { checksum } : {}),
      ...(etag !== undefined ? { etag } : {}),
      ...(lastModified !== undefined ? { lastModified } : {}),
      ...(contentType !== undefined ? { contentType } : {}),
    };
  }
  throw new UserError(`downloading ${redactUrl(url)}: more than ${MAX_REDIRECTS} redirects`, "check the URL");
}

async function writeAll(handle: FileHandle, chunk: Buffer): Promise<void> {
  try {
    let offset = 0;
    while (offset < chunk.length) offset += (await handle.write(chunk, offset)).bytesWritten;
  } catch (error) {
    throw new LocalWriteError(`cannot write the downloaded file: ${(error as Error).message}`, { cause: error });
  }
}

function pathOf(url: string): string {
  const parsed = new URL(url);
  return `${parsed.pathname}${parsed.search}`;
}

function statusTextOf(status: number): string {
  const texts: Record<number, string> = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    408: "Request Timeout",
    410: "Gone",
    429: "Too Many Requests",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
  };
  return texts[status] ?? "";
}

function errorCode(error: unknown): string | undefined {
  for (let current = error, depth = 0; current && depth < 5; depth++) {
    const code = (current as { code?: unknown }).code;
    if (typeof code === "string") return code;
    current = (current as { cause?: unknown }).cause;
  }
  return undefined;
}

function messageOf(error: unknown): string {
  const code = errorCode(error);
  const message = error instanceof Error ? error.message : String(error);
  return code !== undefined && !message.includes(code) ? `${message} (${code})` : message;
}

function describeFetchError(url: string, error: unknown): unknown {
  if (error instanceof UserError || error instanceof LocalWriteError) return error;
  return new UserError(`cannot download ${url}: ${messageOf(error)}`, "check the URL and that the server is reachable");
}

/** Writing the downloaded file failed (no space, permissions): not the server's fault, never retried. */
class LocalWriteError extends Error {
  override readonly name = "LocalWriteError";
}

function sleep(ms: number, signal: AbortSignal | undefined): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const timer = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal?.reason);
    };
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}

// --- the ADD source ---------------------------------------------------------

/** What is remembered about a URL fetched without a checksum, to ask the server "changed?" next time. */
interface UrlValidators {
  url: string;
  layerId: string;
  etag?: string;
  lastModified?: string;
}

/** Loads an `https://…` / `http://…` source op into a one-file layer. */
export async function loadHttpSource(op: SourceOp, store: StateRoot, options: RemoteSourceOptions = {}): Promise<{ layers: LayerInfo[]; cacheKey: string }> {
  const url = op.identifier;
  const checksum = op.attrs?.checksum ? parseChecksum(op.attrs.checksum) : undefined;
  const filename = fileNameOf(url);
  const reuse = async (layerId: string) => ({ layers: [await store.layerInfo(layerId)], cacheKey: `sha256:${layerId}` });

  if (checksum) {
    // The content is known in advance: URL + checksum name the result, no request needed.
    const recordKey = sha256(canonicalJson({ source: "http", url, checksum: checksum.digest, filename }));
    if (!options.noCache) {
      const record = await store.getCacheRecord(recordKey);
      const layerId = record?.layers[0];
      if (layerId !== undefined && (await store.hasLayer(layerId))) return reuse(layerId);
    }
    const layer = await download(url, filename, store, { ...fetchOptions(options), checksumAlgorithm: checksum.algorithm }, (result) => {
      if (result.checksum !== checksum.digest) {
        throw new UserError(
          `checksum mismatch for ${redactUrl(url)}: expected ${checksum.digest}, got ${result.checksum ?? "nothing"}`,
          "the file on the server is not the one --checksum names: check the URL and the digest",
        );
      }
    });
    if (layer === "not-modified") throw new Error(`the server answered "not modified" to an unconditional request for ${redactUrl(url)}`);
    await store.putCacheRecord({ key: recordKey, layers: [layer.id], description: `ADD ${redactUrl(url)}` });
    return { layers: [layer], cacheKey: `sha256:${layer.id}` };
  }

  const validatorsPath = join(store.dir, "http-sources", `${sha256(url).slice("sha256:".length)}.json`);
  const known = options.noCache ? undefined : await readValidators(validatorsPath, url);
  const usable = known && (known.etag !== undefined || known.lastModified !== undefined) && (await store.hasLayer(known.layerId)) ? known : undefined;
  const conditional: FetchOptions = {
    ...fetchOptions(options),
    ...(usable?.etag !== undefined ? { ifNoneMatch: usable.etag } : {}),
    ...(usable?.lastModified !== undefined ? { ifModifiedSince: usable.lastModified } : {}),
  };
  let validators: { etag?: string; lastModified?: string } = {};
  const layer = await download(url, filename, store, conditional, (result) => {
    validators = {
      ...(result.etag !== undefined ? { etag: result.etag } : {}),
      ...(result.lastModified !== undefined ? { lastModified: result.lastModified } : {}),
    };
  });
  if (layer === "not-modified") {
    if (!usable) throw new Error(`the server answered "not modified" to an unconditional request for ${redactUrl(url)}`);
    return reuse(usable.layerId);
  }
  await writeValidators(store, validatorsPath, { url, layerId: layer.id, ...validators });
  return { layers: [layer], cacheKey: `sha256:${layer.id}` };
}

function fetchOptions(options: RemoteSourceOptions): FetchOptions {
  return { ...(options.signal ? { signal: options.signal } : {}), ...(options.http ?? {}) };
}

/**
 * Downloads into the state root's tmp/ and moves the file into a layer whose id names
 * its content, name and mtime (so the same file downloaded again is the same layer).
 */
async function download(
  url: string,
  filename: string,
  store: StateRoot,
  options: FetchOptions,
  check: (result: FetchResult & { status: "downloaded" }) => void,
): Promise<LayerInfo | "not-modified"> {
  const temp = store.tempPath("download");
  try {
    const result = await fetchToFile(url, temp, options);
    if (result.status === "not-modified") return "not-modified";
    check(result);
    const mtime = mtimeOf(result.lastModified);
    const layerId = sha256(canonicalJson({ source: "http", content: result.sha256, filename, mode: FILE_MODE, mtime })).slice("sha256:".length);
    return await store.createLayer(layerId, async (fsDir) => {
      const target = join(fsDir, filename);
      await rename(temp, target);
      await chmod(target, FILE_MODE);
      if (process.getuid?.() === 0) await chown(target, 0, 0);
      await utimes(target, mtime, mtime);
    });
  } finally {
    await rm(temp, { force: true });
  }
}

/** Seconds since the epoch of a Last-Modified header; 0 (BuildKit's default) when absent or unparsable. */
function mtimeOf(lastModified: string | undefined): number {
  if (lastModified === undefined) return 0;
  const ms = Date.parse(lastModified);
  return Number.isFinite(ms) ? Math.floor(ms / 1000) : 0;
}

async function readValidators(path: string, url: string): Promise<UrlValidators | undefined> {
  try {
    const parsed = JSON.parse(await readFile(path, "utf8")) as Partial<UrlValidators>;
    if (parsed.url !== url || typeof parsed.layerId !== "string") return undefined;
    return {
      url,
      layerId: parsed.layerId,
      ...(typeof parsed.etag === "string" ? { etag: parsed.etag } : {}),
      ...(typeof parsed.lastModified === "string" ? { lastModified: parsed.lastModified } : {}),
    };
  } catch {
    return undefined;
  }
}

async function writeValidators(store: StateRoot, path: string, validators: UrlValidators): Promise<void> {
  await mkdir(join(path, ".."), { recursive: true });
  await writeFileAtomic(path, JSON.stringify(validators), { tempPath: store.tempPath("http-validators"), fsync: false });
}
