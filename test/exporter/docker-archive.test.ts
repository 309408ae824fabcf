import { spawn } from "node:child_process";
import { createReadStream, createWriteStream, existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { Writable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { gzipSync } from "node:zlib";
import { beforeAll, describe, expect, it } from "vitest";
import {
  extractLayer,
  MEDIA_TYPES,
  readImageArchive,
  writeDockerArchive,
  writeLayerBlob,
  writeOciTar,
  type ImageConfig,
  type ImageConfigInput,
  type LayerBlob,
  type OciIndex,
} from "../../src/exporter/index.ts";
import { rawTar, requireTools, run, sha256, tempDir, type RawEntry } from "./helpers.ts";
import { makeStack, treeContents } from "./layers.ts";

const CONFIG: ImageConfigInput = {
  created: "2024-01-02T03:04:05Z",
  architecture: "amd64",
  os: "linux",
  config: { Env: ["PATH=/usr/bin:/bin", "APP=1"], Cmd: ["/bin/sh"], WorkingDir: "/app", Labels: { "org.example": "x" } },
  history: [{ created_by: "base" }, { created_by: "middle" }, { created_by: "top" }],
};

const gzipBlobs: LayerBlob[] = [];
const zstdBlobs: LayerBlob[] = [];
const plainBlobs: LayerBlob[] = [];
let expected: Record<string, string> = {};

beforeAll(async () => {
  requireTools(["skopeo", "umoci"]);
  const work = tempDir();
  const stack = makeStack(work);
  expected = stack.expected;
  for (const layer of stack.layers) {
    gzipBlobs.push(await writeLayerBlob(layer, join(work, "blobs"), { compression: "gzip" }));
    zstdBlobs.push(await writeLayerBlob(layer, join(work, "blobs"), { compression: "zstd" }));
    plainBlobs.push(await writeLayerBlob(layer, join(work, "blobs"), { compression: "uncompressed" }));
  }
}, 600_000);

/** Mixed compressions, as an image whose base layer was pulled gzip and whose own ones are zstd or plain. */
function mixed(): LayerBlob[] {
  return [gzipBlobs[0], zstdBlobs[1], plainBlobs[2]] as LayerBlob[];
}

/** Entries of a tar file: name, type, size, mtime, owner. */
function listing(file: string): string[] {
  return run("tar", ["--numeric-owner", "--full-time", "-tvf", file]).trim().split("\n");
}

describe("writeDockerArchive", () => {
  it("writes manifest.json, repositories, blobs and an OCI index, that skopeo reads as a docker archive and as an OCI one", async () => {
    const file = join(tempDir(), "image.tar");
    const written = await writeDockerArchive(file, [{ config: CONFIG, layers: mixed(), tags: ["app:1", "docker.io/library/app:2", "registry.example.com:5000/team/app"] }]);
    const [image] = written.images;
    expect(image?.repoTags).toEqual(["app:1", "app:2", "registry.example.com:5000/team/app:latest"]);

    const names = run("tar", ["-tf", file]).trim().split("\n");
    expect(names.slice(0, 2)).toEqual(["blobs/", "blobs/sha256/"]);
    expect(names.slice(-4)).toEqual(["index.json", "manifest.json", "oci-layout", "repositories"]);
    expect(names.slice(2, -4)).toEqual([...names.slice(2, -4)].sort());
    for (const line of listing(file)) expect(line).toMatch(/^\S+ 0\/0 +\d+ 1970-01-01 00:00:00 /);

    const read = (name: string) => run("tar", ["-xOf", file, name]);
    const manifest = JSON.parse(read("manifest.json")) as { Config: string; RepoTags: string[]; Layers: string[] }[];
    // The zstd layer is stored decompressed: its blob is named by its diffId.
    const layerDigests = [gzipBlobs[0]?.digest, zstdBlobs[1]?.diffId, plainBlobs[2]?.digest];
    expect(manifest).toEqual([
      {
        Config: `blobs/sha256/${image?.configDigest.slice(7)}`,
        RepoTags: image?.repoTags,
        Layers: layerDigests.map((digest) => `blobs/sha256/${digest?.slice(7)}`),
      },
    ]);
    expect(JSON.parse(read("repositories"))).toEqual({
      app: { "1": layerDigests[2]?.slice(7), "2": layerDigests[2]?.slice(7) },
      "registry.example.com:5000/team/app": { latest: layerDigests[2]?.slice(7) },
    });
    const config = JSON.parse(read(manifest[0]?.Config ?? "")) as ImageConfig;
    expect(config.rootfs.diff_ids).toEqual(gzipBlobs.map((blob) => blob.diffId));
    expect(sha256(run("tar", ["-xOf", file, `blobs/sha256/${layerDigests[1]?.slice(7)}`]))).toBe(zstdBlobs[1]?.diffId);
    const index = JSON.parse(read("index.json")) as OciIndex;
    expect(index.manifests.map((entry) => entry.annotations?.["io.containerd.image.name"])).toEqual([
      "docker.io/library/app:1",
      "docker.io/library/app:2",
      "registry.example.com:5000/team/app:latest",
    ]);

    const info = JSON.parse(run("skopeo", ["inspect", `docker-archive:${file}:app:1`])) as Record<string, unknown>;
    expect(info).toMatchObject({ Name: "docker.io/library/app", Architecture: "amd64", Env: ["PATH=/usr/bin:/bin", "APP=1"], Labels: { "org.example": "x" } });
    const asOci = JSON.parse(run("skopeo", ["inspect", `oci-archive:${file}:2`])) as Record<string, unknown>;
    expect(asOci).toMatchObject({ Digest: image?.manifestDigest, Layers: layerDigests });
    // Unpacked by an unpacker nobody here wrote, after skopeo converted it.
    const layout = join(tempDir(), "layout");
    run("skopeo", ["copy", "-q", `docker-archive:${file}:app:1`, `oci:${layout}:x`]);
    const bundle = join(tempDir(), "bundle");
    run("umoci", ["unpack", "--image", `${layout}:x`, bundle]);
    expect(treeContents(join(bundle, "rootfs"))).toEqual(expected);
  });

  it("is deterministic, to a file or a stream, and keeps config bytes as they are", async () => {
    const dir = tempDir();
    const images = [
      { config: CONFIG, layers: mixed(), tags: ["app:1"] },
      { config: { architecture: "arm64", os: "linux" }, layers: gzipBlobs.slice(0, 1), tags: [] },
    ];
    await writeDockerArchive(join(dir, "a.tar"), images);
    await writeDockerArchive(join(dir, "b.tar"), images);
    expect(readFileSync(join(dir, "b.tar"))).toEqual(readFileSync(join(dir, "a.tar")));
    const chunks: Buffer[] = [];
    await writeDockerArchive(new Writable({ write: (chunk: Buffer, _encoding, callback) => (chunks.push(chunk), callback()) }), images);
    expect(Buffer.concat(chunks)).toEqual(readFileSync(join(dir, "a.tar")));
    // The untagged image: RepoTags null, as docker save writes it; a shared layer is stored once.
    const manifest = JSON.parse(run("tar", ["-xOf", join(dir, "a.tar"), "manifest.json"])) as { RepoTags: unknown }[];
    expect(manifest[1]?.RepoTags).toBeNull();
    expect(run("tar", ["-tf", join(dir, "a.tar")]).match(new RegExp(gzipBlobs[0]?.digest.slice(7) ?? "x", "g"))).toHaveLength(1);

    // Config bytes (a docker config, keys in docker's order) keep their digest: the image id.
    const bytes = Buffer.from(JSON.stringify({ architecture: "amd64", os: "linux", rootfs: { type: "layers", diff_ids: gzipBlobs.map((blob) => blob.diffId) }, config: { Cmd: ["x"] } }, null, 2));
    const kept = await writeDockerArchive(join(dir, "c.tar"), [{ config: bytes, layers: gzipBlobs, tags: ["bytes:1"] }]);
    expect(kept.images[0]?.configDigest).toBe(sha256(bytes));
    await expect(writeDockerArchive(join(dir, "d.tar"), [{ config: bytes, layers: gzipBlobs, tags: [] }], { sourceDateEpoch: 5 })).rejects.toThrow(
      /cannot be applied to an image config given as bytes/,
    );
    const epoch = await writeDockerArchive(join(dir, "e.tar"), [{ config: CONFIG, layers: gzipBlobs, tags: [] }], { sourceDateEpoch: 1_600_000_000 });
    const config = JSON.parse(run("tar", ["-xOf", join(dir, "e.tar"), `blobs/sha256/${epoch.images[0]?.configDigest.slice(7)}`])) as ImageConfig;
    expect(config.created).toBe("2020-09-13T12:26:40Z");
  });

  it("refuses clashing and malformed tags, missing or changed blobs, and a zstd layer that is not its diffId", async () => {
    const dir = tempDir();
    const file = join(dir, "x.tar");
    await expect(
      writeDockerArchive(file, [
        { config: CONFIG, layers: gzipBlobs, tags: ["app:1"] },
        { config: CONFIG, layers: gzipBlobs, tags: ["docker.io/library/app:1"] },
      ]),
    ).rejects.toThrow(/tag app:1 is given to two images of the archive \(1 and 2\)/);
    await expect(writeDockerArchive(file, [{ config: CONFIG, layers: gzipBlobs, tags: ["App:1"] }])).rejects.toMatchObject({ code: "INVALID_REFERENCE" });
    await expect(writeDockerArchive(file, [{ config: CONFIG, layers: gzipBlobs, tags: [`app@${gzipBlobs[0]?.digest}`] }])).rejects.toThrow(/cannot be a tag/);
    const gone = { ...(gzipBlobs[0] as LayerBlob), path: join(dir, "missing") };
    await expect(writeDockerArchive(file, [{ config: CONFIG, layers: [gone], tags: [] }])).rejects.toThrow(/layer blob .*missing is missing/);
    const resized = { ...(gzipBlobs[0] as LayerBlob), size: 1 };
    await expect(writeDockerArchive(file, [{ config: CONFIG, layers: [resized], tags: [] }])).rejects.toMatchObject({ code: "ERR_DIGEST_MISMATCH" });
    const wrong = { ...(zstdBlobs[0] as LayerBlob), diffId: zstdBlobs[1]?.diffId as string };
    await expect(writeDockerArchive(file, [{ config: CONFIG, layers: [wrong], tags: [] }])).rejects.toThrow(/decompresses to sha256:\w+, but its diffId is/);
    const bad = { config: Buffer.from(JSON.stringify({ architecture: "amd64", os: "linux", rootfs: { type: "layers", diff_ids: [] } })), layers: gzipBlobs, tags: [] };
    await expect(writeDockerArchive(file, [bad])).rejects.toThrow(/lists 0 diff ids that do not match the 3 layers/);
    await expect(writeDockerArchive(dir, [{ config: CONFIG, layers: gzipBlobs, tags: [] }])).rejects.toThrow(/it is a directory/);
    // Nothing half-written is left behind.
    expect(readdirSync(dir)).toEqual([]);
  });
});

describe("readImageArchive", () => {
  it("reads back what writeDockerArchive writes: tags, config bytes, verified layers that extract to the image", async () => {
    const file = join(tempDir(), "image.tar");
    const tmpDir = join(tempDir(), "not-yet", "load");
    const written = await writeDockerArchive(file, [
      { config: CONFIG, layers: mixed(), tags: ["app:1", "app:2"] },
      { config: { architecture: "amd64", os: "linux" }, layers: [], tags: [] },
    ]);
    const archive = await readImageArchive(file, { tmpDir });
    try {
      expect(archive.format).toBe("docker");
      expect(archive.images.map((image) => image.tags)).toEqual([["app:1", "app:2"], []]);
      const [image, empty] = archive.images;
      expect(image?.configDigest).toBe(written.images[0]?.configDigest);
      expect(sha256(image?.configBytes ?? "")).toBe(image?.configDigest);
      expect(image?.config.config?.Env).toEqual(CONFIG.config?.Env);
      expect(image?.layers.map(({ mediaType, digest, diffId, size }) => ({ mediaType, digest, diffId, size }))).toEqual([
        { mediaType: MEDIA_TYPES.ociLayerGzip, digest: gzipBlobs[0]?.digest, diffId: gzipBlobs[0]?.diffId, size: gzipBlobs[0]?.size },
        { mediaType: MEDIA_TYPES.ociLayer, digest: zstdBlobs[1]?.diffId, diffId: zstdBlobs[1]?.diffId, size: plainBlobs[1]?.size },
        { mediaType: MEDIA_TYPES.ociLayer, digest: plainBlobs[2]?.digest, diffId: plainBlobs[2]?.diffId, size: plainBlobs[2]?.size },
      ]);
      expect(empty?.layers).toEqual([]);
      for (const [i, layer] of (image?.layers ?? []).entries()) {
        const into = join(tempDir(), `layer${i}`);
        await extractLayer(layer.path, layer.mediaType, into, { digest: layer.digest, diffId: layer.diffId });
      }
    } finally {
      await archive.dispose();
    }
    // The temporary directories it made are gone again.
    expect(existsSync(join(tmpDir, ".."))).toBe(false);
  });

  it("reads docker 20.10's layout (<id>/layer.tar, shared layers as symlinks), gzipped, from a pipe, or unpacked", async () => {
    const work = tempDir();
    const layer = readFileSync(plainBlobs[0]?.path ?? "");
    const config = Buffer.from(JSON.stringify({ architecture: "amd64", os: "linux", rootfs: { type: "layers", diff_ids: [plainBlobs[0]?.diffId, plainBlobs[0]?.diffId] } }));
    const configHex = sha256(config).slice(7);
    const entries: RawEntry[] = [
      { name: "aaaa/", type: "directory" },
      { name: "aaaa/VERSION", content: "1.0" },
      { name: "aaaa/layer.tar", data: layer },
      { name: "bbbb/", type: "directory" },
      { name: "bbbb/layer.tar", type: "symlink", linkname: "../aaaa/layer.tar" },
      { name: `${configHex}.json`, data: config },
      { name: "manifest.json", content: JSON.stringify([{ Config: `${configHex}.json`, RepoTags: ["old:1"], Layers: ["aaaa/layer.tar", "bbbb/layer.tar"] }]) },
      { name: "repositories", content: JSON.stringify({ old: { "1": "bbbb" } }) },
    ];
    const file = join(work, "old.tar");
    await rawTar(file, entries);
    const check = async (source: string) => {
      const archive = await readImageArchive(source, { tmpDir: join(work, "tmp") });
      try {
        expect(archive.images).toHaveLength(1);
        expect(archive.images[0]?.tags).toEqual(["old:1"]);
        expect(archive.images[0]?.configDigest).toBe(`sha256:${configHex}`);
        expect(archive.images[0]?.layers.map((entry) => [entry.digest, entry.mediaType])).toEqual([
          [plainBlobs[0]?.digest, MEDIA_TYPES.ociLayer],
          [plainBlobs[0]?.digest, MEDIA_TYPES.ociLayer],
        ]);
      } finally {
        await archive.dispose();
      }
    };
    await check(file);
    writeFileSync(`${file}.gz`, gzipSync(readFileSync(file)));
    await check(`${file}.gz`);
    const fifo = join(work, "fifo");
    run("mkfifo", [fifo]);
    const feeding = pipeline(createReadStream(file), createWriteStream(fifo));
    await check(fifo);
    await feeding;
    const unpacked = join(work, "unpacked");
    mkdirSync(unpacked);
    run("tar", ["-xf", file, "-C", unpacked]);
    await check(unpacked);
  });

  it("reads OCI archives and layouts (writeOciTar's), with their tags", async () => {
    const file = join(tempDir(), "oci.tar");
    const written = await writeOciTar(file, { layers: zstdBlobs, config: CONFIG, tags: ["registry.example.com/app:1.2", "latest"] });
    const archive = await readImageArchive(file, { tmpDir: tempDir() });
    expect(archive.format).toBe("oci");
    expect(archive.images).toHaveLength(1);
    expect(archive.images[0]?.tags).toEqual(["registry.example.com/app:1.2"]);
    expect(archive.images[0]?.configDigest).toBe(written.configDigest);
    expect(archive.images[0]?.layers.map((layer) => [layer.mediaType, layer.digest, layer.diffId])).toEqual(
      zstdBlobs.map((blob) => [MEDIA_TYPES.ociLayerZstd, blob.digest, blob.diffId]),
    );
    await archive.dispose();
  });

  it("fails clearly on archives that are not archives, are cut short, or miss what manifest.json names", async () => {
    const work = tempDir();
    const tmpDir = join(work, "tmp");
    const junk = join(work, "junk.tar");
    writeFileSync(junk, "this is not a tar file at all ".repeat(40));
    await expect(readImageArchive(junk, { tmpDir })).rejects.toMatchObject({ code: "ERR_IMAGE_ARCHIVE", message: expect.stringMatching(/junk\.tar is not a readable archive/) as unknown });
    await expect(readImageArchive(join(work, "missing.tar"), { tmpDir })).rejects.toThrow(/image archive .*missing\.tar cannot be read/);

    const good = join(work, "good.tar");
    await writeDockerArchive(good, [{ config: CONFIG, layers: gzipBlobs, tags: ["app:1"] }]);
    const cut = join(work, "cut.tar");
    const whole = readFileSync(good);
    // Inside an entry (entries start at multiples of 512).
    writeFileSync(cut, whole.subarray(0, Math.floor(whole.length / 1024) * 512 + 100));
    await expect(readImageArchive(cut, { tmpDir })).rejects.toMatchObject({ code: "ERR_IMAGE_ARCHIVE" });

    const configBytes = Buffer.from(JSON.stringify({ architecture: "amd64", os: "linux", rootfs: { type: "layers", diff_ids: [plainBlobs[0]?.diffId] } }));
    const archive = async (manifest: unknown, extra: RawEntry[] = []) => {
      const file = join(tempDir(), "a.tar");
      await rawTar(file, [
        { name: "config.json", data: configBytes },
        { name: "l/layer.tar", data: readFileSync(plainBlobs[0]?.path ?? "") },
        ...extra,
        { name: "manifest.json", content: typeof manifest === "string" ? manifest : JSON.stringify(manifest) },
      ]);
      return readImageArchive(file, { tmpDir });
    };
    await expect(archive([{ Config: "config.json", RepoTags: null, Layers: ["l/layer.tar", "other/layer.tar"] }])).rejects.toThrow(/lists 2 layers, but its config has 1 diff ids/);
    await expect(archive([{ Config: "config.json", RepoTags: null, Layers: ["nope/layer.tar"] }])).rejects.toThrow(
      /manifest\.json image 1 names layer "nope\/layer\.tar", which the archive does not hold/,
    );
    await expect(archive([{ Config: "gone.json", Layers: ["l/layer.tar"] }])).rejects.toThrow(/names config "gone\.json", which the archive does not hold/);
    await expect(archive("{not json")).rejects.toThrow(/manifest\.json is not valid JSON/);
    await expect(archive([{ Config: 3, Layers: [] }])).rejects.toThrow(/is not a docker-save manifest/);
    const ok = await archive([{ Config: "config.json", Layers: ["./l//layer.tar"] }]);
    expect(ok.images[0]?.tags).toEqual([]);
    await ok.dispose();

    const legacy = join(work, "legacy.tar");
    await rawTar(legacy, [{ name: "repositories", content: "{}" }]);
    await expect(readImageArchive(legacy, { tmpDir })).rejects.toThrow(/an archive from docker before 1\.10/);
    const neither = join(work, "neither.tar");
    await rawTar(neither, [{ name: "hello", content: "x" }]);
    await expect(readImageArchive(neither, { tmpDir })).rejects.toThrow(/neither a docker-save archive \(no manifest\.json\) nor an OCI archive/);
    // Every failure cleaned up after itself.
    expect(existsSync(tmpDir) ? readdirSync(tmpDir) : []).toEqual([]);
  });

  it("refuses layers that are not what the config says and names that leave the archive", async () => {
    const work = tempDir();
    const tmpDir = join(work, "tmp");
    const configBytes = Buffer.from(JSON.stringify({ architecture: "amd64", os: "linux", rootfs: { type: "layers", diff_ids: [plainBlobs[0]?.diffId] } }));
    const make = async (entries: RawEntry[], layers = ["l/layer.tar"]) => {
      const file = join(tempDir(), "a.tar");
      await rawTar(file, [{ name: "config.json", data: configBytes }, ...entries, { name: "manifest.json", content: JSON.stringify([{ Config: "config.json", Layers: layers }]) }]);
      return readImageArchive(file, { tmpDir });
    };
    // Another layer than the config's: the diffId check catches it, whatever its compression.
    await expect(make([{ name: "l/layer.tar", data: readFileSync(gzipBlobs[1]?.path ?? "") }])).rejects.toMatchObject({
      code: "ERR_DIGEST_MISMATCH",
      message: expect.stringMatching(/layer 1 \(l\/layer\.tar\) decompresses to sha256:\w+, but the config's diff id is/) as unknown,
    });
    // A blob whose name says another digest.
    const named = `blobs/sha256/${"0".repeat(64)}`;
    await expect(make([{ name: named, data: readFileSync(plainBlobs[0]?.path ?? "") }], [named])).rejects.toThrow(/not the one its name says/);
    // A corrupt gzip layer.
    const gz = readFileSync(gzipBlobs[0]?.path ?? "");
    await expect(make([{ name: "l/layer.tar", data: Buffer.concat([gz.subarray(0, 100), Buffer.alloc(200, 7)]) }])).rejects.toThrow(/cannot be read as gzip/);

    const outside = join(work, "outside");
    mkdirSync(outside);
    await expect(make([{ name: "../outside/planted", content: "x" }])).rejects.toThrow(/refusing archive entry "\.\.\/outside\/planted": it leaves the archive/);
    await expect(make([{ name: "/abs/planted", content: "x" }])).rejects.toThrow(/refusing archive entry "\/abs\/planted"/);
    expect(readdirSync(outside)).toEqual([]);
    await expect(make([], ["../../../../etc/passwd"])).rejects.toThrow(/"\.\.\/\.\.\/\.\.\/\.\.\/etc\/passwd" leaves the archive/);
    await expect(make([{ name: "l/layer.tar", type: "symlink", linkname: "../../../../etc/passwd" }])).rejects.toThrow(/is a link that leaves the archive/);
    await expect(make([{ name: "l", type: "symlink", linkname: "/etc" }], ["l/passwd"])).rejects.toThrow(/is a link that leaves the archive/);
    await expect(make([{ name: "l/layer.tar", type: "symlink", linkname: "layer.tar" }])).rejects.toThrow(/is a loop of links/);
    expect(existsSync(tmpDir) ? readdirSync(tmpDir) : []).toEqual([]);
  });
});

describe("docker archive from a pipe", () => {
  it("streams into a child process", async () => {
    const file = join(tempDir(), "copy.tar");
    const child = spawn("sh", ["-c", `cat > ${file}`], { stdio: ["pipe", "ignore", "inherit"] });
    const exited = new Promise((resolve) => child.on("exit", resolve));
    await writeDockerArchive(child.stdin, [{ config: CONFIG, layers: gzipBlobs, tags: ["app:1"] }]);
    expect(await exited).toBe(0);
    const direct = join(tempDir(), "direct.tar");
    await writeDockerArchive(direct, [{ config: CONFIG, layers: gzipBlobs, tags: ["app:1"] }]);
    expect(readFileSync(file)).toEqual(readFileSync(direct));
  });
});
