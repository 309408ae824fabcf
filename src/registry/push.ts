/**
 * Pushing an image: every blob not on the registry yet (mounted from another repository
 * of the same registry when possible, else uploaded: in one PUT, or in chunks), then the
 * manifests (an index's children by digest), then the tag.
 */
import { createReadStream } from "node:fs";
import { stat } from "node:fs/promises";
import { Readable } from "node:stream";
import type { Descriptor } from "../exporter/index.ts";
import { shortDigest } from "./blob-download.ts";
import { RegistryClient, closeOperation, openOperation, runAll } from "./client.ts";
import { RegistryError } from "./errors.ts";
import { registryEndpoint } from "./hosts.ts";
import { digestOf, isDigest } from "./manifest.ts";
import { displayReference, type ImageReference } from "./reference.ts";
import { RetryableError, withRetries } from "./retry.ts";
import { discard, header } from "./transport.ts";
import type { ContentStore, PushIndex, PushManifest, PushOptions } from "./types.ts";

export const DEFAULT_CHUNK_SIZE = 32 * 1024 * 1024;
const PROGRESS_INTERVAL_MS = 100;

export async function pushImage(ref: ImageReference, content: PushManifest | PushIndex, store: ContentStore, options: PushOptions = {}): Promise<{ digest: string; size: number }> {
  const display = displayReference(ref);
  const prefix = `cannot push ${display}`;
  const isIndex = "index" in content;
  const top = isIndex ? content.index : content.manifest;
  const manifests = isIndex ? content.manifests : [content];
  const topDigest = digestOf(top);
  if (ref.digest !== undefined && digestOf(top, ref.digest) !== ref.digest) {
    throw new RegistryError("INVALID_REFERENCE", `${prefix}: the reference names digest ${ref.digest}, but the image's digest is ${topDigest}`, {
      hint: "push by tag, or name the digest the image really has",
    });
  }
  const mounts = new Map<string, string>();
  for (const [digest, from] of options.mountFrom ?? []) {
    if (from.registry === ref.registry && from.repository !== ref.repository) mounts.set(digest, from.repository);
  }
  const scopes = [`repository:${ref.repository}:pull,push`, ...[...new Set(mounts.values())].map((repository) => `repository:${repository}:pull`)];

  const blobs = new Map<string, Descriptor>();
  for (const manifest of manifests) for (const blob of manifest.blobs) blobs.set(blob.digest, blob);
  const paths = new Map<string, string>();
  for (const blob of blobs.values()) paths.set(blob.digest, await localBlob(store, blob, prefix));

  const operation = openOperation(options);
  try {
    const client = new RegistryClient(operation, await registryEndpoint(ref.registry, options.hosts), ref.repository, { prefix, action: "push", scopes });
    const chunkSize = Math.max(1, options.chunkSize ?? DEFAULT_CHUNK_SIZE);
    await runAll(
      operation,
      options.concurrency ?? 4,
      [...blobs.values()].map((blob) => () => pushBlob(client, blob, paths.get(blob.digest)!, mounts.get(blob.digest), chunkSize)),
    );
    if (isIndex) {
      for (const manifest of content.manifests) {
        const digest = digestOf(manifest.manifest);
        await putManifest(client, manifest.manifest, manifest.mediaType, digest, `manifest ${shortDigest(digest)}`);
      }
    }
    await putManifest(client, top, content.mediaType, ref.tag ?? topDigest, ref.tag !== undefined ? `tag ${ref.tag}` : `manifest ${shortDigest(topDigest)}`);
    return { digest: topDigest, size: top.length };
  } finally {
    await closeOperation(operation);
  }
}

/** The blob's path in the store, after checking it is there with the descriptor's size. */
async function localBlob(store: ContentStore, blob: Descriptor, prefix: string): Promise<string> {
  const missing = (problem: string) =>
    new RegistryError("MISSING_CONTENT", `${prefix}: blob ${blob.digest} ${problem}`, {
      hint: "the local content store lost it (pruned?): build the image again",
    });
  if (!isDigest(blob.digest)) throw missing("has an invalid digest");
  if (!(await store.hasBlob(blob.digest))) throw missing("is not in the local content store");
  const path = store.blobPath(blob.digest);
  const stats = await stat(path).catch(() => undefined);
  if (stats === undefined) throw missing("is not in the local content store");
  if (stats.size !== blob.size) throw missing(`has ${stats.size} bytes in the local content store, but its descriptor says ${blob.size}`);
  return path;
}

async function pushBlob(client: RegistryClient, blob: Descriptor, path: string, mountFrom: string | undefined, chunkSize: number): Promise<void> {
  const { digest, size } = blob;
  const { onEvent } = client.operation.options;
  const what = `blob ${shortDigest(digest)}`;
  const repository = client.repository;
  /** The upload a failed chunked attempt leaves: the next attempt continues it if the registry still has it. */
  let unfinished: string | undefined;
  await withRetries(what, client.context.prefix, client.operation.retry, async () => {
    const head = await client.send({ method: "HEAD", path: `/${repository}/blobs/${digest}`, followRedirects: true });
    await discard(head);
    if (head.statusCode === 200) {
      onEvent?.({ kind: "blob", digest, size, done: size, action: "exists" });
      return;
    }
    if (head.statusCode !== 404) throw await client.failure(head, what);

    let location: string;
    const resumed = unfinished === undefined ? undefined : await uploadStatus(client, unfinished);
    let offset = resumed?.offset ?? 0;
    if (resumed !== undefined) {
      location = resumed.location;
    } else if (mountFrom !== undefined) {
      const mount = await client.send({ method: "POST", path: `/${repository}/blobs/uploads/?mount=${encodeURIComponent(digest)}&from=${encodeURIComponent(mountFrom)}` });
      if (mount.statusCode === 201) {
        await discard(mount);
        onEvent?.({ kind: "blob", digest, size, done: size, action: "mounted" });
        return;
      }
      // 202: the registry could not mount it and opened an upload instead.
      location = await uploadLocation(client, mount, what);
    } else {
      location = await uploadLocation(client, await client.send({ method: "POST", path: `/${repository}/blobs/uploads/` }), what);
    }

    let done = offset;
    let lastReport = 0;
    const progress = (bytes: number) => {
      done += bytes;
      const now = Date.now();
      if (now - lastReport < PROGRESS_INTERVAL_MS) return;
      lastReport = now;
      onEvent?.({ kind: "blob", digest, size, done, action: "push" });
    };
    onEvent?.({ kind: "blob", digest, size, done, action: "push" });
    if (size <= chunkSize) {
      const put = await client.send({
        method: "PUT",
        url: withDigest(location, digest),
        headers: { "content-type": "application/octet-stream", "content-length": String(size) },
        body: () => fileBody(path, 0, size, progress),
      });
      await finishUpload(client, put, digest, what);
    } else {
      // Chunked: each PATCH continues where the last Location says the upload is now.
      while (offset < size) {
        const start = offset;
        const end = Math.min(start + chunkSize, size);
        unfinished = location;
        const patch = await client.send({
          method: "PATCH",
          url: location,
          headers: { "content-type": "application/octet-stream", "content-length": String(end - start), "content-range": `${start}-${end - 1}` },
          body: () => fileBody(path, start, end, progress),
        });
        if (patch.statusCode === 416) {
          // Not where the registry stands (a guess about "0-0" was wrong): start the blob again.
          await discard(patch);
          unfinished = undefined;
          throw new RetryableError(`the registry refused bytes ${start}-${end - 1} of the upload`);
        }
        location = await uploadLocation(client, patch, what, location);
        offset = end;
      }
      unfinished = location;
      const put = await client.send({ method: "PUT", url: withDigest(location, digest), headers: { "content-length": "0" } });
      await finishUpload(client, put, digest, what);
      unfinished = undefined;
    }
    onEvent?.({ kind: "blob", digest, size, done: size, action: "push" });
  });
}

/**
 * Where an unfinished upload stands (GET on its URL: 204 with `Range: 0-<last byte>`), or
 * undefined when the registry no longer has it or will not say: then the blob starts again.
 */
async function uploadStatus(client: RegistryClient, location: string): Promise<{ location: string; offset: number } | undefined> {
  const response = await client.send({ method: "GET", url: location });
  await discard(response);
  if (response.statusCode !== 204) return undefined;
  // "0-N": bytes 0 to N are there. Docker's registry also says "0-0" for an empty upload;
  // taken as empty (if one byte was there, the next PATCH is refused and the blob starts again).
  const last = Number(/^(?:bytes=)?0-(\d+)$/.exec(header(response, "range") ?? "")?.[1] ?? 0);
  const offset = last === 0 ? 0 : last + 1;
  const moved = header(response, "location");
  return { location: moved === undefined ? location : new URL(moved, response.url).href, offset };
}

/** The upload URL a 202 answer (POST or PATCH) gives; relative Locations resolve against the request. */
async function uploadLocation(client: RegistryClient, response: Awaited<ReturnType<RegistryClient["send"]>>, what: string, previous?: string): Promise<string> {
  if (response.statusCode !== 202) throw await client.failure(response, what);
  await discard(response);
  const location = header(response, "location");
  if (location === undefined) {
    if (previous !== undefined) return previous;
    throw client.badResponse(`no upload Location for ${what}`);
  }
  return new URL(location, response.url).href;
}

async function finishUpload(client: RegistryClient, response: Awaited<ReturnType<RegistryClient["send"]>>, digest: string, what: string): Promise<void> {
  if (response.statusCode !== 201 && response.statusCode !== 204) throw await client.failure(response, what);
  await discard(response);
  const stored = header(response, "docker-content-digest");
  if (stored !== undefined && isDigest(stored) && stored !== digest) {
    throw new RegistryError("DIGEST_MISMATCH", `${client.context.prefix}: the registry stored ${what} as ${stored}`, {
      hint: "the upload was corrupted on the way (a proxy?): push again",
    });
  }
}

function withDigest(location: string, digest: string): string {
  const url = new URL(location);
  url.searchParams.append("digest", digest);
  return url.href;
}

/** Bytes [start, end) of a file, reporting progress as they are read. */
function fileBody(path: string, start: number, end: number, progress: (bytes: number) => void): Readable {
  if (end <= start) return Readable.from([]);
  const source = createReadStream(path, { start, end: end - 1, highWaterMark: 1 << 20 });
  return Readable.from(
    (async function* () {
      for await (const chunk of source as AsyncIterable<Buffer>) {
        progress(chunk.length);
        yield chunk;
      }
    })(),
    { objectMode: false },
  );
}

async function putManifest(client: RegistryClient, bytes: Buffer, mediaType: string, reference: string, what: string): Promise<void> {
  await withRetries(what, client.context.prefix, client.operation.retry, async () => {
    const response = await client.send({
      method: "PUT",
      path: `/${client.repository}/manifests/${reference}`,
      headers: { "content-type": mediaType, "content-length": String(bytes.length) },
      body: () => bytes,
    });
    if (response.statusCode !== 201 && response.statusCode !== 200 && response.statusCode !== 202) throw await client.failure(response, what);
    await discard(response);
    const stored = header(response, "docker-content-digest");
    const digest = digestOf(bytes, stored);
    if (stored !== undefined && isDigest(stored) && stored !== digest) {
      throw new RegistryError("DIGEST_MISMATCH", `${client.context.prefix}: the registry stored ${what} as ${stored}, not ${digest}`, {
        hint: "a proxy in between changed the manifest: push without it",
      });
    }
  });
}

