/**
 * Sources from the network: ADD of an http(s) URL and ADD of a git repository. Each
 * loader is imported when a build first needs it (undici and git are not free to load).
 */
import type { SourceOp } from "../../llb/index.ts";
import type { LayerInfo, StateRoot } from "../store/index.ts";
import type { FetchOptions } from "./http.ts";

export interface RemoteSourceOptions {
  signal?: AbortSignal;
  /** Fetch again even when a stored result could be reused (--no-cache). */
  noCache?: boolean;
  /** Download tuning (timeouts, retries); the defaults suit real servers. */
  http?: Pick<FetchOptions, "retries" | "retryDelayMs" | "connectTimeoutMs" | "headersTimeoutMs" | "bodyTimeoutMs">;
}

export type LoadedSource = { layers: LayerInfo[]; cacheKey: string };

/** Loads an `https://…`, `http://…` or `git://…` source op; undefined for any other identifier. */
export async function loadRemoteSource(op: SourceOp, store: StateRoot, options: RemoteSourceOptions = {}): Promise<LoadedSource | undefined> {
  if (/^https?:\/\//i.test(op.identifier)) return (await import("./http.ts")).loadHttpSource(op, store, options);
  if (op.identifier.startsWith("git://")) return (await import("./git.ts")).loadGitSource(op, store, options);
  return undefined;
}
