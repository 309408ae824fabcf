/**
 * Pulling an image: resolve the reference (mirrors first), pick the platform's manifest
 * from an index, then store index, manifest, config and layers in the content store,
 * skipping blobs it already has.
 */
import { readFile } from "node:fs/promises";
import type { Descriptor, ImageConfig, Platform } from "../exporter/index.ts";
import { downloadBlob } from "./blob-download.ts";
import { RegistryClient, closeOperation, openOperation, runAll, type Operation } from "./client.ts";
import { RegistryError } from "./errors.ts";
import { pullEndpoints } from "./hosts.ts";
import { fetchManifest, headManifest, type FetchedManifest } from "./manifest.ts";
import { formatPlatform, offeredPlatforms, platformMatches, selectManifest } from "./platform.ts";
import { displayReference, formatReference, type ImageReference } from "./reference.ts";
import type { ContentStore, PullOptions, PulledImage, RegistryOptions } from "./types.ts";

const MAX_CONFIG_SIZE = 8 * 1024 * 1024;

function notFound(ref: ImageReference, host: string): () => RegistryError {
  return () =>
    new RegistryError("NOT_FOUND", `image ${displayReference(ref)} not found on ${host}`, {
      hint: "check the image name and tag (and that you are logged in, if the repository is private)",
    });
}

/**
 * Tries each endpoint (mirrors, then the registry) until one answers `resolve`; the client
 * that answered is used for the rest of the pull. The registry's own error wins when all fail.
 */
async function onFirstEndpoint<T>(
  operation: Operation,
  ref: ImageReference,
  prefix: string,
  resolve: (client: RegistryClient) => Promise<T>,
): Promise<{ client: RegistryClient; result: T }> {
  const endpoints = await pullEndpoints(ref.registry, operation.options.hosts);
  let lastError: unknown;
  for (const endpoint of endpoints) {
    const client = new RegistryClient(operation, endpoint, ref.repository, { prefix, action: "pull", scopes: [`repository:${ref.repository}:pull`] });
    try {
      return { client, result: await resolve(client) };
    } catch (error) {
      if (operation.signal.aborted) throw operation.signal.reason;
      lastError = error;
    }
  }
  throw lastError;
}

/** What pulling and resolving a reference share: its names for messages, an operation (closed after `body`), the resolve event. */
async function onReference<T>(
  ref: ImageReference,
  options: RegistryOptions,
  verb: "pull" | "resolve",
  body: (context: { operation: Operation; display: string; prefix: string; reference: string }) => Promise<T>,
): Promise<T> {
  const display = displayReference(ref);
  const operation = openOperation(options);
  try {
    options.onEvent?.({ kind: "resolve", ref: formatReference(ref) });
    return await body({ operation, display, prefix: `cannot ${verb} ${display}`, reference: ref.digest ?? ref.tag ?? "latest" });
  } finally {
    await closeOperation(operation);
  }
}

export function pullImage(ref: ImageReference, store: ContentStore, options: PullOptions): Promise<PulledImage> {
  return onReference(ref, options, "pull", async ({ operation, display, prefix, reference }) => {
    const { client, result: top } = await onFirstEndpoint(operation, ref, prefix, (client) =>
      fetchManifest(client, reference, `manifest ${display}`, ref.digest !== undefined ? { digest: ref.digest } : undefined, notFound(ref, client.endpoint.host)),
    );
    await storeDocument(store, top, prefix);

    let manifest: FetchedManifest = top;
    let platforms: Platform[] | undefined;
    if (top.document.kind === "index") {
      const entries = top.document.index.manifests;
      platforms = offeredPlatforms(entries);
      const chosen = selectManifest(entries, options.platform);
      if (chosen === undefined) throw noPlatform(display, options.platform, platforms);
      manifest = await fetchManifest(client, chosen.digest, `manifest ${display} (${formatPlatform(chosen.platform!)})`, { digest: chosen.digest, size: chosen.size });
      if (manifest.document.kind !== "manifest") {
        throw new RegistryError("UNSUPPORTED_MEDIA_TYPE", `${prefix}: the index entry for ${formatPlatform(chosen.platform!)} is another index`, {
          hint: "nested indexes are not supported: pull the inner index by its digest",
        });
      }
      await storeDocument(store, manifest, prefix);
    }
    if (manifest.document.kind !== "manifest") throw new Error("unreachable: an index was not resolved");
    const document = manifest.document.manifest;

    const configDescriptor = document.config;
    if (configDescriptor.size > MAX_CONFIG_SIZE) {
      throw client.badResponse(`an image config of ${configDescriptor.size} bytes for ${display} (the limit is ${MAX_CONFIG_SIZE / 1024 / 1024} MiB)`);
    }
    await downloadBlob(client, configDescriptor, store);
    const config = parseConfig(await readFile(store.blobPath(configDescriptor.digest)), prefix);
    if (top.document.kind === "manifest" && !platformMatches(options.platform, config)) {
      throw noPlatform(display, options.platform, [{ os: config.os, architecture: config.architecture, ...(config.variant ? { variant: config.variant } : {}) }]);
    }

    const layers = uniqueByDigest(document.layers);
    await runAll(
      operation,
      options.concurrency ?? 4,
      layers.map((layer) => () => downloadBlob(client, layer, store)),
    );
    return {
      reference: ref,
      digest: top.digest,
      manifestDigest: manifest.digest,
      manifestMediaType: manifest.document.mediaType,
      manifest: document,
      config,
      configDigest: configDescriptor.digest,
      layers: document.layers,
      ...(platforms !== undefined ? { platforms } : {}),
    };
  });
}

/** The digest and media type a reference resolves to now (HEAD, falling back to GET). */
export function resolveDigest(ref: ImageReference, options: RegistryOptions = {}): Promise<{ digest: string; mediaType: string }> {
  return onReference(ref, options, "resolve", async ({ operation, display, prefix, reference }) => {
    const { result } = await onFirstEndpoint(operation, ref, prefix, async (client) => {
      const head = await headManifest(client, reference, `manifest ${display}`, notFound(ref, client.endpoint.host));
      if (head !== undefined && (ref.digest === undefined || head.digest === ref.digest)) return head;
      const fetched = await fetchManifest(client, reference, `manifest ${display}`, ref.digest !== undefined ? { digest: ref.digest } : undefined, notFound(ref, client.endpoint.host));
      return { digest: fetched.digest, mediaType: fetched.document.mediaType };
    });
    return result;
  });
}

async function storeDocument(store: ContentStore, fetched: FetchedManifest, prefix: string): Promise<void> {
  if (fetched.digest.startsWith("sha256:")) {
    const stored = await store.writeBlob(fetched.bytes);
    if (stored !== fetched.digest) throw new Error(`${prefix}: the store computed ${stored} for a manifest hashed as ${fetched.digest}`);
  }
}

function noPlatform(display: string, wanted: Platform, offered: readonly Platform[]): RegistryError {
  const list = offered.length > 0 ? offered.map(formatPlatform).join(", ") : "none";
  return new RegistryError("NO_MATCHING_PLATFORM", `image ${display} has no ${formatPlatform(wanted)} variant; it offers: ${list}`, {
    hint: `pick one of those with --platform, or use an image built for ${formatPlatform(wanted)}`,
  });
}

function parseConfig(bytes: Buffer, prefix: string): ImageConfig {
  let parsed: unknown;
  try {
    parsed = JSON.parse(bytes.toString("utf8"));
  } catch {
    parsed = undefined;
  }
  const config = parsed as Partial<ImageConfig> | undefined;
  if (typeof config !== "object" || config === null || Array.isArray(config) || typeof config.os !== "string" || typeof config.architecture !== "string") {
    throw new RegistryError("BAD_RESPONSE", `${prefix}: the image config is not a valid image configuration (JSON with os and architecture)`, {
      hint: "the image is broken or not a container image: push it again, or tell its maintainer",
    });
  }
  return config as ImageConfig;
}

function uniqueByDigest(descriptors: readonly Descriptor[]): Descriptor[] {
  const seen = new Map<string, Descriptor>();
  for (const descriptor of descriptors) if (!seen.has(descriptor.digest)) seen.set(descriptor.digest, descriptor);
  return [...seen.values()];
}
