import { readdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { MEDIA_TYPES } from "../../src/exporter/index.ts";
import { parseReference, pullImage, pushImage, type TransferEvent } from "../../src/registry/index.ts";
import type { StateRoot } from "../../src/solver/store/index.ts";
import { startFaultProxy, type FaultProxy } from "./fault-proxy.ts";
import { AMD64, caught, eventLog, freshDir, freshStore, makeImage, sha256, verifyStore, type TestImage } from "./helpers.ts";
import { startRegistry, type RegistryServer } from "./registry-server.ts";

const FAST = { retries: 4, retryDelayMs: 10 };
const LAYER_SIZE = 256 * 1024;

let registry: RegistryServer;
let proxy: FaultProxy;
let image: TestImage;
beforeAll(async () => {
  registry = await startRegistry();
  proxy = await startFaultProxy(registry);
  const source = await freshStore("source");
  image = await makeImage(source, AMD64, [LAYER_SIZE, 500]);
  await pushImage(parseReference(`${registry.host}/faults/app:1`), image, source, FAST);
});
afterAll(async () => {
  await proxy?.stop();
  await registry?.stop();
});
beforeEach(() => proxy.clear());

const ref = () => parseReference(`${proxy.host}/faults/app:1`);
const layerPath = () => new RegExp(`/blobs/${image.layers[0]!.digest}$`);
const manifestPath = /\/manifests\/1$/;

async function pull(store: StateRoot, extra: { onEvent?: (event: TransferEvent) => void; retries?: number; timeouts?: { bodyMs?: number }; signal?: AbortSignal } = {}) {
  return pullImage(ref(), store, { ...FAST, platform: AMD64, ...extra });
}

function expectComplete(store: StateRoot): void {
  expect(verifyStore(store).sort()).toEqual([image.digest, ...image.blobs.map((blob) => blob.digest)].sort());
}

function expectNoTempFiles(store: StateRoot): void {
  expect(readdirSync(join(store.dir, "tmp"))).toEqual([]);
}

describe("faults while pulling", () => {
  it("retries 503 answers with backoff", async () => {
    proxy.add({ method: "GET", path: manifestPath, times: 2, fault: { kind: "status", status: 503 } });
    proxy.add({ method: "GET", path: layerPath(), times: 2, fault: { kind: "status", status: 502 } });
    const store = await freshStore();
    const log = eventLog();
    await pull(store, { onEvent: log.onEvent });
    expectComplete(store);
    const retries = log.events.filter((event) => event.kind === "retry");
    expect(retries.map((event) => event.kind === "retry" && [event.what, event.attempt])).toEqual([
      [`manifest ${proxy.host}/faults/app:1`, 1],
      [`manifest ${proxy.host}/faults/app:1`, 2],
      [`blob ${image.layers[0]!.digest.slice(0, 19)}`, 1],
      [`blob ${image.layers[0]!.digest.slice(0, 19)}`, 2],
    ]);
    expect(retries[0]).toMatchObject({ reason: "the registry answered 503 Service Unavailable" });
  });

  it("waits as long as a 429's Retry-After asks", async () => {
    proxy.add({ method: "GET", path: manifestPath, times: 1, fault: { kind: "status", status: 429, headers: { "retry-after": "1" } } });
    const store = await freshStore();
    const log = eventLog();
    const started = Date.now();
    await pull(store, { onEvent: log.onEvent });
    expect(Date.now() - started).toBeGreaterThanOrEqual(1000);
    expect(log.events.find((event) => event.kind === "retry")).toMatchObject({ delayMs: 1000, reason: "the registry answered 429 Too Many Requests" });
    expectComplete(store);
  });

  it("gives up after the retries with the ref and the last reason", async () => {
    proxy.add({ method: "GET", path: manifestPath, times: 100, fault: { kind: "status", status: 503 } });
    const error = await caught(pull(await freshStore(), { retries: 3 }), "TOO_MANY_RETRIES");
    expect(error.message).toBe(
      `cannot pull ${proxy.host}/faults/app:1: manifest ${proxy.host}/faults/app:1: gave up after 3 attempts; the last one failed: the registry answered 503 Service Unavailable`,
    );
    expect(proxy.requests.filter((request) => manifestPath.test(request.url))).toHaveLength(3);
  });

  it("resumes a blob with a Range request after a connection reset", async () => {
    proxy.add({ method: "GET", path: layerPath(), times: 1, fault: { kind: "reset", afterBytes: 100_000 } });
    const store = await freshStore();
    await pull(store);
    expectComplete(store);
    const gets = proxy.requests.filter((request) => layerPath().test(request.url));
    expect(gets).toHaveLength(2);
    expect(gets[0]!.headers.range).toBeUndefined();
    const resumedAt = Number(/^bytes=(\d+)-$/.exec(String(gets[1]!.headers.range))?.[1]);
    expect(resumedAt).toBeGreaterThan(0);
    expect(resumedAt).toBeLessThanOrEqual(100_000);
  });

  it("starts over after a truncated body", async () => {
    proxy.add({ method: "GET", path: layerPath(), times: 1, fault: { kind: "truncate", bytes: 1000 } });
    const store = await freshStore();
    const log = eventLog();
    await pull(store, { onEvent: log.onEvent });
    expectComplete(store);
    const gets = proxy.requests.filter((request) => layerPath().test(request.url));
    expect(gets.map((request) => request.headers.range)).toEqual([undefined, undefined]);
    expect(log.events.find((event) => event.kind === "retry")).toMatchObject({ reason: expect.stringMatching(/sent 1000 of 262144 bytes/) as unknown });
  });

  it("downloads wrong bytes again, once", async () => {
    proxy.add({ method: "GET", path: layerPath(), times: 1, fault: { kind: "corrupt" } });
    const store = await freshStore();
    await pull(store);
    expectComplete(store);

    proxy.add({ method: "GET", path: layerPath(), times: 2, fault: { kind: "corrupt" } });
    const broken = await freshStore();
    const error = await caught(pull(broken), "DIGEST_MISMATCH");
    expect(error.message).toMatch(new RegExp(`^cannot pull ${proxy.host}/faults/app:1: blob ${image.layers[0]!.digest.slice(0, 19)} is corrupt: the content's digest is sha256:[0-9a-f]{64} \\(downloaded twice, wrong both times\\); nothing was stored$`));
    expect(verifyStore(broken)).not.toContain(image.layers[0]!.digest);
    expectNoTempFiles(broken);
  });

  it("checks manifests against the digest asked for", async () => {
    proxy.add({ method: "GET", path: new RegExp(`/manifests/${image.digest}$`), times: 2, fault: { kind: "corrupt" } });
    const store = await freshStore();
    const error = await caught(pullImage(parseReference(`${proxy.host}/faults/app@${image.digest}`), store, { ...FAST, platform: AMD64 }), "DIGEST_MISMATCH");
    expect(error.message).toContain(`not ${image.digest}`);
    expect(readdirSync(join(store.dir, "content", "blobs", "sha256"))).toEqual([]);
  });

  it("checks manifests against the registry's Docker-Content-Digest", async () => {
    proxy.add({ method: "GET", path: manifestPath, times: 1, fault: { kind: "corrupt" } });
    const store = await freshStore();
    await pull(store);
    expectComplete(store);
    proxy.add({ method: "GET", path: manifestPath, times: 2, fault: { kind: "corrupt" } });
    const error = await caught(pull(await freshStore()), "DIGEST_MISMATCH");
    expect(error.message).toMatch(/does not match the Docker-Content-Digest/);
  });

  it("retries a stalled transfer after the body timeout", async () => {
    proxy.add({ method: "GET", path: layerPath(), times: 1, fault: { kind: "stall", afterBytes: 5000 } });
    const store = await freshStore();
    const log = eventLog();
    await pull(store, { timeouts: { bodyMs: 300 }, onEvent: log.onEvent });
    expectComplete(store);
    expect(log.events.find((event) => event.kind === "retry")).toMatchObject({ reason: expect.stringMatching(/UND_ERR_BODY_TIMEOUT/) as unknown });
  });

  it("stops promptly when aborted, leaving no temp files", async () => {
    proxy.add({ method: "GET", path: layerPath(), times: 1, fault: { kind: "stall", afterBytes: 5000 } });
    const store = await freshStore();
    const controller = new AbortController();
    let abortedAt = 0;
    const promise = pull(store, {
      signal: controller.signal,
      onEvent: (event) => {
        // The layer's download has started (and then stalls): abort a moment later.
        if (event.kind === "blob" && event.digest === image.layers[0]!.digest && abortedAt === 0) {
          abortedAt = -1;
          setTimeout(() => {
            abortedAt = Date.now();
            controller.abort(new Error("stop"));
          }, 200);
        }
      },
    });
    await expect(promise).rejects.toThrow("stop");
    expect(Date.now() - abortedAt).toBeLessThan(1000);
    expectNoTempFiles(store);
    expect(verifyStore(store)).not.toContain(image.layers[0]!.digest);
  });

  it("refuses Docker schema 1 and other non-image manifests", async () => {
    const schema1 = JSON.stringify({ schemaVersion: 1, name: "faults/app", tag: "1", fsLayers: [], history: [] });
    proxy.add({ method: "GET", path: manifestPath, times: 1, fault: { kind: "status", status: 200, headers: { "content-type": "application/vnd.docker.distribution.manifest.v1+prettyjws" }, body: schema1 } });
    const error = await caught(pull(await freshStore()), "UNSUPPORTED_MEDIA_TYPE");
    expect(error.message).toBe(`cannot pull ${proxy.host}/faults/app:1: manifest ${proxy.host}/faults/app:1 is stored in the Docker schema 1 manifest format, which is deprecated and not supported`);

    const artifact = JSON.stringify({ schemaVersion: 2, mediaType: "application/vnd.example.thing+json", blobs: [] });
    proxy.add({ method: "GET", path: manifestPath, times: 1, fault: { kind: "status", status: 200, headers: { "content-type": "application/vnd.example.thing+json" }, body: artifact } });
    const other = await caught(pull(await freshStore()), "UNSUPPORTED_MEDIA_TYPE");
    expect(other.message).toMatch(/has media type application\/vnd\.example\.thing\+json, which is not an image manifest or index/);

    proxy.add({ method: "GET", path: manifestPath, times: 1, fault: { kind: "status", status: 200, headers: { "content-type": MEDIA_TYPES.ociManifest }, body: Buffer.alloc(5 * 1024 * 1024, 32) } });
    const large = await caught(pull(await freshStore()), "BAD_RESPONSE");
    expect(large.message).toMatch(/larger than 4 MiB/);
  });
});

describe("faults while pushing", () => {
  it("retries failed uploads and manifest writes", async () => {
    const store = await freshStore();
    const fresh = await makeImage(store, AMD64, [LAYER_SIZE, 10]);
    proxy.add({ method: "PUT", path: /\/blobs\/uploads\//, times: 1, fault: { kind: "status", status: 500 } });
    proxy.add({ method: "PATCH", path: /\/blobs\/uploads\//, times: 1, fault: { kind: "status", status: 503 } });
    proxy.add({ method: "PUT", path: /\/manifests\//, times: 1, fault: { kind: "status", status: 502 } });
    const log = eventLog();
    await pushImage(parseReference(`${proxy.host}/faults/pushed:1`), fresh, store, { ...FAST, chunkSize: 100_000, concurrency: 1, onEvent: log.onEvent });
    expect(log.events.filter((event) => event.kind === "retry")).toHaveLength(3);
    const target = await freshStore();
    const pulled = await pullImage(parseReference(`${registry.host}/faults/pushed:1`), target, { ...FAST, platform: AMD64 });
    expect(pulled.manifestDigest).toBe(fresh.digest);
    expect(sha256(Buffer.from(fresh.manifest))).toBe(fresh.digest);
    verifyStore(target);
  });

  it("resumes a chunked upload where the registry has it, instead of starting the blob again", async () => {
    const store = await freshStore();
    const fresh = await makeImage(store, AMD64, [LAYER_SIZE]);
    proxy.clear();
    // The second of three chunks fails.
    proxy.add({ method: "PATCH", path: /\/blobs\/uploads\//, skip: 1, times: 1, fault: { kind: "status", status: 503 } });
    const log = eventLog();
    await pushImage(parseReference(`${proxy.host}/faults/resumed:1`), fresh, store, { ...FAST, chunkSize: 100_000, concurrency: 1, onEvent: log.onEvent });
    expect(log.events.filter((event) => event.kind === "retry")).toHaveLength(1);
    const uploads = proxy.requests.filter((request) => request.url.includes("/blobs/uploads/"));
    // One upload per blob (layer and config), the layer's asked where it stood after the failure.
    expect(uploads.filter((request) => request.method === "POST")).toHaveLength(2);
    expect(uploads.filter((request) => request.method === "GET")).toHaveLength(1);
    expect(uploads.filter((request) => request.method === "PATCH").map((request) => request.headers["content-range"])).toEqual([
      "0-99999",
      "100000-199999",
      "100000-199999",
      "200000-262143",
    ]);
    const target = await freshStore();
    const pulled = await pullImage(parseReference(`${registry.host}/faults/resumed:1`), target, { ...FAST, platform: AMD64 });
    expect(pulled.manifestDigest).toBe(fresh.digest);
    verifyStore(target);
  });

  it("starts a chunked upload again when the registry refuses the range it continues at", async () => {
    const store = await freshStore();
    const fresh = await makeImage(store, AMD64, [LAYER_SIZE]);
    proxy.clear();
    proxy.add({ method: "PATCH", path: /\/blobs\/uploads\//, skip: 1, times: 1, fault: { kind: "status", status: 416 } });
    await pushImage(parseReference(`${proxy.host}/faults/restarted:1`), fresh, store, { ...FAST, chunkSize: 100_000, concurrency: 1 });
    const uploads = proxy.requests.filter((request) => request.url.includes("/blobs/uploads/"));
    expect(uploads.filter((request) => request.method === "POST")).toHaveLength(3);
    const target = await freshStore();
    expect((await pullImage(parseReference(`${registry.host}/faults/restarted:1`), target, { ...FAST, platform: AMD64 })).manifestDigest).toBe(fresh.digest);
    verifyStore(target);
  });

  it("reports a blob missing from the local store before uploading anything", async () => {
    const store = await freshStore();
    const missing = { ...image, blobs: [...image.blobs] };
    const error = await caught(pushImage(parseReference(`${proxy.host}/faults/missing:1`), missing, store, FAST), "MISSING_CONTENT");
    expect(error.message).toMatch(/blob sha256:[0-9a-f]{64} is not in the local content store/);
    expect(proxy.requests).toEqual([]);
  });
});

describe("redirects", () => {
  let redirecting: RegistryServer;
  beforeAll(async () => {
    redirecting = await startRegistry({ htpasswd: { alice: "pw" }, redirect: true });
  });
  afterAll(async () => redirecting?.stop());

  it("follows blob redirects to storage without sending the credentials there", async () => {
    const dir = freshDir("redirect-config");
    writeFileSync(join(dir, "config.json"), JSON.stringify({ auths: { [redirecting.host]: { auth: Buffer.from("alice:pw").toString("base64") } } }));
    const source = await freshStore();
    const pushed = await makeImage(source, AMD64, [LAYER_SIZE]);
    const target = parseReference(`${redirecting.host}/redirect/app:1`);
    await pushImage(target, pushed, source, { ...FAST, dockerConfigDir: dir });
    const store = await freshStore();
    const pulled = await pullImage(target, store, { ...FAST, platform: AMD64, dockerConfigDir: dir });
    expect(pulled.manifestDigest).toBe(pushed.digest);
    verifyStore(store);
    const blobGets = redirecting.storageRequests.filter((request) => request.method === "GET" && request.path.includes("/blobs/"));
    expect(blobGets.length).toBeGreaterThanOrEqual(2);
    expect(redirecting.storageRequests.every((request) => !request.authorization)).toBe(true);
  });
});
