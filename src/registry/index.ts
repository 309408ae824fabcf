/**
 * The OCI distribution client: pull and push images (mirrors, auth, retries, digest
 * checks, cross-repository mounts, chunked uploads), resolve tags, log in and out.
 * undici is loaded only when a request is made.
 */
export { parseReference, formatReference, type ImageReference } from "./reference.ts";
export { registryHosts, isInsecureHost, isLoopback, parseNetwork, resolvesInto, DEFAULT_REGISTRY_CONFIG, type Network, type RegistryHosts } from "./hosts.ts";
export { pullImage, resolveDigest } from "./pull.ts";
export { pushImage, DEFAULT_CHUNK_SIZE } from "./push.ts";
export { login, logout, normalizeRegistryName } from "./login.ts";
export { normalizePlatform, formatPlatform, platformMatches } from "./platform.ts";
export { RegistryError, type RegistryErrorCode } from "./errors.ts";
export type { ContentStore, PullOptions, PulledImage, PushIndex, PushManifest, PushOptions, RegistryOptions, TransferEvent } from "./types.ts";
