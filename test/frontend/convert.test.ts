import { describe, expect, it } from "vitest";
import { convertDockerfile, emptyImageConfig, type BuildDefinition, type ImageConfig, type ResolvedImage } from "../../src/frontend/index.ts";
import type { CopyAction, ExecOp, FileOp, Vertex } from "../../src/llb/index.ts";
import { DockerfileSyntaxError, parseDockerfile } from "../../src/parser/index.ts";
import { UserError } from "../../src/user-error.ts";

const amd64 = { os: "linux", architecture: "amd64" };
const arm64 = { os: "linux", architecture: "arm64" };

/** Images a test can name in FROM: a source vertex plus a config. */
function imageResolver(images: Record<string, Partial<ImageConfig["config"]>> = {}) {
  return async (reference: { name: string; isNamedContext: boolean; platform: typeof amd64 }, graph: BuildDefinition["graph"]): Promise<ResolvedImage> => {
    const config = images[reference.name];
    if (!config) throw new UserError(`image ${reference.name} is not available`, "use a named context");
    const image = emptyImageConfig(reference.platform);
    image.config = { ...image.config, ...config };
    image.history = [{ created_by: "base layer" }];
    const root = graph.add({ type: "source", identifier: `docker-image://${reference.name}` }, [], { name: `FROM ${reference.name}` });
    return { root, config: image, layerCount: 1 };
  };
}

async function convert(text: string, options: { buildArgs?: Record<string, string>; target?: string; images?: Record<string, Partial<ImageConfig["config"]>>; platform?: typeof amd64 } = {}) {
  const dockerfile = parseDockerfile(text);
  return convertDockerfile({
    dockerfile,
    sourceText: text,
    buildArgs: new Map(Object.entries(options.buildArgs ?? {})),
    target: options.target,
    targetPlatform: options.platform ?? amd64,
    buildPlatform: amd64,
    namedContexts: new Set(),
    resolveImage: imageResolver(options.images),
    created: "2026-01-01T00:00:00Z",
  });
}

function rootVertex(build: BuildDefinition): Vertex {
  const vertex = build.root ? build.graph.vertices.get(build.root) : undefined;
  if (!vertex) throw new Error("no root vertex");
  return vertex;
}

async function conversionError(text: string, options: Parameters<typeof convert>[1] = {}): Promise<Error & { hint?: string }> {
  try {
    await convert(text, options);
  } catch (error) {
    return error as Error;
  }
  throw new Error("expected an error");
}

describe("ARG scoping", () => {
  it("uses global ARGs in FROM and build args over defaults", async () => {
    const build = await convert("ARG BASE=base-a\nFROM ${BASE}\n", { images: { "base-a": {}, "base-b": {} } });
    expect(build.graph.vertices.get(build.root as string)?.op).toEqual({ type: "source", identifier: "docker-image://base-a" });
    const overridden = await convert("ARG BASE=base-a\nFROM ${BASE}\n", { buildArgs: { BASE: "base-b" }, images: { "base-a": {}, "base-b": {} } });
    expect(overridden.graph.vertices.get(overridden.root as string)?.op).toMatchObject({ identifier: "docker-image://base-b" });
  });

  it("makes a global ARG visible in a stage only after a bare re-declaration", async () => {
    const build = await convert("ARG V=1\nFROM scratch\nENV BEFORE=${V}\nARG V\nENV AFTER=${V}\n");
    expect(build.image.config.Env).toContain("BEFORE=");
    expect(build.image.config.Env).toContain("AFTER=1");
  });

  it("lets ENV win over an ARG of the same name", async () => {
    const build = await convert("FROM scratch\nARG A=from-arg\nENV A=from-env\nENV B=${A}\n", { buildArgs: { A: "given" } });
    expect(build.image.config.Env).toContain("B=from-env");
  });

  it("gives automatic platform args to FROM and, when declared, to a stage", async () => {
    const build = await convert("FROM --platform=$BUILDPLATFORM scratch\nARG TARGETARCH\nARG BUILDOS\nENV T=$TARGETARCH B=$BUILDOS U=$TARGETOS\n", { platform: arm64 });
    expect(build.image.config.Env).toEqual(expect.arrayContaining(["T=arm64", "B=linux", "U="]));
    expect(build.platform).toEqual(amd64);
  });

  it("warns about build args nothing used", async () => {
    const build = await convert("FROM scratch\nARG USED\n", { buildArgs: { USED: "1", UNUSED: "2", HTTP_PROXY: "http://proxy" } });
    expect(build.warnings).toContain("one or more build args were not consumed: UNUSED");
  });

  it("passes stage ARGs and proxy build args to RUN, ENV first", async () => {
    const build = await convert("FROM scratch\nENV A=env\nARG A=arg B=b\nRUN true\n", { buildArgs: { http_proxy: "http://p:3128" } });
    const exec = rootVertex(build).op as ExecOp;
    expect(exec.env).toEqual([expect.stringMatching(/^PATH=/), "A=env", "B=b", "http_proxy=http://p:3128"]);
  });
});

describe("image config", () => {
  it("expands ENV with the environment before the line", async () => {
    const build = await convert("FROM scratch\nENV abc=hello\nENV abc=bye def=$abc\n");
    expect(build.image.config.Env).toEqual(expect.arrayContaining(["abc=bye", "def=hello"]));
  });

  it("accumulates and cleans WORKDIR and creates it", async () => {
    const build = await convert("FROM scratch\nWORKDIR /srv\nWORKDIR app\nWORKDIR ./sub/../final\n");
    expect(build.image.config.WorkingDir).toBe("/srv/app/final");
    const op = rootVertex(build).op as FileOp;
    expect(op.actions).toEqual([{ action: "mkdir", path: "/srv/app/final", mode: 0o755, makeParents: true }]);
  });

  it("resets an inherited CMD when the stage sets ENTRYPOINT, not one set in the stage", async () => {
    const inherited = await convert("FROM base\nENTRYPOINT [\"/app\"]\n", { images: { base: { Cmd: ["serve"] } } });
    expect(inherited.image.config.Cmd).toBeNull();
    const local = await convert("FROM base\nCMD [\"x\"]\nENTRYPOINT [\"/app\"]\n", { images: { base: { Cmd: ["serve"] } } });
    expect(local.image.config.Cmd).toEqual(["x"]);
  });

  it("uses SHELL for shell-form CMD, ENTRYPOINT and RUN", async () => {
    const build = await convert('FROM scratch\nSHELL ["/bin/bash", "-eu", "-c"]\nCMD echo hi\nRUN echo run\n');
    expect(build.image.config.Cmd).toEqual(["/bin/bash", "-eu", "-c", "echo hi"]);
    expect((rootVertex(build).op as ExecOp).args).toEqual(["/bin/bash", "-eu", "-c", "echo run"]);
  });

  it("expands EXPOSE ranges and defaults to tcp", async () => {
    const build = await convert('FROM scratch\nARG P=9000 MORE="1 2/udp"\nEXPOSE 8000-8002 53/UDP ${P} $MORE\n');
    expect(Object.keys(build.image.config.ExposedPorts ?? {})).toEqual(["8000/tcp", "8001/tcp", "8002/tcp", "53/udp", "9000/tcp", "1/tcp", "2/udp"]);
  });

  it("records labels, volumes, user, stop signal and healthchecks", async () => {
    const build = await convert(
      'FROM scratch\nARG V=2\nLABEL a=1 "b c"="d e" version=$V\nVOLUME /a ["/b", "/c"]\nUSER app:app\nSTOPSIGNAL SIGINT\nHEALTHCHECK --interval=30s --retries=3 CMD curl -f http://localhost/\n',
    );
    expect(build.image.config.Labels).toEqual({ a: "1", "b c": "d e", version: "2" });
    expect(Object.keys(build.image.config.Volumes ?? {})).toEqual(["/a", "[/b,", "/c]"]);
    expect(build.image.config.User).toBe("app:app");
    expect(build.image.config.StopSignal).toBe("SIGINT");
    expect(build.image.config.Healthcheck).toEqual({ Test: ["CMD-SHELL", "curl -f http://localhost/"], Interval: 30e9, Retries: 3 });
    const none = await convert("FROM scratch\nHEALTHCHECK NONE\n");
    expect(none.image.config.Healthcheck).toEqual({ Test: ["NONE"] });
  });

  it("keeps history with empty_layer for metadata steps", async () => {
    const build = await convert("FROM scratch\nENV A=1\nCOPY a /a\nLABEL x=y\n");
    expect(build.image.history.map((entry) => [entry.created_by, entry.empty_layer ?? false])).toEqual([
      ["ENV A=1", true],
      ["COPY a /a # buildkit", false],
      ["LABEL x=y", true],
    ]);
    expect(build.layers).toHaveLength(1);
  });

  it("records ONBUILD and runs a base stage's triggers once", async () => {
    const build = await convert("FROM scratch AS base\nONBUILD ENV TRIGGERED=yes\nFROM base\nENV AFTER=1\n");
    expect(build.image.config.Env).toEqual(expect.arrayContaining(["TRIGGERED=yes", "AFTER=1"]));
    expect(build.image.config.OnBuild).toBeUndefined();
    const image = await convert("FROM scratch\nONBUILD RUN make\n");
    expect(image.image.config.OnBuild).toEqual(["RUN make"]);
  });

  it("runs the ONBUILD triggers of a base image", async () => {
    const build = await convert("FROM base\n", { images: { base: { OnBuild: ["COPY . /src"] } } });
    const op = rootVertex(build).op as FileOp;
    expect(op.actions[0]).toMatchObject({ action: "copy", sources: ["."], dest: "/src" });
  });
});

describe("file operations", () => {
  it("copies from the context relative to WORKDIR, keeping a directory destination", async () => {
    const build = await convert("FROM scratch\nWORKDIR /app\nCOPY --chown=app:staff --chmod=0644 a b ./\nCOPY c .\nCOPY d sub/e\n");
    const vertices = [...build.graph.vertices.values()].filter((vertex) => vertex.op.type === "file");
    const copies = vertices.flatMap((vertex) => (vertex.op as FileOp).actions).filter((action): action is CopyAction => action.action === "copy");
    expect(copies.map((copy) => [copy.sources, copy.dest])).toEqual([
      [["a", "b"], "/app/"],
      [["c"], "/app/"],
      [["d"], "/app/sub/e"],
    ]);
    expect(copies[0]).toMatchObject({ chown: { user: "app", group: "staff" }, chmod: "0644" });
  });

  it("takes COPY --from a stage by name or index, and converts only the stages needed", async () => {
    const text = "FROM scratch AS unused\nCOPY x /x\nFROM scratch AS build\nCOPY y /y\nFROM scratch\nCOPY --from=build /y /a\nCOPY --from=1 /y /b\n";
    const build = await convert(text);
    expect(build.stagesUsed).toEqual([1, 2]);
    const names = [...build.graph.vertices.values()].map((vertex) => vertex.name);
    expect(names.some((name) => name.includes("unused"))).toBe(false);
  });

  it("builds the target stage only", async () => {
    const build = await convert("FROM scratch AS a\nENV A=1\nFROM scratch AS b\nENV B=1\n", { target: "a" });
    expect(build.image.config.Env).toContain("A=1");
    expect(build.stagesUsed).toEqual([0]);
  });

  it("puts COPY --link in a layer of its own, merged onto the stage", async () => {
    const build = await convert("FROM base\nCOPY --link a /a\n", { images: { base: {} } });
    const merge = rootVertex(build);
    expect(merge.op).toEqual({ type: "merge" });
    const layer = build.graph.vertices.get(merge.inputs[1] as string);
    expect(layer?.inputs[0]).toBeNull();
    expect(build.layers.map((step) => step.vertex)).toEqual([merge.inputs[0], merge.inputs[1]]);
  });

  it("turns COPY heredocs into files, expanded unless quoted", async () => {
    const build = await convert("FROM scratch\nARG V=7\nCOPY <<EOF <<'RAW' /etc/\nv=${V}\nEOF\nv=${V}\nRAW\n");
    const files = [...build.graph.vertices.values()].flatMap((vertex) => (vertex.op.type === "file" ? vertex.op.actions : [])).filter((action) => action.action === "mkfile");
    expect(files.map((file) => [file.path, file.data])).toEqual([
      ["/EOF", "v=7\n"],
      ["/RAW", "v=${V}\n"],
    ]);
  });

  it("makes ADD of a URL a source with its checksum", async () => {
    const sum = "sha256:" + "a".repeat(64);
    const build = await convert(`FROM scratch\nADD --checksum=${sum} https://example.com/x.tgz /x\n`);
    const source = [...build.graph.vertices.values()].find((vertex) => vertex.op.type === "source");
    expect(source?.op).toEqual({ type: "source", identifier: "https://example.com/x.tgz", attrs: { checksum: sum } });
  });

  it("describes RUN as an exec op with mounts, network and heredoc scripts", async () => {
    const build = await convert(
      "FROM scratch AS deps\nFROM scratch\nWORKDIR /w\nUSER 1000\nRUN --mount=type=cache,target=/root/.cache --mount=type=bind,from=deps,target=/deps --mount=type=secret,id=tok --network=none make\nRUN <<EOF\n#!/usr/bin/env python3\nprint(1)\nEOF\n",
    );
    const script = rootVertex(build);
    expect((script.op as ExecOp).files).toEqual([{ path: "/dev/pipes/EOF", data: "#!/usr/bin/env python3\nprint(1)\n", mode: 0o755 }]);
    const exec = build.graph.vertices.get(script.inputs[0] as string)?.op as ExecOp;
    expect(exec).toMatchObject({ args: ["/bin/sh", "-c", "make"], cwd: "/w", user: "1000", network: "none" });
    expect(exec.mounts).toEqual([
      { type: "cache", target: "/root/.cache", id: "/root/.cache" },
      { type: "bind", target: "/deps", input: 1 },
      { type: "secret", target: "/run/secrets/tok", id: "tok" },
    ]);
  });
});

describe("digests", () => {
  it("are the same for the same Dockerfile and inputs, and change with what matters", async () => {
    const text = "FROM scratch\nARG V=1\nCOPY a /a\nRUN echo $V\n";
    const [first, second] = [await convert(text), await convert(text)];
    expect(first.root).toBe(second.root);
    expect((await convert(text, { buildArgs: { V: "2" } })).root).not.toBe(first.root);
    expect((await convert(`# comment\n${text}`)).root).toBe(first.root);
  });
});

describe("errors", () => {
  it.each([
    ["FROM scratch AS a\nFROM scratch\n", { target: "nope" }, 'target stage "nope" could not be found'],
    ["ARG BASE\nFROM ${BASE}\n", {}, "base image name of this stage is empty"],
    ["FROM --platform=linux/ scratch\n", {}, 'invalid platform "linux/"'],
    ["FROM scratch AS a\nCOPY --from=a x /x\n", {}, "circular dependency"],
    ["FROM missing\n", {}, "image missing is not available"],
    ["FROM scratch\nADD --checksum=sha256:" + "a".repeat(64) + " x /x\n", {}, "--checksum applies to https:// sources only"],
  ])("%j", async (text, options, message) => {
    const error = await conversionError(text, options);
    expect(error.message).toContain(message);
    if (error instanceof DockerfileSyntaxError) expect(error.span.start.line).toBeGreaterThan(0);
  });
});
