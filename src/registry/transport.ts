/**
 * HTTP over undici, loaded on first use (it costs start-up time that commands which never
 * touch a registry should not pay). One transport per operation: its connections are
 * closed when the operation ends, so nothing keeps the process alive.
 */
import type { Readable } from "node:stream";
import type * as Undici from "undici";
import type { Dispatcher } from "undici";
import type { RegistryOptions } from "./types.ts";

export type Method = "GET" | "HEAD" | "POST" | "PUT" | "PATCH" | "DELETE";

export interface HttpRequest {
  method: Method;
  headers?: Record<string, string>;
  body?: Buffer | Readable | string | undefined;
  /** False for insecure and loopback hosts: any certificate is accepted. */
  verifyTls: boolean;
}

export type HttpResponse = Dispatcher.ResponseData;

export class Transport {
  private agents = new Map<boolean, Dispatcher>();
  private loading: Promise<typeof Undici> | undefined;

  constructor(
    private readonly timeouts: NonNullable<RegistryOptions["timeouts"]> = {},
    private readonly signal?: AbortSignal,
  ) {}

  async request(url: string, request: HttpRequest): Promise<HttpResponse> {
    const agent = await this.agent(request.verifyTls);
    const parsed = new URL(url);
    return agent.request({
      origin: parsed.origin,
      path: `${parsed.pathname}${parsed.search}`,
      method: request.method,
      headers: { "user-agent": "tsbuild", ...request.headers },
      body: request.body ?? null,
      ...(this.signal ? { signal: this.signal } : {}),
    });
  }

  /** Closes every connection (in-flight requests are aborted). */
  async close(): Promise<void> {
    const agents = [...this.agents.values()];
    this.agents.clear();
    await Promise.all(agents.map((agent) => agent.destroy().catch(() => undefined)));
  }

  private async agent(verifyTls: boolean): Promise<Dispatcher> {
    const existing = this.agents.get(verifyTls);
    if (existing) return existing;
    this.loading ??= import("undici");
    const undici = await this.loading;
    // Bundled as CommonJS: then only its default export is there.
    const { Agent } = ((undici as unknown as { default?: typeof Undici }).default ?? undici) as typeof Undici;
    const agent =
      this.agents.get(verifyTls) ??
      new Agent({
        connect: { timeout: this.timeouts.connectMs ?? 30_000, rejectUnauthorized: verifyTls },
        headersTimeout: this.timeouts.headersMs ?? 60_000,
        bodyTimeout: this.timeouts.bodyMs ?? 60_000,
      });
    this.agents.set(verifyTls, agent);
    return agent;
  }
}

export function header(response: HttpResponse, name: string): string | undefined {
  const value = response.headers[name.toLowerCase()];
  return Array.isArray(value) ? value[0] : value;
}

export function headerList(response: HttpResponse, name: string): string[] {
  const value = response.headers[name.toLowerCase()];
  return value === undefined ? [] : Array.isArray(value) ? value : [value];
}

/** Reads a body up to `limit` bytes; undefined when it is longer (the rest is discarded). */
export async function readLimited(response: HttpResponse, limit: number): Promise<Buffer | undefined> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of response.body as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > limit) {
      response.body.destroy();
      return undefined;
    }
    chunks.push(chunk);
  }
  return Buffer.concat(chunks);
}

/** Discards a body so the connection can be reused. */
export async function discard(response: HttpResponse): Promise<void> {
  await response.body.dump({ limit: 1 << 20 }).catch(() => undefined);
}
