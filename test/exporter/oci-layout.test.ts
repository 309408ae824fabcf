import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { Writable } from "node:stream";
import { join } from "node:path";
import { gzipSync } from "node:zlib";
import { beforeAll, describe, expect, it } from "vitest";
import {
  extractLayer,
  MEDIA_TYPES,
  readOciLayout,
  writeLayerBlob,
  writeOciLayout,
  writeOciTar,
  type ImageConfigInput,
  type ImageIndexInput,
  type LayerBlob,
  type OciIndex,
  type OciManifest,
} from "../../src/exporter/index.ts";
import { requireTools, run, setAllMtimes, sha256, tempDir } from "./helpers.ts";
import { makeStack, treeContents } from "./layers.ts";

const CONFIG: ImageConfigInput = {
  created: "2024-01-02T03:04:05Z",
  architecture: "amd64",
  os: "linux",
  config: {
    User: "1000:1000",
    ExposedPorts: { "8080/tcp": {} },
    Env: ["PATH=/usr/local/bin:/usr/bin:/bin", "APP=1"],
    Entrypoint: ["/bin/sh", "-c"],
    Cmd: ["echo hi"],
    Volumes: { "/data": {} },
    WorkingDir: "/app",
    Labels: { "org.example.b": "2", "org.example.a": "1" },
    StopSignal: "SIGTERM",
    Healthcheck: { Test: ["CMD-SHELL", "true"], Interval: 30_000_000_000, Retries: 3 },
    Shell: ["/bin/sh", "-c"],
    OnBuild: ["RUN echo child"],
  },
  history: [
    { created: "2024-01-02T03:04:05Z", created_by: "ADD base /", comment: "base" },
    { created: "2024-01-02T03:04:05Z", created_by: "RUN change", comment: "buildkit.dockerfile.v0" },
    { created: "2024-01-02T03:04:05Z", created_by: "ENV APP=1", empty_layer: true },
    { created: "2024-01-02T03:04:05Z", created_by: "COPY top /" },
  ],
};

let blobs: LayerBlob[] = [];
/** The same layers, zstd-compressed. */
let zstdBlobs: LayerBlob[] = [];
let expected: Record<string, string> = {};
let work = "";

beforeAll(async () => {
  requireTools(["skopeo", "umoci"]);
  work = tempDir();
  const stack = makeStack(work);
  expected = stack.expected;
  blobs = [];
  zstdBlobs = [];
  for (const layer of stack.layers) {
    blobs.push(await writeLayerBlob(layer, join(work, "blobs"), { compression: "gzip" }));
    zstdBlobs.push(await writeLayerBlob(layer, join(work, "blobs"), { compression: "zstd" }));
  }
}, 600_000);

function skopeoInspect(ref: string, ...flags: string[]): Record<string, unknown> {
  return JSON.parse(run("skopeo", ["inspect", ...flags, ref])) as Record<string, unknown>;
}

describe("writeOciLayout", () => {
  it("writes a layout that skopeo inspects and umoci unpacks, whiteouts and opaque dirs applied", async () => {
    const dir = join(tempDir(), "layout");
    const written = await writeOciLayout(dir, { layers: blobs, config: CONFIG, tags: ["latest", "registry.example.com/app:1.2"] });

    expect(JSON.parse(readFileSync(join(dir, "oci-layout"), "utf8"))).toEqual({ imageLayoutVersion: "1.0.0" });
    const index = JSON.parse(readFileSync(join(dir, "index.json"), "utf8")) as OciIndex;
    expect(index.manifests.map((entry) => entry.annotations)).toEqual([
      { "org.opencontainers.image.ref.name": "latest" },
      { "io.containerd.image.name": "registry.example.com/app:1.2", "org.opencontainers.image.ref.name": "1.2" },
    ]);
    expect(index.manifests[0]).toMatchObject({ mediaType: MEDIA_TYPES.ociManifest, digest: written.manifestDigest, platform: { architecture: "amd64", os: "linux" } });

    for (const tag of ["latest", "1.2"]) {
      const info = skopeoInspect(`oci:${dir}:${tag}`);
      expect(info.Digest).toBe(written.manifestDigest);
      expect(info.Layers).toEqual(blobs.map((blob) => blob.digest));
      expect(info).toMatchObject({ Architecture: "amd64", Os: "linux", Env: CONFIG.config?.Env, Labels: CONFIG.config?.Labels, Created: "2024-01-02T03:04:05Z" });
    }
    const config = skopeoInspect(`oci:${dir}:latest`, "--config");
    expect(config.rootfs).toEqual({ type: "layers", diff_ids: blobs.map((blob) => blob.diffId) });
    expect(config.config).toMatchObject({ Entrypoint: ["/bin/sh", "-c"], Cmd: ["echo hi"], WorkingDir: "/app", User: "1000:1000", ExposedPorts: { "8080/tcp": {} } });
    const raw = run("skopeo", ["inspect", "--raw", `oci:${dir}:latest`]);
    expect(sha256(raw)).toBe(written.manifestDigest);
    expect(sha256(readFileSync(join(dir, "blobs/sha256", written.configDigest.slice(7))))).toBe(written.configDigest);

    const bundle = join(tempDir(), "bundle");
    run("umoci", ["unpack", "--image", `${dir}:1.2`, bundle]);
    expect(treeContents(join(bundle, "rootfs"))).toEqual(expected);
    const runtime = JSON.parse(readFileSync(join(bundle, "config.json"), "utf8")) as { process: { args: string[]; cwd: string } };
    expect(runtime.process.args).toEqual(["/bin/sh", "-c", "echo hi"]);
    expect(runtime.process.cwd).toBe("/app");
  });

  it("adds to an existing layout: new tags kept alongside, the same tag replaced", async () => {
    const dir = join(tempDir(), "layout");
    const first = await writeOciLayout(dir, { layers: blobs, config: CONFIG, tags: ["v1", "latest"] });
    const second = await writeOciLayout(dir, { layers: blobs.slice(0, 1), config: { architecture: "amd64", os: "linux" }, tags: ["v2", "latest"] });
    expect(second.manifestDigest).not.toBe(first.manifestDigest);
    expect(skopeoInspect(`oci:${dir}:v1`).Digest).toBe(first.manifestDigest);
    expect(skopeoInspect(`oci:${dir}:v2`).Digest).toBe(second.manifestDigest);
    expect(skopeoInspect(`oci:${dir}:latest`).Digest).toBe(second.manifestDigest);
    const refs = (JSON.parse(readFileSync(join(dir, "index.json"), "utf8")) as OciIndex).manifests.map(
      (entry) => entry.annotations?.["org.opencontainers.image.ref.name"],
    );
    expect(refs).toEqual(["v1", "v2", "latest"]);
    // The same image written again changes nothing.
    const before = readFileSync(join(dir, "index.json"));
    await writeOciLayout(dir, { layers: blobs.slice(0, 1), config: { architecture: "amd64", os: "linux" }, tags: ["v2", "latest"] });
    expect(readFileSync(join(dir, "index.json"))).toEqual(before);
  });

  it("serializes the config canonically: key order does not change the digest", async () => {
    const reordered: ImageConfigInput = {
      history: CONFIG.history,
      config: { ...CONFIG.config, Labels: { "org.example.a": "1", "org.example.b": "2" } },
      os: "linux",
      architecture: "amd64",
      created: CONFIG.created,
    };
    const a = await writeOciLayout(join(tempDir(), "a"), { layers: blobs, config: CONFIG, tags: ["x"] });
    const b = await writeOciLayout(join(tempDir(), "b"), { layers: blobs, config: reordered, tags: ["x"] });
    expect(b).toEqual(a);
  });

  it("fills, checks and aligns rootfs and history with the layers", async () => {
    const dir = join(tempDir(), "layout");
    const bad = { ...CONFIG, rootfs: { type: "layers" as const, diff_ids: [blobs[0]?.diffId ?? ""] } };
    await expect(writeOciLayout(dir, { layers: blobs, config: bad, tags: ["x"] })).rejects.toMatchObject({ code: "ERR_IMAGE_CONFIG" });
    await expect(writeOciLayout(dir, { layers: blobs, config: { ...CONFIG, architecture: "" }, tags: ["x"] })).rejects.toThrow(/needs an architecture/);

    // One history entry for three layers: two placeholders are added before it.
    await writeOciLayout(dir, { layers: blobs, config: { architecture: "arm64", os: "linux", variant: "v8", history: [{ created_by: "last" }] }, tags: ["x"] });
    const image = await readOciLayout(dir, "x");
    expect(image.config.history?.map((entry) => entry.created_by)).toEqual(["", "", "last"]);
    expect(image.manifest.layers.map((layer) => layer.digest)).toEqual(blobs.map((blob) => blob.digest));
    expect(skopeoInspect(`oci:${dir}:x`, "--config").variant).toBe("v8");
  });
});

describe("writeOciTar", () => {
  it("packs the layout in a tar that skopeo reads, deterministically", async () => {
    const dir = tempDir();
    const file = join(dir, "image.tar");
    const written = await writeOciTar(file, { layers: blobs, config: CONFIG, tags: ["registry.example.com/app:1.2"] });
    const info = skopeoInspect(`oci-archive:${file}:1.2`);
    expect(info.Digest).toBe(written.manifestDigest);
    expect(info.Layers).toEqual(blobs.map((blob) => blob.digest));

    const names = run("tar", ["-tf", file]).trim().split("\n");
    expect(names.slice(0, 4)).toEqual(["oci-layout", "index.json", "blobs/", "blobs/sha256/"]);
    expect(names).toContain(`blobs/sha256/${written.configDigest.slice(7)}`);
    expect(names).toHaveLength(4 + blobs.length + 2);

    const again = join(dir, "again.tar");
    await writeOciTar(again, { layers: blobs, config: CONFIG, tags: ["registry.example.com/app:1.2"] });
    expect(sha256(readFileSync(again))).toBe(sha256(readFileSync(file)));

    // The same image as a directory layout unpacked with tar is what writeOciLayout writes.
    const unpacked = join(dir, "unpacked");
    mkdirSync(unpacked);
    run("tar", ["-xf", file, "-C", unpacked]);
    const layout = join(dir, "layout");
    await writeOciLayout(layout, { layers: blobs, config: CONFIG, tags: ["registry.example.com/app:1.2"] });
    expect(readFileSync(join(unpacked, "index.json"))).toEqual(readFileSync(join(layout, "index.json")));
  });

  it("reads back with readOciLayout, whose layers extract to the image's files", async () => {
    const file = join(tempDir(), "image.tar");
    const written = await writeOciTar(file, { layers: blobs, config: CONFIG, tags: ["registry.example.com/app:1.2"] });
    for (const tag of ["1.2", "registry.example.com/app:1.2", undefined]) {
      const image = await readOciLayout(file, tag);
      try {
        expect(image.manifestDigest).toBe(written.manifestDigest);
        expect(image.configDigest).toBe(written.configDigest);
        expect(image.layers.map(({ digest, diffId, mediaType, size }) => ({ digest, diffId, mediaType, size }))).toEqual(
          blobs.map(({ digest, diffId, mediaType, size }) => ({ digest, diffId, mediaType, size })),
        );
        const into = join(tempDir(), "layer0");
        const layer = image.layers[0];
        if (!layer) throw new Error("no layer");
        await extractLayer(layer.path, layer.mediaType, into, { digest: layer.digest, diffId: layer.diffId });
        expect(existsSync(join(into, "etc/apt/keep.conf"))).toBe(true);
      } finally {
        await image.dispose();
      }
      expect(existsSync(image.layoutDir)).toBe(false);
    }
    // A gzipped OCI tar reads the same.
    const gz = `${file}.gz`;
    writeFileSync(gz, gzipSync(readFileSync(file)));
    const image = await readOciLayout(gz, "1.2");
    expect(image.manifestDigest).toBe(written.manifestDigest);
    await image.dispose();
    await expect(readOciLayout(join(tempDir(), "missing.tar"))).rejects.toThrow(/OCI layout .*missing\.tar cannot be read/);
    const junk = join(tempDir(), "junk.tar");
    writeFileSync(junk, "not a tar at all".repeat(100));
    await expect(readOciLayout(junk)).rejects.toThrow(/junk\.tar is not a readable OCI tar/);
  });
});

describe("readOciLayout", () => {
  it("selects by ref name, full name or digest, and says which tags exist when one is missing", async () => {
    const dir = join(tempDir(), "layout");
    const one = await writeOciLayout(dir, { layers: blobs, config: CONFIG, tags: ["app:1"] });
    const two = await writeOciLayout(dir, { layers: blobs.slice(0, 2), config: { architecture: "amd64", os: "linux" }, tags: ["2"] });
    expect((await readOciLayout(dir, "1")).manifestDigest).toBe(one.manifestDigest);
    expect((await readOciLayout(dir, "app:1")).manifestDigest).toBe(one.manifestDigest);
    expect((await readOciLayout(dir, "2")).manifestDigest).toBe(two.manifestDigest);
    expect((await readOciLayout(dir, `@${two.manifestDigest}`)).layers).toHaveLength(2);
    await expect(readOciLayout(dir, "3")).rejects.toThrow(/has no image tagged "3" \(it has: app:1, 2\)/);
    await expect(readOciLayout(dir)).rejects.toThrow(/holds several images \(app:1, 2\): name one with a tag/);
    await expect(readOciLayout(join(dir, "blobs"))).rejects.toThrow(/is not an OCI image layout: it has no oci-layout file/);
  });

  it("detects a corrupt blob", async () => {
    const dir = join(tempDir(), "layout");
    const written = await writeOciLayout(dir, { layers: blobs, config: CONFIG, tags: ["x"] });
    const configPath = join(dir, "blobs/sha256", written.configDigest.slice(7));
    writeFileSync(configPath, readFileSync(configPath, "utf8").replace("amd64", "arm64"));
    await expect(readOciLayout(dir, "x")).rejects.toMatchObject({ code: "ERR_DIGEST_MISMATCH" });
  });

  it("picks a platform from a multi-platform index", async () => {
    const dir = join(tempDir(), "layout");
    const amd = await writeOciLayout(dir, { layers: blobs, config: { architecture: "amd64", os: "linux" }, tags: ["amd"] });
    const arm = await writeOciLayout(dir, { layers: blobs.slice(0, 1), config: { architecture: "arm64", os: "linux", variant: "v8" }, tags: ["arm"] });
    const size = (digest: string) => readFileSync(join(dir, "blobs/sha256", digest.slice(7))).length;
    const nested = Buffer.from(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: MEDIA_TYPES.ociIndex,
        manifests: [
          { mediaType: MEDIA_TYPES.ociManifest, digest: amd.manifestDigest, size: size(amd.manifestDigest), platform: { architecture: "amd64", os: "linux" } },
          { mediaType: MEDIA_TYPES.ociManifest, digest: arm.manifestDigest, size: size(arm.manifestDigest), platform: { architecture: "arm64", os: "linux", variant: "v8" } },
          { mediaType: MEDIA_TYPES.ociManifest, digest: arm.manifestDigest, size: size(arm.manifestDigest), platform: { architecture: "unknown", os: "unknown" } },
        ],
      }),
    );
    writeFileSync(join(dir, "blobs/sha256", sha256(nested).slice(7)), nested);
    writeFileSync(
      join(dir, "index.json"),
      JSON.stringify({
        schemaVersion: 2,
        manifests: [{ mediaType: MEDIA_TYPES.ociIndex, digest: sha256(nested), size: nested.length, annotations: { "org.opencontainers.image.ref.name": "multi" } }],
      }),
    );
    expect((await readOciLayout(dir, "multi", { platform: { os: "linux", architecture: "arm64" } })).manifestDigest).toBe(arm.manifestDigest);
    expect((await readOciLayout(dir, "multi", { platform: { os: "linux", architecture: "amd64" } })).manifestDigest).toBe(amd.manifestDigest);
    await expect(readOciLayout(dir, "multi", { platform: { os: "linux", architecture: "s390x" } })).rejects.toThrow(
      /has no image for linux\/s390x \(it has: linux\/amd64, linux\/arm64\/v8\)/,
    );
    // skopeo picks the same image (it reports the index's digest, and the image's layers).
    const info = skopeoInspect(`oci:${dir}:multi`, "--override-arch", "arm64", "--override-variant", "v8");
    expect(info).toMatchObject({ Digest: sha256(nested), Architecture: "arm64", Layers: [blobs[0]?.digest] });
  });
});

describe("layer blobs from a real build step", () => {
  it("handle an empty layer", async () => {
    const dir = join(tempDir(), "empty");
    mkdirSync(dir);
    setAllMtimes(dir, 0);
    const blob = await writeLayerBlob({ dir, opaqueDirs: [] }, join(tempDir(), "out"), { compression: "gzip" });
    const layout = join(tempDir(), "layout");
    await writeOciLayout(layout, { layers: [blob], config: { architecture: "amd64", os: "linux" }, tags: ["empty"] });
    const bundle = join(tempDir(), "bundle");
    run("umoci", ["unpack", "--image", `${layout}:empty`, bundle]);
    expect(treeContents(join(bundle, "rootfs"))).toEqual({});
  });
});

/** A blob of a layout, parsed. */
function blobJson<T>(dir: string, digest: string): T {
  return JSON.parse(readFileSync(join(dir, "blobs/sha256", digest.slice(7)), "utf8")) as T;
}

function multiPlatform(tags: string[] = ["multi", "registry.example.com/app:2"]): ImageIndexInput {
  return {
    images: [
      { layers: blobs, config: { ...CONFIG, architecture: "amd64" } },
      { layers: zstdBlobs, config: { ...CONFIG, architecture: "arm64", variant: "v8" } },
    ],
    tags,
  };
}

describe("multi-platform images", () => {
  it("are written as an OCI image index that skopeo reads per platform, and whose images unpack", async () => {
    const dir = join(tempDir(), "layout");
    const written = await writeOciLayout(dir, multiPlatform());
    expect(written.images.map((image) => image.platform)).toEqual([
      { architecture: "amd64", os: "linux" },
      { architecture: "arm64", os: "linux" },
    ]);
    const index = JSON.parse(readFileSync(join(dir, "index.json"), "utf8")) as OciIndex;
    expect(index.manifests).toHaveLength(2);
    for (const entry of index.manifests) expect(entry).toMatchObject({ mediaType: MEDIA_TYPES.ociIndex, digest: written.indexDigest });
    expect(index.manifests[0]?.platform).toBeUndefined();
    const imageIndex = blobJson<OciIndex>(dir, written.indexDigest);
    expect(imageIndex.manifests.map(({ digest, platform }) => ({ digest, platform }))).toEqual(
      written.images.map(({ manifestDigest, platform }) => ({ digest: manifestDigest, platform })),
    );
    expect(sha256(run("skopeo", ["inspect", "--raw", `oci:${dir}:multi`]))).toBe(written.indexDigest);

    for (const [arch, layers] of [["amd64", blobs], ["arm64", zstdBlobs]] as const) {
      const info = skopeoInspect(`oci:${dir}:2`, "--override-arch", arch);
      expect(info).toMatchObject({ Digest: written.indexDigest, Architecture: arch, Layers: layers.map((blob) => blob.digest) });
      const image = await readOciLayout(dir, "multi", { platform: { os: "linux", architecture: arch } });
      expect(image.config.architecture).toBe(arch);
      expect(image.layers.map((layer) => layer.mediaType)).toEqual(layers.map((blob) => blob.mediaType));
      // skopeo decompresses every layer (zstd ones too) into gzip ones that umoci unpacks.
      const single = join(tempDir(), "single");
      run("skopeo", ["copy", "-q", "--override-arch", arch, "--dest-compress", "--dest-compress-format", "gzip", `oci:${dir}:multi`, `oci:${single}:one`]);
      const bundle = join(tempDir(), "bundle");
      run("umoci", ["unpack", "--image", `${single}:one`, bundle]);
      expect(treeContents(join(bundle, "rootfs"))).toEqual(expected);
    }
  });

  it("pack into a deterministic OCI tar, to a file or a stream", async () => {
    const dir = tempDir();
    const file = join(dir, "multi.tar");
    const written = await writeOciTar(file, multiPlatform());
    const again = join(dir, "again.tar");
    await writeOciTar(again, multiPlatform());
    expect(readFileSync(again)).toEqual(readFileSync(file));
    const chunks: Buffer[] = [];
    await writeOciTar(new Writable({ write: (chunk: Buffer, _encoding, callback) => (chunks.push(chunk), callback()) }), multiPlatform());
    expect(Buffer.concat(chunks)).toEqual(readFileSync(file));

    expect(skopeoInspect(`oci-archive:${file}:multi`, "--override-arch", "arm64")).toMatchObject({ Digest: written.indexDigest, Architecture: "arm64" });
    const names = run("tar", ["-tf", file]).trim().split("\n");
    // Layers (shared ones once), two configs, two manifests and the index.
    expect(names).toHaveLength(4 + blobs.length + zstdBlobs.length + 2 + 2 + 1);
    expect(names.at(-1)).toBe(`blobs/sha256/${written.indexDigest.slice(7)}`);
    const image = await readOciLayout(file, "registry.example.com/app:2", { platform: { os: "linux", architecture: "arm64", variant: "v8" } });
    expect(image.manifestDigest).toBe(written.images[1]?.manifestDigest);
    await image.dispose();
  });

  it("replace a single-platform image of the same tag in a layout, and refuse bad inputs", async () => {
    const dir = join(tempDir(), "layout");
    await writeOciLayout(dir, { layers: blobs, config: CONFIG, tags: ["multi", "single"] });
    const written = await writeOciLayout(dir, multiPlatform(["multi"]));
    const index = JSON.parse(readFileSync(join(dir, "index.json"), "utf8")) as OciIndex;
    expect(index.manifests.map((entry) => [entry.annotations?.["org.opencontainers.image.ref.name"], entry.mediaType])).toEqual([
      ["single", MEDIA_TYPES.ociManifest],
      ["multi", MEDIA_TYPES.ociIndex],
    ]);
    expect(index.manifests[1]?.digest).toBe(written.indexDigest);

    const amd = { layers: blobs, config: CONFIG };
    await expect(writeOciLayout(dir, { images: [amd, { ...amd, platform: { os: "linux", architecture: "x86_64" } }], tags: ["x"] })).rejects.toThrow(
      /two images are given for platform linux\/amd64/,
    );
    await expect(writeOciLayout(dir, { images: [{ ...amd, platform: { os: "linux", architecture: "arm64" } }], tags: ["x"] })).rejects.toThrow(
      /the image for platform linux\/arm64 has a config for linux\/amd64/,
    );
    await expect(writeOciLayout(dir, { images: [], tags: ["x"] })).rejects.toThrow(/needs at least one platform's image/);
  });
});

describe("annotations", () => {
  it("go where BuildKit puts them in a multi-platform image", async () => {
    const dir = join(tempDir(), "layout");
    const annotations = {
      manifest: { "org.opencontainers.image.title": "App" },
      index: { "org.opencontainers.image.vendor": "Example" },
      manifestDescriptor: { "com.example.descriptor": "all" },
      indexDescriptor: { "com.example.top": "layout entry" },
      platforms: { "linux/arm64": { manifest: { "org.opencontainers.image.url": "https://example.com/arm64" }, manifestDescriptor: { "com.example.arm": "yes" } } },
    };
    const written = await writeOciLayout(dir, multiPlatform(["multi"]), { annotations });
    const entry = (JSON.parse(readFileSync(join(dir, "index.json"), "utf8")) as OciIndex).manifests[0];
    expect(entry?.annotations).toEqual({ "com.example.top": "layout entry", "org.opencontainers.image.ref.name": "multi" });
    const index = JSON.parse(run("skopeo", ["inspect", "--raw", `oci:${dir}:multi`])) as OciIndex;
    expect(index.annotations).toEqual({ "org.opencontainers.image.vendor": "Example" });
    expect(index.manifests.map((descriptor) => descriptor.annotations)).toEqual([
      { "com.example.descriptor": "all" },
      { "com.example.descriptor": "all", "com.example.arm": "yes" },
    ]);
    const [amd, arm] = written.images.map((image) => blobJson<OciManifest>(dir, image.manifestDigest));
    expect(amd?.annotations).toEqual({ "org.opencontainers.image.title": "App" });
    expect(arm?.annotations).toEqual({ "org.opencontainers.image.title": "App", "org.opencontainers.image.url": "https://example.com/arm64" });
  });

  it("go on the manifest and its index.json entries in a single-platform image, which refuses index ones", async () => {
    const dir = join(tempDir(), "layout");
    const written = await writeOciLayout(
      dir,
      { layers: blobs, config: CONFIG, tags: ["latest", "registry.example.com/app:1.2"], annotations: { "com.example.old": "kept", "com.example.both": "old" } },
      { annotations: { manifest: { "com.example.both": "new" }, manifestDescriptor: { "com.example.entry": "e" }, platforms: { "linux/amd64": { manifest: { "com.example.amd": "a" } } } } },
    );
    const manifest = JSON.parse(run("skopeo", ["inspect", "--raw", `oci:${dir}:latest`])) as OciManifest;
    expect(manifest.annotations).toEqual({ "com.example.old": "kept", "com.example.both": "new", "com.example.amd": "a" });
    const entries = (JSON.parse(readFileSync(join(dir, "index.json"), "utf8")) as OciIndex).manifests;
    expect(entries.map((entry) => entry.annotations)).toEqual([
      { "com.example.entry": "e", "org.opencontainers.image.ref.name": "latest" },
      { "com.example.entry": "e", "io.containerd.image.name": "registry.example.com/app:1.2", "org.opencontainers.image.ref.name": "1.2" },
    ]);
    expect(entries[0]?.digest).toBe(written.manifestDigest);
    const bundle = join(tempDir(), "bundle");
    run("umoci", ["unpack", "--image", `${dir}:1.2`, bundle]);
    expect(treeContents(join(bundle, "rootfs"))).toEqual(expected);

    const single = { layers: blobs, config: CONFIG, tags: ["x"] };
    await expect(writeOciLayout(dir, single, { annotations: { index: { a: "b" } } })).rejects.toMatchObject({
      code: "ERR_ANNOTATION",
      message: "index annotations need a multi-platform image, and this one has a single platform (no image index)",
    });
    await expect(writeOciTar(join(tempDir(), "x.tar"), single, { annotations: { indexDescriptor: { a: "b" } } })).rejects.toThrow(/index-descriptor annotations need a multi-platform image/);
    await expect(writeOciLayout(dir, single, { annotations: { platforms: { "linux/arm64": { manifest: { a: "b" } } } } })).rejects.toThrow(
      /annotations are given for platform linux\/arm64, but the image has linux\/amd64/,
    );
  });
});

describe("sourceDateEpoch", () => {
  it("clamps the config's and history's times, so builds at other times give the same image", async () => {
    const epoch = 1_700_000_000;
    const later = { ...CONFIG, created: "2025-05-05T05:05:05Z", history: CONFIG.history?.map((entry) => ({ ...entry, created: "2025-05-05T05:05:05Z" })) };
    const a = await writeOciLayout(join(tempDir(), "a"), { layers: blobs, config: CONFIG, tags: ["x"] }, { sourceDateEpoch: epoch });
    const dir = join(tempDir(), "b");
    const b = await writeOciLayout(dir, { layers: blobs, config: later, tags: ["x"] }, { sourceDateEpoch: epoch });
    const unclamped = await writeOciLayout(join(tempDir(), "c"), { layers: blobs, config: later, tags: ["x"] });
    // CONFIG's times (2024) are later than the epoch (2023-11-14) too.
    expect(b).toEqual(a);
    expect(unclamped.configDigest).not.toBe(a.configDigest);
    const config = skopeoInspect(`oci:${dir}:x`, "--config") as { created: string; history: { created: string }[] };
    expect(config.created).toBe("2023-11-14T22:13:20Z");
    expect(new Set(config.history.map((entry) => entry.created))).toEqual(new Set(["2023-11-14T22:13:20Z"]));
    const entry = (JSON.parse(readFileSync(join(dir, "index.json"), "utf8")) as OciIndex).manifests[0];
    expect(entry?.annotations?.["org.opencontainers.image.created"]).toBe("2023-11-14T22:13:20Z");

    const tar = join(tempDir(), "m.tar");
    const multi = await writeOciTar(tar, multiPlatform(), { sourceDateEpoch: epoch });
    const image = await readOciLayout(tar, "multi", { platform: { os: "linux", architecture: "arm64" } });
    expect(image.manifestDigest).toBe(multi.images[1]?.manifestDigest);
    expect(image.config.created).toBe("2023-11-14T22:13:20Z");
    await image.dispose();
    await expect(writeOciLayout(dir, { layers: blobs, config: CONFIG, tags: ["x"] }, { sourceDateEpoch: -5 })).rejects.toMatchObject({ code: "ERR_BAD_OPTION" });
  });
});
