import { spawn, spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startRegistry, type RegistryServer } from "../registry/registry-server.ts";
import { bin, project, requireBuiltCli, temp, tsbuild, busyboxLayout, requireBusyboxImage } from "./helpers.ts";

const busybox = busyboxLayout;
let registry: RegistryServer;
let base: string;

function skopeo(args: string[]) {
  const result = spawnSync("skopeo", args, { encoding: "utf8" });
  if (result.error) throw new Error(`skopeo is missing (apt-get install skopeo): ${result.error.message}`);
  return { code: result.status, stdout: result.stdout, stderr: result.stderr };
}

function ok(result: { code: number | null; stdout: string; stderr: string }) {
  expect(result.stderr + result.stdout).not.toMatch(/internal error|\s{4}at /);
  if (result.code !== 0) throw new Error(`exit ${result.code}: ${result.stderr}`);
  return result;
}

function sha256File(path: string): string {
  return createHash("sha256").update(readFileSync(path)).digest("hex");
}

function allBlobsVerify(root: string): void {
  const dir = join(root, "content", "blobs", "sha256");
  for (const name of readdirSync(dir)) expect(sha256File(join(dir, name))).toBe(name);
}

beforeAll(async () => {
  requireBuiltCli();
  requireBusyboxImage();
  registry = await startRegistry();
  base = `${registry.host}/library/busybox:latest`;
  const copied = skopeo(["copy", "--quiet", "--dest-tls-verify=false", `oci:${busybox}:latest`, `docker://${base}`]);
  if (copied.code !== 0) throw new Error(`skopeo copy of the busybox fixture failed: ${copied.stderr}`);
}, 120_000);

afterAll(async () => {
  await registry?.stop();
});

describe("images from and to a registry", () => {
  it("builds FROM a registry image, stores and pushes the result; skopeo reads it and a fresh root pulls the same digest", () => {
    const root = temp("root");
    const dir = project({ Dockerfile: `FROM ${base}\nRUN echo hello > /hello.txt\nCOPY Dockerfile /df\nCMD ["cat", "/hello.txt"]\n` });
    const name = `${registry.host}/app:1`;
    const built = ok(tsbuild(["build", "--progress", "plain", "-t", name, "--push", dir], { root }));
    expect(built.stderr).toMatch(/pulling .*busybox:latest/);
    const pushed = /pushed \S+@(sha256:[0-9a-f]{64})/.exec(built.stderr)?.[1];
    expect(pushed).toBeDefined();
    const inspected = JSON.parse(ok(skopeo(["inspect", "--tls-verify=false", `docker://${name}`])).stdout) as { Digest: string; Layers: string[] };
    expect(inspected.Digest).toBe(pushed);
    expect(inspected.Layers).toHaveLength(3);

    const images = ok(tsbuild(["images", "--format", "json"], { root })).stdout.trim().split("\n").map((line) => JSON.parse(line) as { Repository: string; Tag: string });
    expect(images.map((row) => `${row.Repository}:${row.Tag}`).sort()).toEqual([`${registry.host}/app:1`, `${registry.host}/library/busybox:latest`]);

    const other = temp("root");
    ok(tsbuild(["pull", name], { root: other }));
    const rows = ok(tsbuild(["images", "--digests", "--format", "json"], { root: other })).stdout;
    expect(rows).toContain(pushed);
    allBlobsVerify(other);

    // The same build again: every step cached, the registry already has every blob.
    const again = ok(tsbuild(["build", "--progress", "plain", "-t", name, "--push", dir], { root }));
    expect(again.stderr).not.toMatch(/pulling/);
    expect(again.stderr.match(/CACHED/g)?.length).toBe(2);
  }, 120_000);

  it("uses a stored image without the network, and --pull asks the registry", () => {
    const root = temp("root");
    ok(tsbuild(["pull", base], { root }));
    // Port 1 on loopback: nothing listens, so any network use would fail the build.
    ok(tsbuild(["tag", base, "127.0.0.1:1/offline/busybox:1"], { root }));
    const dir = project({ Dockerfile: "FROM 127.0.0.1:1/offline/busybox:1\nRUN test -x /bin/sh\n" });
    const built = ok(tsbuild(["build", "--progress", "plain", "-t", "offline-app", dir], { root }));
    expect(built.stderr).not.toMatch(/pulling/);
    const pulled = tsbuild(["build", "--progress", "plain", "--pull", dir], { root });
    expect(pulled.code).toBe(1);
    expect(pulled.stderr).toMatch(/127\.0\.0\.1:1/);
    expect(pulled.stderr).not.toMatch(/\s{4}at /);
  }, 60_000);

  it("pulls through a mirror (--registry-mirror REGISTRY=URL and a registries file)", () => {
    // The mirrored registry is a closed loopback port: only the mirror can serve the pull.
    const dir = project({ Dockerfile: "FROM 127.0.0.1:1/library/busybox\nRUN test -x /bin/busybox\n" });
    ok(tsbuild(["--registry-mirror", `127.0.0.1:1=http://${registry.host}`, "build", "--progress", "plain", dir], { root: temp("root") }));
    const config = join(temp("config"), "registries.json");
    writeFileSync(config, JSON.stringify({ mirrors: { "127.0.0.1:1": [`http://${registry.host}`] } }));
    ok(tsbuild(["build", "--progress", "plain", dir], { root: temp("root"), env: { TSBUILD_REGISTRY_CONFIG: config } }));
    const broken = join(temp("config"), "registries.json");
    writeFileSync(broken, "{ not json");
    const refused = tsbuild(["--registry-config", broken, "build", dir], { root: temp("root") });
    expect(refused.code).toBe(1);
    expect(refused.stderr).toContain(broken);
  }, 60_000);

  it("takes an image as a named context (--build-context NAME=docker-image://REF)", () => {
    const out = temp("out");
    const dir = project({ Dockerfile: "FROM base\nRUN echo from-named > /named\n" });
    ok(tsbuild(["build", "--build-context", `base=docker-image://${base}`, "-o", `type=local,dest=${out}`, dir], { root: temp("root") }));
    expect(readFileSync(join(out, "named"), "utf8")).toBe("from-named\n");
    const bad = tsbuild(["build", "--build-context", "base=docker-image://", dir], { root: temp("root") });
    expect(bad.code).toBe(1);
    expect(bad.stderr).toMatch(/the image reference is missing/);
  }, 60_000);

  it("stops a pull on Ctrl-C with exit 130, no stack trace, nothing left in tmp/", async () => {
    const root = temp("root");
    // Nothing listens on loopback port 1: the pull keeps retrying until it is interrupted.
    const child = spawn(process.execPath, [bin, "--root", root, "pull", "127.0.0.1:1/never/there:1"], { stdio: ["ignore", "pipe", "pipe"] });
    let stderr = "";
    child.stderr.on("data", (chunk: Buffer) => (stderr += chunk.toString()));
    await new Promise<void>((resolve) => child.stderr.once("data", () => resolve()));
    child.kill("SIGINT");
    const code = await new Promise<number | null>((resolve) => child.once("exit", (status) => resolve(status)));
    expect(code).toBe(130);
    expect(stderr).toMatch(/^interrupted$/m);
    expect(stderr).not.toMatch(/internal error|\s{4}at /);
    expect(readdirSync(join(root, "tmp"))).toEqual([]);
  }, 30_000);

  it("pins FROM by digest and COPY --from an image", () => {
    const root = temp("root");
    const digest = JSON.parse(ok(skopeo(["inspect", "--tls-verify=false", `docker://${base}`])).stdout).Digest as string;
    const dir = project({ Dockerfile: `FROM scratch\nCOPY --from=${registry.host}/library/busybox@${digest} /bin/busybox /busybox\n` });
    const out = temp("out");
    ok(tsbuild(["build", "-o", `type=local,dest=${out}`, dir], { root }));
    expect(readFileSync(join(out, "busybox")).length).toBeGreaterThan(100_000);
  }, 60_000);

  it("says clearly when an image does not exist or a name is malformed", () => {
    const root = temp("root");
    const missing = tsbuild(["build", project({ Dockerfile: `FROM ${registry.host}/no/such-image:1\n` })], { root });
    expect(missing.code).toBe(1);
    expect(missing.stderr).toMatch(/no\/such-image:1/);
    expect(missing.stderr).toMatch(/not found/i);
    expect(missing.stderr).not.toMatch(/\s{4}at /);
    const malformed = tsbuild(["pull", "Not/Valid:tag"], { root });
    expect(malformed.code).toBe(1);
    expect(malformed.stderr).toMatch(/Not\/Valid/);
    const noImage = tsbuild(["push", "never-built:1"], { root });
    expect(noImage.code).toBe(1);
    expect(noImage.stderr).toMatch(/no image "never-built:1"/);
  }, 60_000);
});

describe("the local image store", () => {
  it("tags, inspects, shows history, removes names; prune keeps what a name reaches", () => {
    const root = temp("root");
    const dir = project({ Dockerfile: `FROM ${base}\nRUN echo one > /one\nLABEL a=b\n` });
    ok(tsbuild(["build", "-t", "first:1", "--label", "org.example.team=core", dir], { root }));
    ok(tsbuild(["tag", "first:1", "second"], { root }));
    const [image] = JSON.parse(ok(tsbuild(["inspect", "second"], { root })).stdout) as [{ Id: string; RepoTags: string[]; Config: { Labels: Record<string, string> } }];
    expect(image.RepoTags.sort()).toEqual(["first:1", "second:latest"]);
    expect(image.Config.Labels).toEqual({ a: "b", "org.example.team": "core" });
    const id = image.Id.slice(7, 19);
    expect(ok(tsbuild(["images", "-q"], { root })).stdout).toContain(id);

    const history = ok(tsbuild(["history", "--format", "json", "first:1"], { root })).stdout.trim().split("\n").map((line) => JSON.parse(line) as { CreatedBy: string; EmptyLayer: boolean });
    expect(history[0]?.CreatedBy).toMatch(/LABEL a=b/);
    expect(history[0]?.EmptyLayer).toBe(true);
    expect(history[1]?.CreatedBy).toMatch(/echo one/);

    // Removing by id needs --force while it has two names.
    expect(tsbuild(["rmi", id], { root }).code).toBe(1);
    ok(tsbuild(["prune", "--all"], { root }));
    allBlobsVerify(root);
    const out = temp("out");
    ok(tsbuild(["save", "second", "-o", join(out, "img.tar")], { root }));
    // An OCI archive keeps a config's bytes as stored, so the image keeps its id: a config
    // written with other spacing than ours (as another tool may) loads and saves unchanged.
    const unpacked = temp("unpacked");
    expect(spawnSync("tar", ["-xf", join(out, "img.tar"), "-C", unpacked]).status).toBe(0);
    const [entry] = JSON.parse(readFileSync(join(unpacked, "manifest.json"), "utf8")) as [{ Config: string; RepoTags: string[] }];
    const spaced = Buffer.from(JSON.stringify(JSON.parse(readFileSync(join(unpacked, entry.Config), "utf8")), null, 2));
    const spacedId = createHash("sha256").update(spaced).digest("hex");
    rmSync(join(unpacked, entry.Config));
    writeFileSync(join(unpacked, `${spacedId}.json`), spaced);
    writeFileSync(join(unpacked, "manifest.json"), JSON.stringify([{ ...entry, Config: `${spacedId}.json`, RepoTags: ["spaced:1"] }]));
    expect(spawnSync("tar", ["-cf", join(out, "spaced.tar"), "-C", unpacked, "."]).status).toBe(0);
    ok(tsbuild(["load", "-i", join(out, "spaced.tar")], { root }));
    ok(tsbuild(["save", "--format", "oci", "spaced:1", "-o", join(out, "spaced-oci.tar")], { root }));
    const fromTar = (name: string) => JSON.parse(spawnSync("tar", ["-xOf", join(out, "spaced-oci.tar"), name], { encoding: "utf8" }).stdout);
    const ociIndex = fromTar("index.json") as { manifests: { digest: string }[] };
    const ociManifest = fromTar(`blobs/sha256/${ociIndex.manifests[0]?.digest.slice(7)}`) as { config: { digest: string } };
    expect(ociManifest.config.digest).toBe(`sha256:${spacedId}`);
    ok(tsbuild(["rmi", "spaced:1"], { root }));
    const removed = ok(tsbuild(["rmi", "--force", id], { root })).stdout;
    expect(removed).toMatch(/Untagged: first:1\nUntagged: second:latest|Untagged: second:latest\nUntagged: first:1/);
    // What only those names reached is deleted at once (the config, so the image id, among it); busybox's blobs stay.
    expect(removed).toContain(`Deleted: ${image.Id}`);
    const busyboxBlobs = readdirSync(join(root, "content", "blobs", "sha256"));
    expect(busyboxBlobs.length).toBeGreaterThan(0);
    expect(busyboxBlobs).not.toContain(image.Id.slice(7));
    ok(tsbuild(["rmi", `${registry.host}/library/busybox`], { root }));
    expect(ok(tsbuild(["images", "-q"], { root })).stdout).toBe("");
    expect(readdirSync(join(root, "content", "blobs", "sha256"))).toEqual([]);

    // The saved archive loads back with the same id.
    const loaded = ok(tsbuild(["load", "-i", join(out, "img.tar")], { root }));
    expect(loaded.stdout).toMatch(/Loaded image: second:latest/);
    expect(JSON.parse(ok(tsbuild(["inspect", "second"], { root })).stdout)[0].Id).toBe(image.Id);
  }, 120_000);

  it("gives the same image digest for two clean builds with SOURCE_DATE_EPOCH", () => {
    const dir = project({ Dockerfile: `FROM ${base}\nRUN echo same > /same && mkdir /d && touch /d/f\nCOPY Dockerfile /\n` });
    const digests = [1, 2].map(() => {
      const root = temp("root");
      const out = join(temp("out"), "image.tar");
      ok(tsbuild(["build", "-o", `type=oci,dest=${out}`, dir], { root, env: { SOURCE_DATE_EPOCH: "1700000000" } }));
      return sha256File(out);
    });
    expect(digests[0]).toBe(digests[1]);
  }, 120_000);

  it("writes zstd layers when asked, and reuses a layer's blob across exports", () => {
    const root = temp("root");
    const dir = project({ Dockerfile: `FROM ${base}\nRUN echo z > /z\n` });
    // Without force-compression the base layer stays as its registry served it (gzip).
    const mixed = temp("layout");
    ok(tsbuild(["build", "-o", `type=oci-layout,dest=${mixed},compression=zstd`, dir], { root }));
    const mixedIndex = JSON.parse(readFileSync(join(mixed, "index.json"), "utf8")) as { manifests: { digest: string }[] };
    const mixedManifest = JSON.parse(readFileSync(join(mixed, "blobs", "sha256", mixedIndex.manifests[0]?.digest.slice(7) ?? ""), "utf8")) as { layers: { mediaType: string }[] };
    expect(mixedManifest.layers.map((layer) => layer.mediaType)).toEqual(["application/vnd.oci.image.layer.v1.tar+gzip", "application/vnd.oci.image.layer.v1.tar+zstd"]);
    // force-compression recompresses it.
    const layout = temp("layout");
    ok(tsbuild(["build", "-o", `type=oci-layout,dest=${layout},compression=zstd,force-compression=true`, "-t", "z", dir], { root }));
    const index = JSON.parse(readFileSync(join(layout, "index.json"), "utf8")) as { manifests: { digest: string }[] };
    const manifest = JSON.parse(readFileSync(join(layout, "blobs", "sha256", index.manifests[0]?.digest.slice(7) ?? ""), "utf8")) as { layers: { mediaType: string }[] };
    expect(manifest.layers.map((layer) => layer.mediaType)).toEqual(["application/vnd.oci.image.layer.v1.tar+zstd", "application/vnd.oci.image.layer.v1.tar+zstd"]);
    const inspected = skopeo(["inspect", `oci:${layout}:z`]);
    expect(inspected.code).toBe(0);
    // The new layer was compressed once: both exports list the same zstd blob.
    const digestsOf = (dir: string) => {
      const entry = (JSON.parse(readFileSync(join(dir, "index.json"), "utf8")) as { manifests: { digest: string }[] }).manifests[0]?.digest ?? "";
      return (JSON.parse(readFileSync(join(dir, "blobs", "sha256", entry.slice(7)), "utf8")) as { layers: { digest: string }[] }).layers.map((layer) => layer.digest);
    };
    expect(digestsOf(layout)[1]).toBe(digestsOf(mixed)[1]);
  }, 120_000);
});

describe("registry credentials", () => {
  let secured: RegistryServer;
  beforeAll(async () => {
    secured = await startRegistry({ htpasswd: { alice: "s3cret-pass" } });
  }, 60_000);
  afterAll(async () => {
    await secured?.stop();
  });

  it("logs in with --password-stdin, pushes, and refuses a wrong password without printing it", () => {
    const root = temp("root");
    const config = temp("docker-config");
    const env = { DOCKER_CONFIG: config };
    const wrong = tsbuild(["login", secured.host, "-u", "alice", "--password-stdin"], { root, input: "wrong-guess\n", env });
    expect(wrong.code).toBe(1);
    expect(wrong.stderr).not.toContain("wrong-guess");
    expect(wrong.stderr).toMatch(/unauthori[sz]ed|credentials|denied/i);
    ok(tsbuild(["login", secured.host, "-u", "alice", "--password-stdin"], { root, input: "s3cret-pass\n", env }));
    expect(JSON.parse(readFileSync(join(config, "config.json"), "utf8")).auths[secured.host]).toBeDefined();

    const dir = project({ Dockerfile: `FROM ${base}\nRUN echo secure > /s\n` });
    const name = `${secured.host}/team/app:2`;
    const built = ok(tsbuild(["build", "--progress", "plain", "-t", name, "--push", dir], { root, env }));
    expect(built.stderr).not.toContain("s3cret-pass");
    ok(tsbuild(["logout", secured.host], { root, env }));
    const denied = tsbuild(["push", name], { root, env });
    expect(denied.code).toBe(1);
    expect(denied.stderr).toMatch(/tsbuild login/);
  }, 120_000);
});

