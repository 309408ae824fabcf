/**
 * Fetching and checking image manifests and indexes: Docker schema 2 and OCI, never more
 * than 4 MiB, digests verified (against the reference, the parent descriptor, and the
 * registry's Docker-Content-Digest).
 */
import { createHash } from "node:crypto";
import type { Descriptor, OciIndex, OciManifest } from "../exporter/index.ts";
// The leaf module, not the exporter's index: that loads tar and compression code, which
// costs start-up time a command that only resolves a tag should not pay.
import { MEDIA_TYPES } from "../exporter/media-types.ts";
import type { RegistryClient } from "./client.ts";
import { RegistryError } from "./errors.ts";
import { RetryableError, withRetries } from "./retry.ts";
import { discard, header, readLimited } from "./transport.ts";

export const MANIFEST_LIMIT = 4 * 1024 * 1024;
const INDEX_TYPES: readonly string[] = [MEDIA_TYPES.ociIndex, MEDIA_TYPES.dockerManifestList];
const MANIFEST_TYPES: readonly string[] = [MEDIA_TYPES.ociManifest, MEDIA_TYPES.dockerManifest];
export const MANIFEST_ACCEPT = [...INDEX_TYPES, ...MANIFEST_TYPES].join(", ");
const DIGEST_RE = /^(sha256:[0-9a-f]{64}|sha512:[0-9a-f]{128})$/;
const SCHEMA1_TYPES: readonly string[] = ["application/vnd.docker.distribution.manifest.v1+json", "application/vnd.docker.distribution.manifest.v1+prettyjws"];

export function isDigest(value: unknown): value is string {
  return typeof value === "string" && DIGEST_RE.test(value);
}

/** "<algorithm>:<hex>" of `data`, with the algorithm of `like` (sha256 by default). */
export function digestOf(data: Buffer, like?: string): string {
  const algorithm = like?.startsWith("sha512:") ? "sha512" : "sha256";
  return `${algorithm}:${createHash(algorithm).update(data).digest("hex")}`;
}

export type ManifestDocument = { kind: "index"; mediaType: string; index: OciIndex } | { kind: "manifest"; mediaType: string; manifest: OciManifest };

export interface FetchedManifest {
  bytes: Buffer;
  digest: string;
  document: ManifestDocument;
}

/**
 * GETs a manifest or index by tag or digest. `expected` (a digest, and the size a parent
 * descriptor gives) is checked; a mismatch is retried once, then DIGEST_MISMATCH.
 */
export async function fetchManifest(client: RegistryClient, reference: string, what: string, expected?: { digest: string; size?: number }, notFound?: () => RegistryError): Promise<FetchedManifest> {
  const { prefix } = client.context;
  let mismatches = 0;
  return withRetries(what, prefix, client.operation.retry, async () => {
    const response = await client.send({
      method: "GET",
      path: `/${client.repository}/manifests/${reference}`,
      headers: { accept: MANIFEST_ACCEPT },
      followRedirects: true,
    });
    if (response.statusCode !== 200) throw await client.failure(response, what, notFound);
    const length = Number(header(response, "content-length") ?? "0");
    if (length > MANIFEST_LIMIT) {
      await discard(response);
      throw tooLarge(client, what);
    }
    const bytes = await readLimited(response, MANIFEST_LIMIT);
    if (bytes === undefined) throw tooLarge(client, what);
    const digest = digestOf(bytes, expected?.digest);
    const announced = header(response, "docker-content-digest");
    const problems: string[] = [];
    if (expected !== undefined && digest !== expected.digest) problems.push(`its digest is ${digest}, not ${expected.digest}`);
    if (expected?.size !== undefined && bytes.length !== expected.size) problems.push(`it has ${bytes.length} bytes, not ${expected.size}`);
    if (announced !== undefined && isDigest(announced) && digestOf(bytes, announced) !== announced) {
      problems.push(`it does not match the Docker-Content-Digest ${announced} the registry sent`);
    }
    if (problems.length > 0) {
      mismatches++;
      const reason = `the manifest received for ${what} is wrong: ${problems.join("; ")}`;
      if (mismatches < 2) throw new RetryableError(reason);
      throw new RegistryError("DIGEST_MISMATCH", `${prefix}: ${reason} (twice)`, {
        hint: "the registry or a proxy in between is returning corrupt data: try again later or tell its operator",
      });
    }
    return { bytes, digest, document: parseManifest(bytes, header(response, "content-type"), prefix, what) };
  });
}

/** HEAD of a manifest: its digest and media type, or undefined when the registry does not say (then GET it). */
export async function headManifest(client: RegistryClient, reference: string, what: string, notFound: () => RegistryError): Promise<{ digest: string; mediaType: string } | undefined> {
  return withRetries(what, client.context.prefix, client.operation.retry, async () => {
    const response = await client.send({ method: "HEAD", path: `/${client.repository}/manifests/${reference}`, headers: { accept: MANIFEST_ACCEPT }, followRedirects: true });
    await discard(response);
    if (response.statusCode === 404) throw notFound();
    if (response.statusCode === 408 || response.statusCode === 429 || response.statusCode >= 500) throw await client.failure(response, what);
    if (response.statusCode !== 200) return undefined; // e.g. 405: some registries only answer GET
    const digest = header(response, "docker-content-digest");
    const mediaType = mediaTypeOf(header(response, "content-type"));
    if (!isDigest(digest) || mediaType === undefined) return undefined;
    if (SCHEMA1_TYPES.includes(mediaType)) throw schema1(client.context.prefix, what);
    if (!INDEX_TYPES.includes(mediaType) && !MANIFEST_TYPES.includes(mediaType)) return undefined;
    return { digest, mediaType };
  });
}

function tooLarge(client: RegistryClient, what: string): RegistryError {
  return new RegistryError("BAD_RESPONSE", `${client.context.prefix}: the manifest of ${what} is larger than ${MANIFEST_LIMIT / 1024 / 1024} MiB`, {
    hint: "image manifests are small JSON documents: the registry is misbehaving or this is not an image",
  });
}

function schema1(prefix: string, what: string): RegistryError {
  return new RegistryError("UNSUPPORTED_MEDIA_TYPE", `${prefix}: ${what} is stored in the Docker schema 1 manifest format, which is deprecated and not supported`, {
    hint: "push the image again with a current docker, buildah or tsbuild, or use a newer tag",
  });
}

function mediaTypeOf(contentType: string | undefined): string | undefined {
  const type = contentType?.split(";")[0]?.trim().toLowerCase();
  return type === "" ? undefined : type;
}

/** Parses and checks a manifest or index; the media type comes from the document, else the Content-Type. */
export function parseManifest(bytes: Buffer, contentType: string | undefined, prefix: string, what: string): ManifestDocument {
  const bad = (problem: string) =>
    new RegistryError("BAD_RESPONSE", `${prefix}: the manifest of ${what} is malformed: ${problem}`, {
      hint: "the image on the registry is broken: push it again, or tell its maintainer",
    });
  let json: unknown;
  try {
    json = JSON.parse(bytes.toString("utf8"));
  } catch {
    throw bad("it is not JSON");
  }
  if (typeof json !== "object" || json === null || Array.isArray(json)) throw bad("it is not a JSON object");
  const doc = json as Record<string, unknown>;
  const headerType = mediaTypeOf(contentType);
  if (doc.schemaVersion === 1 || (headerType !== undefined && SCHEMA1_TYPES.includes(headerType))) throw schema1(prefix, what);
  if (doc.schemaVersion !== 2) throw bad(`schemaVersion is ${JSON.stringify(doc.schemaVersion)}, not 2`);
  let mediaType = typeof doc.mediaType === "string" ? doc.mediaType : headerType;
  // OCI documents may leave the media type out: their shape tells.
  if (mediaType === undefined || mediaType === "application/json" || mediaType === "application/octet-stream") {
    mediaType = Array.isArray(doc.manifests) ? MEDIA_TYPES.ociIndex : MEDIA_TYPES.ociManifest;
  }
  if (INDEX_TYPES.includes(mediaType)) {
    if (!Array.isArray(doc.manifests)) throw bad('"manifests" is not a list');
    const manifests = doc.manifests.map((entry, i) => checkDescriptor(entry, `manifests[${i}]`, bad));
    return { kind: "index", mediaType, index: { ...(doc as object), schemaVersion: 2, mediaType, manifests } as OciIndex };
  }
  if (MANIFEST_TYPES.includes(mediaType)) {
    const config = checkDescriptor(doc.config, "config", bad);
    if (!Array.isArray(doc.layers)) throw bad('"layers" is not a list');
    const layers = doc.layers.map((entry, i) => checkDescriptor(entry, `layers[${i}]`, bad));
    return { kind: "manifest", mediaType, manifest: { ...(doc as object), schemaVersion: 2, mediaType, config, layers } as OciManifest };
  }
  throw new RegistryError("UNSUPPORTED_MEDIA_TYPE", `${prefix}: ${what} has media type ${mediaType}, which is not an image manifest or index`, {
    hint: `tsbuild reads ${[...INDEX_TYPES, ...MANIFEST_TYPES].join(", ")}`,
  });
}

function checkDescriptor(value: unknown, where: string, bad: (problem: string) => RegistryError): Descriptor {
  if (typeof value !== "object" || value === null || Array.isArray(value)) throw bad(`${where} is not a descriptor`);
  const descriptor = value as Record<string, unknown>;
  if (typeof descriptor.mediaType !== "string") throw bad(`${where} has no mediaType`);
  if (!isDigest(descriptor.digest)) throw bad(`${where} has an invalid digest ${JSON.stringify(descriptor.digest)}`);
  if (typeof descriptor.size !== "number" || !Number.isSafeInteger(descriptor.size) || descriptor.size < 0) throw bad(`${where} has an invalid size`);
  return descriptor as unknown as Descriptor;
}
