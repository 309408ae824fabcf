import { spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { MEDIA_TYPES } from "../../src/exporter/index.ts";
import { parseReference, pullImage, pushImage, registryHosts, resolveDigest } from "../../src/registry/index.ts";
import { startFaultProxy, type FaultProxy } from "./fault-proxy.ts";
import { AMD64, ARM64, ARMV7, caught, eventLog, freshStore, makeImage, makeIndex, sha256, verifyStore } from "./helpers.ts";
import { freePort, startRegistry, type RegistryServer } from "./registry-server.ts";

const FIXTURE = join(import.meta.dirname, "../../fixtures/images/busybox-amd64");
const FAST = { retries: 3, retryDelayMs: 10 };

let registry: RegistryServer;
let proxy: FaultProxy;
beforeAll(async () => {
  registry = await startRegistry();
  proxy = await startFaultProxy(registry);
});
afterAll(async () => {
  await proxy?.stop();
  await registry?.stop();
});

function skopeoInspect(ref: string, raw = false): Record<string, unknown> {
  const result = spawnSync("skopeo", ["inspect", "--tls-verify=false", ...(raw ? ["--raw"] : []), `docker://${ref}`], { encoding: "utf8" });
  expect(result.status, result.stderr).toBe(0);
  return JSON.parse(result.stdout) as Record<string, unknown>;
}

describe("push and pull", () => {
  it("round-trips a single-platform image byte for byte", async () => {
    const source = await freshStore("src");
    const image = await makeImage(source, AMD64, [2000, 50_000, 10]);
    const ref = parseReference(`${registry.host}/single/app:1`);
    const pushed = await pushImage(ref, image, source, FAST);
    expect(pushed).toEqual({ digest: image.digest, size: image.manifest.length });

    const inspected = skopeoInspect(`${registry.host}/single/app:1`);
    expect(inspected.Digest).toBe(image.digest);
    expect(inspected.Architecture).toBe("amd64");
    expect(inspected.Layers).toEqual(image.layers.map((layer) => layer.digest));

    const target = await freshStore("dst");
    const log = eventLog();
    const pulled = await pullImage(ref, target, { ...FAST, platform: AMD64, onEvent: log.onEvent });
    expect(pulled.digest).toBe(image.digest);
    expect(pulled.manifestDigest).toBe(image.digest);
    expect(pulled.manifestMediaType).toBe(MEDIA_TYPES.ociManifest);
    expect(pulled.configDigest).toBe(image.config.digest);
    expect(pulled.layers).toEqual(image.layers);
    expect(pulled.config.architecture).toBe("amd64");
    expect(pulled.platforms).toBeUndefined();
    expect(readFileSync(target.blobPath(image.digest))).toEqual(image.manifest);
    for (const blob of image.blobs) expect(readFileSync(target.blobPath(blob.digest)).equals(readFileSync(source.blobPath(blob.digest)))).toBe(true);
    expect(verifyStore(target).sort()).toEqual([image.digest, ...image.blobs.map((blob) => blob.digest)].sort());
    expect(log.events[0]).toEqual({ kind: "resolve", ref: `${registry.host}/single/app:1` });
    const last = log.events.filter((event) => event.kind === "blob" && event.digest === image.layers[1]!.digest).at(-1);
    expect(last).toEqual({ kind: "blob", digest: image.layers[1]!.digest, size: 50_000, done: 50_000, action: "pull" });

    // Pulling by digest gives the same; resolveDigest agrees.
    const byDigest = await pullImage(parseReference(`${registry.host}/single/app@${image.digest}`), target, { ...FAST, platform: AMD64 });
    expect(byDigest.manifestDigest).toBe(image.digest);
    expect(await resolveDigest(ref, FAST)).toEqual({ digest: image.digest, mediaType: MEDIA_TYPES.ociManifest });
  });

  it("pushes and pulls a multi-platform index", async () => {
    const source = await freshStore("src");
    const images = [await makeImage(source, AMD64), await makeImage(source, ARM64), await makeImage(source, ARMV7)];
    const index = makeIndex(images);
    const ref = parseReference(`${registry.host}/multi/app:2`);
    expect(await pushImage(ref, index, source, FAST)).toEqual({ digest: index.digest, size: index.index.length });
    const raw = skopeoInspect(`${registry.host}/multi/app:2`, true) as { manifests: { digest: string }[] };
    expect(raw.manifests.map((entry) => entry.digest)).toEqual(images.map((image) => image.digest));

    for (const [wanted, image] of [
      [{ os: "linux", architecture: "arm64" }, images[1]!],
      [{ os: "linux", architecture: "aarch64", variant: "8" }, images[1]!],
      [{ os: "linux", architecture: "arm" }, images[2]!],
      [{ os: "linux", architecture: "x86_64" }, images[0]!],
    ] as const) {
      const target = await freshStore("dst");
      const pulled = await pullImage(ref, target, { ...FAST, platform: wanted });
      expect(pulled.digest).toBe(index.digest);
      expect(pulled.manifestDigest).toBe(image.digest);
      expect(pulled.configDigest).toBe(image.config.digest);
      expect(pulled.platforms).toEqual([AMD64, ARM64, ARMV7]);
      expect(readFileSync(target.blobPath(index.digest))).toEqual(index.index);
      expect(verifyStore(target).sort()).toEqual([index.digest, image.digest, ...image.blobs.map((blob) => blob.digest)].sort());
    }
    expect(await resolveDigest(ref, FAST)).toEqual({ digest: index.digest, mediaType: MEDIA_TYPES.ociIndex });
  });

  it("names the platforms on offer when none matches", async () => {
    const source = await freshStore("src");
    const index = makeIndex([await makeImage(source, AMD64), await makeImage(source, ARM64)]);
    await pushImage(parseReference(`${registry.host}/platforms/app`), index, source, FAST);
    const error = await caught(pullImage(parseReference(`${registry.host}/platforms/app`), await freshStore(), { ...FAST, platform: { os: "linux", architecture: "s390x" } }), "NO_MATCHING_PLATFORM");
    expect(error.message).toBe(`image ${registry.host}/platforms/app:latest has no linux/s390x variant; it offers: linux/amd64, linux/arm64/v8`);
    expect(error.hint).toMatch(/--platform/);

    // A single-platform image is checked against its config.
    const single = await makeImage(source, ARM64);
    await pushImage(parseReference(`${registry.host}/platforms/one`), single, source, FAST);
    const mismatch = await caught(pullImage(parseReference(`${registry.host}/platforms/one`), await freshStore(), { ...FAST, platform: AMD64 }), "NO_MATCHING_PLATFORM");
    expect(mismatch.message).toMatch(/has no linux\/amd64 variant; it offers: linux\/arm64/);
  });

  it("skips blobs the registry or the store already has", async () => {
    const source = await freshStore("src");
    const image = await makeImage(source, AMD64);
    const ref = parseReference(`${registry.host}/skip/app:1`);
    await pushImage(ref, image, source, FAST);
    const log = eventLog();
    await pushImage(parseReference(`${registry.host}/skip/app:2`), image, source, { ...FAST, onEvent: log.onEvent });
    for (const blob of image.blobs) expect(log.actions(blob.digest)).toEqual(["exists"]);

    const pullLog = eventLog();
    await pullImage(ref, source, { ...FAST, platform: AMD64, onEvent: pullLog.onEvent });
    for (const blob of image.blobs) expect(pullLog.actions(blob.digest)).toEqual(["exists"]);
  });

  it("mounts blobs from another repository of the same registry", async () => {
    const source = await freshStore("src");
    const image = await makeImage(source, AMD64);
    const base = parseReference(`${registry.host}/mount/base:1`);
    await pushImage(base, image, source, FAST);
    const log = eventLog();
    const target = parseReference(`${registry.host}/mount/derived:1`);
    const mountFrom = new Map(image.blobs.map((blob) => [blob.digest, base]));
    await pushImage(target, image, source, { ...FAST, onEvent: log.onEvent, mountFrom });
    for (const blob of image.blobs) expect(log.actions(blob.digest)).toEqual(["mounted"]);
    const pulled = await pullImage(target, await freshStore(), { ...FAST, platform: AMD64 });
    expect(pulled.manifestDigest).toBe(image.digest);
    // A source on another registry is not mounted from.
    const elsewhere = new Map(image.blobs.map((blob) => [blob.digest, parseReference("other.example.com/mount/base:1")]));
    const otherLog = eventLog();
    await pushImage(parseReference(`${registry.host}/mount/third:1`), image, source, { ...FAST, onEvent: otherLog.onEvent, mountFrom: elsewhere });
    for (const blob of image.blobs) expect(otherLog.actions(blob.digest)).toEqual(["push"]);
  });

  it("uploads large blobs in chunks", async () => {
    const source = await freshStore("src");
    const image = await makeImage(source, AMD64, [200_000, 100]);
    proxy.clear();
    const ref = parseReference(`${proxy.host}/chunked/app:1`);
    await pushImage(ref, image, source, { ...FAST, chunkSize: 64 * 1024 });
    const big = image.layers[0]!.digest;
    const patches = proxy.requests.filter((request) => request.method === "PATCH");
    expect(patches.map((request) => request.headers["content-range"])).toEqual(["0-65535", "65536-131071", "131072-196607", "196608-199999"]);
    const puts = proxy.requests.filter((request) => request.method === "PUT" && request.url.includes("/blobs/uploads/"));
    expect(puts.filter((request) => request.url.includes(encodeURIComponent(big))).map((request) => request.headers["content-length"])).toEqual(["0"]);
    const target = await freshStore("dst");
    await pullImage(ref, target, { ...FAST, platform: AMD64 });
    expect(sha256(readFileSync(target.blobPath(big)))).toBe(big);
  });

  it("reports a missing image or tag by name", async () => {
    const error = await caught(pullImage(parseReference(`${registry.host}/nothing/here:1`), await freshStore(), { ...FAST, platform: AMD64 }), "NOT_FOUND");
    expect(error.message).toBe(`image ${registry.host}/nothing/here:1 not found on ${registry.host}`);
    await caught(resolveDigest(parseReference(`${registry.host}/nothing/here:1`), FAST), "NOT_FOUND");
  });

  it("pulls an image that skopeo pushed from the busybox fixture", async () => {
    const index = JSON.parse(readFileSync(join(FIXTURE, "index.json"), "utf8")) as { manifests: { digest: string }[] };
    const copy = spawnSync("skopeo", ["copy", "--quiet", "--preserve-digests", "--dest-tls-verify=false", `oci:${FIXTURE}:latest`, `docker://${registry.host}/busybox:latest`], { encoding: "utf8" });
    expect(copy.status, copy.stderr).toBe(0);
    const target = await freshStore("busybox");
    const pulled = await pullImage(parseReference(`${registry.host}/busybox`), target, { ...FAST, platform: AMD64 });
    expect(pulled.manifestDigest).toBe(index.manifests[0]!.digest);
    for (const layer of pulled.layers) {
      expect(readFileSync(target.blobPath(layer.digest)).equals(readFileSync(join(FIXTURE, "blobs", "sha256", layer.digest.slice(7))))).toBe(true);
    }
    verifyStore(target);
  });

  it("pulls through a mirror, falling back to the registry", async () => {
    const source = await freshStore("src");
    const image = await makeImage(source, AMD64);
    await pushImage(parseReference(`${registry.host}/mirrored/app:1`), image, source, FAST);
    // The registry as a mirror of a registry that does not exist.
    const hosts = await registryHosts({ mirrors: [`unreachable.invalid=http://${proxy.host}`], configFile: "/nonexistent/registries.json" });
    proxy.clear();
    const pulled = await pullImage(parseReference("unreachable.invalid/mirrored/app:1"), await freshStore(), { ...FAST, hosts, platform: AMD64 });
    expect(pulled.manifestDigest).toBe(image.digest);
    expect(proxy.requests.some((request) => request.url === "/v2/mirrored/app/manifests/1")).toBe(true);

    // A mirror that is down and an empty one (404) in front of the registry: the registry answers.
    const empty = await startRegistry();
    try {
      const down = `http://127.0.0.1:${await freePort()}`;
      const viaEmpty = await registryHosts({ mirrors: [`${registry.host}=${down}`, `${registry.host}=http://${empty.host}`], configFile: "/nonexistent/registries.json" });
      const again = await pullImage(parseReference(`${registry.host}/mirrored/app:1`), await freshStore(), { ...FAST, hosts: viaEmpty, platform: AMD64 });
      expect(again.manifestDigest).toBe(image.digest);
    } finally {
      await empty.stop();
    }
  });
});
