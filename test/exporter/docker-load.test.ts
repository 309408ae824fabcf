/**
 * External validator: Debian's dockerd 20.10 loads what writeDockerArchive writes, runs it,
 * and what it saves reads back with readImageArchive.
 */
import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  extractLayer,
  MEDIA_TYPES,
  readImageArchive,
  readOciLayout,
  writeDockerArchive,
  writeLayerBlob,
  type ImageConfigInput,
  type LayerBlob,
  type OciLayoutImage,
} from "../../src/exporter/index.ts";
import { startDocker, type Docker } from "./dockerd.ts";
import { run, setAllMtimes, tempDir, whiteout } from "./helpers.ts";
import { treeContents } from "./layers.ts";

const ROOT = resolve(import.meta.dirname, "../..");
const ARCH = spawnSync("dpkg", ["--print-architecture"], { encoding: "utf8" }).stdout.trim() || "amd64";
const FIXTURE = join(ROOT, "fixtures/images", `busybox-${ARCH}`);
/** Names this suite gives images, removed again at the end (the daemon may be a shared one). */
const TAGS = ["tsbuild-exporter-test/app:1", "localhost:5000/tsbuild-exporter-test/app:2", "tsbuild-exporter-test/base:1"];

let docker: Docker;
let base: OciLayoutImage;
let ours: LayerBlob[] = [];
let loadedIds: string[] = [];

beforeAll(async () => {
  if (!existsSync(join(FIXTURE, "index.json"))) {
    const made = spawnSync(join(ROOT, "fixtures/make-base-images.sh"), [ARCH], { cwd: ROOT, encoding: "utf8" });
    if (made.status !== 0) throw new Error(`fixtures/make-base-images.sh ${ARCH} failed: ${made.stderr || made.stdout}`);
  }
  docker = await startDocker();
  base = await readOciLayout(FIXTURE, "latest");
  const work = tempDir();
  // A layer of ours, zstd (docker 20.10 cannot read zstd: the archive must hold it decompressed):
  // a file, a directory, and a whiteout of the base image's /etc/group.
  const top = join(work, "top");
  mkdirSync(join(top, "etc"), { recursive: true });
  mkdirSync(join(top, "srv/data"), { recursive: true });
  writeFileSync(join(top, "file"), "hello from tsbuild\n");
  writeFileSync(join(top, "srv/data/note"), "kept\n");
  whiteout(join(top, "etc/group"));
  setAllMtimes(top, 1_700_000_000);
  ours = [await writeLayerBlob({ dir: top, opaqueDirs: [] }, join(work, "blobs"), { compression: "zstd" })];
}, 600_000);

afterAll(async () => {
  if (!docker) return;
  try {
    for (const name of [...TAGS, ...loadedIds]) {
      try {
        docker.run(["rmi", "-f", name]);
      } catch {
        // not there
      }
    }
  } finally {
    await docker.stop();
  }
}, 120_000);

function appConfig(): ImageConfigInput {
  const config = structuredClone(base.config) as ImageConfigInput;
  delete config.rootfs;
  config.config = {
    ...config.config,
    Env: ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "GREETING=hi there"],
    Cmd: ["cat", "/file"],
    WorkingDir: "/srv",
    Labels: { "org.example.suite": "docker-load" },
  };
  config.history = [...(config.history ?? []), { created: "2024-01-02T03:04:05Z", created_by: "COPY file /" }];
  return config;
}

describe("docker load", () => {
  it("loads our archive of the busybox image plus a zstd layer of ours, and runs it", async () => {
    const file = join(tempDir(), "app.tar");
    const written = await writeDockerArchive(file, [
      { config: appConfig(), layers: [...base.layers, ...ours], tags: [TAGS[0] as string, TAGS[1] as string] },
      { config: base.configBytes, layers: base.layers, tags: [TAGS[2] as string] },
      { config: { ...appConfig(), config: { Cmd: ["echo", "untagged"] } }, layers: [...base.layers, ...ours], tags: [] },
    ]);
    loadedIds = written.images.map((image) => image.configDigest);
    const output = docker.run(["load", "-i", file]);
    expect(output).toContain(`Loaded image: ${TAGS[0]}`);
    expect(output).toContain(`Loaded image: ${TAGS[1]}`);
    expect(output).toContain(`Loaded image: ${TAGS[2]}`);
    expect(output).toContain(`Loaded image ID: ${written.images[2]?.configDigest}`);

    const image = TAGS[0] as string;
    expect(docker.run(["run", "--rm", "--network", "none", image, "cat", "/file"])).toBe("hello from tsbuild\n");
    // The default command, the environment, the working directory, and the whiteout applied.
    expect(docker.run(["run", "--rm", "--network", "none", image])).toBe("hello from tsbuild\n");
    expect(docker.run(["run", "--rm", "--network", "none", image, "sh", "-c", 'echo "$GREETING"; pwd; cat data/note; test -e /etc/group || echo gone'])).toBe(
      "hi there\n/srv\nkept\ngone\n",
    );
    expect(docker.run(["run", "--rm", "--network", "none", TAGS[2] as string, "cat", "/etc/group"])).toContain("root:x:0:");

    const [inspect] = JSON.parse(docker.run(["image", "inspect", image])) as {
      Id: string;
      RepoTags: string[];
      Config: { Env: string[]; Cmd: string[]; WorkingDir: string; Labels: Record<string, string> };
      RootFS: { Layers: string[] };
    }[];
    expect(inspect?.Id).toBe(written.images[0]?.configDigest);
    expect(inspect?.RepoTags.sort()).toEqual([TAGS[0], TAGS[1]].sort());
    expect(inspect?.Config).toMatchObject({
      Env: ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "GREETING=hi there"],
      Cmd: ["cat", "/file"],
      WorkingDir: "/srv",
      Labels: { "org.example.suite": "docker-load" },
    });
    expect(inspect?.RootFS.Layers).toEqual([...base.layers, ...ours].map((layer) => layer.diffId));
    // The base image config, given as bytes, keeps its id.
    const [baseInspect] = JSON.parse(docker.run(["image", "inspect", TAGS[2] as string])) as { Id: string }[];
    expect(baseInspect?.Id).toBe(base.configDigest);
  });

  it("saves archives (docker 20.10's <id>/layer.tar layout) that readImageArchive reads, verifies and extracts", async () => {
    const file = join(tempDir(), "saved.tar");
    docker.run(["save", "-o", file, TAGS[0] as string, TAGS[2] as string]);
    expect(run("tar", ["-tf", file])).toMatch(/^[0-9a-f]{64}\/layer\.tar$/m);
    const archive = await readImageArchive(file, { tmpDir: tempDir() });
    try {
      expect(archive.format).toBe("docker");
      const app = archive.images.find((image) => image.tags.includes(TAGS[0] as string));
      expect(app?.configDigest).toBe(loadedIds[0]);
      expect(app?.config.config?.Cmd).toEqual(["cat", "/file"]);
      expect(app?.layers.map((layer) => layer.diffId)).toEqual([...base.layers, ...ours].map((layer) => layer.diffId));
      expect(new Set(app?.layers.map((layer) => layer.mediaType))).toEqual(new Set([MEDIA_TYPES.ociLayer]));
      const top = app?.layers.at(-1);
      if (!top) throw new Error("no layer");
      const into = join(tempDir(), "top");
      await extractLayer(top.path, top.mediaType, into, { digest: top.digest, diffId: top.diffId });
      expect(treeContents(into)).toMatchObject({ file: "hello from tsbuild\n", "srv/data/note": "kept\n", "etc/group": "special" });
      const baseImage = archive.images.find((image) => image.tags.includes(TAGS[2] as string));
      expect(baseImage?.configDigest).toBe(base.configDigest);

      // What docker saved, written again by us, loads again under a new name.
      const again = join(tempDir(), "again.tar");
      await writeDockerArchive(again, [{ config: app?.configBytes ?? Buffer.alloc(0), layers: app?.layers ?? [], tags: ["tsbuild-exporter-test/base:1"] }]);
      expect(docker.run(["load", "-i", again])).toContain("Loaded image: tsbuild-exporter-test/base:1");
      expect(docker.run(["run", "--rm", "--network", "none", "tsbuild-exporter-test/base:1"])).toBe("hello from tsbuild\n");
    } finally {
      await archive.dispose();
    }
  });
});
