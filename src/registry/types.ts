import type { Descriptor, ImageConfig, OciManifest, Platform } from "../exporter/index.ts";
import type { RegistryHosts } from "./hosts.ts";
import type { ImageReference } from "./reference.ts";

/** Where pulled content goes and pushed content comes from; StateRoot implements it. */
export interface ContentStore {
  hasBlob(digest: string): Promise<boolean>;
  blobPath(digest: string): string;
  /** A fresh path (not created) on the store's file system; files there are moved in by writeBlobFromFile. */
  tempPath(label: string): string;
  writeBlob(data: Buffer | string): Promise<string>;
  /** `verified`: the caller hashed the bytes as it wrote them (downloads do as they stream): not read again. */
  writeBlobFromFile(path: string, expectedDigest?: string, options?: { verified?: boolean }): Promise<string>;
}

export type TransferEvent =
  | { kind: "resolve"; ref: string }
  /** Progress of one blob: `done` of `size` bytes; "exists" and "mounted" are reported once, done = size. */
  | { kind: "blob"; digest: string; size: number; done: number; action: "pull" | "push" | "exists" | "mounted" }
  | { kind: "retry"; what: string; attempt: number; delayMs: number; reason: string };

export interface RegistryOptions {
  hosts?: RegistryHosts;
  /** Where config.json is (default $DOCKER_CONFIG, else ~/.docker). */
  dockerConfigDir?: string;
  signal?: AbortSignal;
  onEvent?: (event: TransferEvent) => void;
  /** Blobs transferred in parallel (default 4). */
  concurrency?: number;
  /** Attempts per request or blob before TOO_MANY_RETRIES (default 5). */
  retries?: number;
  /** The first retry waits about this long, each next one twice as long (default 250 ms). */
  retryDelayMs?: number;
  /** Connection, response-header and body-stall timeouts (defaults 30 s, 60 s, 60 s). */
  timeouts?: { connectMs?: number; headersMs?: number; bodyMs?: number };
}

export interface PulledImage {
  reference: ImageReference;
  /** What the tag (or digest) resolved to: the index's digest for a multi-platform image. */
  digest: string;
  manifestDigest: string;
  manifestMediaType: string;
  manifest: OciManifest;
  config: ImageConfig;
  configDigest: string;
  layers: Descriptor[];
  /** The platforms the index offers, when the reference named an index. */
  platforms?: Platform[];
}

export interface PushManifest {
  manifest: Buffer;
  mediaType: string;
  /** Config and layers; read from store.blobPath(digest). */
  blobs: readonly Descriptor[];
}

export interface PushIndex {
  index: Buffer;
  mediaType: string;
  manifests: readonly PushManifest[];
}

export interface PushOptions extends RegistryOptions {
  /** Blob digest → the image it came from: a repository on the same registry is asked to mount it instead of an upload. */
  mountFrom?: ReadonlyMap<string, ImageReference>;
  /** Blobs larger than this are uploaded in chunks of this size (default 32 MiB). */
  chunkSize?: number;
}

export interface PullOptions extends RegistryOptions {
  platform: Platform;
}
