import { createHash, randomBytes } from "node:crypto";
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { expect } from "vitest";
import { MEDIA_TYPES, canonicalJson, type Descriptor, type Platform } from "../../src/exporter/index.ts";
import { RegistryError, type PushIndex, type PushManifest, type RegistryErrorCode, type TransferEvent } from "../../src/registry/index.ts";
import { StateRoot } from "../../src/solver/store/index.ts";
import { freshDirs } from "../fresh-dir.ts";

/** A new empty directory, removed after the test file. */
export const freshDir = freshDirs("registry");

export async function freshStore(prefix = "store"): Promise<StateRoot> {
  return StateRoot.open(join(freshDir(prefix), "root"));
}

export function sha256(data: Buffer | string): string {
  return `sha256:${createHash("sha256").update(data).digest("hex")}`;
}

export interface TestImage extends PushManifest {
  digest: string;
  config: Descriptor;
  layers: Descriptor[];
  platform: Platform;
}

/** A small image of random layers (`sizes` bytes each) stored in `store`, ready to push. */
export async function makeImage(store: StateRoot, platform: Platform, sizes: readonly number[] = [1000, 3000]): Promise<TestImage> {
  const layers: Descriptor[] = [];
  for (const size of sizes) {
    const data = randomBytes(size);
    layers.push({ mediaType: MEDIA_TYPES.ociLayerGzip, digest: await store.writeBlob(data), size });
  }
  const configJson = Buffer.from(
    canonicalJson(
      {
        architecture: platform.architecture,
        os: platform.os,
        ...(platform.variant ? { variant: platform.variant } : {}),
        config: { Cmd: ["/bin/sh"], Env: [`NONCE=${randomBytes(8).toString("hex")}`] },
        rootfs: { type: "layers", diff_ids: layers.map((layer) => layer.digest) },
      },
      "image",
    ),
  );
  const config: Descriptor = { mediaType: MEDIA_TYPES.ociConfig, digest: await store.writeBlob(configJson), size: configJson.length };
  const manifest = Buffer.from(canonicalJson({ schemaVersion: 2, mediaType: MEDIA_TYPES.ociManifest, config, layers }, "manifest"));
  await store.writeBlob(manifest);
  return { manifest, mediaType: MEDIA_TYPES.ociManifest, blobs: [config, ...layers], digest: sha256(manifest), config, layers, platform };
}

export function makeIndex(images: readonly TestImage[]): PushIndex & { digest: string } {
  const index = Buffer.from(
    canonicalJson(
      {
        schemaVersion: 2,
        mediaType: MEDIA_TYPES.ociIndex,
        manifests: images.map((image) => ({ mediaType: image.mediaType, digest: image.digest, size: image.manifest.length, platform: image.platform })),
      },
      "index",
    ),
  );
  return { index, mediaType: MEDIA_TYPES.ociIndex, manifests: images, digest: sha256(index) };
}

/** Every stored blob's content hashes to its name, and tmp/ holds no download leftovers. */
export function verifyStore(store: StateRoot): string[] {
  const dir = join(store.dir, "content", "blobs", "sha256");
  const names = readdirSync(dir);
  for (const name of names) expect(sha256(readFileSync(join(dir, name)))).toBe(`sha256:${name}`);
  expect(readdirSync(join(store.dir, "tmp")).filter((name) => name.includes("pull-"))).toEqual([]);
  return names.map((name) => `sha256:${name}`);
}

export async function caught(promise: Promise<unknown>, code?: RegistryErrorCode): Promise<RegistryError> {
  const error = await promise.then(
    () => undefined,
    (reason: unknown) => reason,
  );
  expect(error).toBeInstanceOf(RegistryError);
  if (code !== undefined) expect((error as RegistryError).code, (error as Error).message).toBe(code);
  return error as RegistryError;
}

export function eventLog(): { events: TransferEvent[]; onEvent: (event: TransferEvent) => void; actions(digest: string): string[] } {
  const events: TransferEvent[] = [];
  return {
    events,
    onEvent: (event) => events.push(event),
    actions: (digest) => [...new Set(events.flatMap((event) => (event.kind === "blob" && event.digest === digest ? [event.action] : [])))],
  };
}

export const AMD64: Platform = { os: "linux", architecture: "amd64" };
export const ARM64: Platform = { os: "linux", architecture: "arm64", variant: "v8" };
export const ARMV7: Platform = { os: "linux", architecture: "arm", variant: "v7" };
