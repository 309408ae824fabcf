import { existsSync, readFileSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { Readable } from "node:stream";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { materializeContext, remoteContextKind } from "../../src/context/remote.ts";
import { UnsafeArchiveEntryError } from "../../src/solver/ops/unpack-archive.ts";
import {
  compress,
  freshDir,
  makeRepo,
  makeTar,
  runCli,
  startGitDaemon,
  startGitHttpServer,
  startHttpServer,
  type TarEntry,
  type TestServer,
} from "../solver/sources/helpers.ts";

const CONTEXT: TarEntry[] = [
  { name: "./", type: "directory" },
  { name: "./Dockerfile", content: "FROM scratch\nCOPY . /ctx/\n" },
  { name: "./app/main.txt", content: "main\n" },
  { name: "./ignored.log", content: "noise\n" },
  { name: "./.dockerignore", content: "*.log\n" },
  { name: "./alt/Dockerfile.alt", content: "FROM scratch\nCOPY app/main.txt /alt.txt\n" },
];

let server: TestServer;
let daemon: Awaited<ReturnType<typeof startGitDaemon>>;
let gitHttp: Awaited<ReturnType<typeof startGitHttpServer>>;
const signal = new AbortController().signal;

beforeAll(async () => {
  server = await startHttpServer();
  const gitBase = freshDir("git-ctx");
  const repo = makeRepo(gitBase);
  repo.commit({ "sub/Dockerfile": "FROM scratch\nCOPY . /got/\n" }, "add a Dockerfile");
  daemon = await startGitDaemon(gitBase);
  gitHttp = await startGitHttpServer(gitBase);
});
afterAll(async () => {
  await server?.close();
  await daemon?.stop();
  await gitHttp?.close();
});

describe("remoteContextKind", () => {
  it("tells remote contexts from directories", () => {
    expect(remoteContextKind("-")).toBe("stdin");
    expect(remoteContextKind("https://example.com/ctx.tar.gz")).toBe("url");
    expect(remoteContextKind("https://example.com/repo.git#main:docker")).toBe("git");
    expect(remoteContextKind("git@github.com:o/r.git")).toBe("git");
    expect(remoteContextKind("git://example.com/r")).toBe("git");
    expect(remoteContextKind(".")).toBeUndefined();
    expect(remoteContextKind("./https")).toBeUndefined();
  });
});

describe("materializeContext", () => {
  for (const compression of ["uncompressed", "gzip", "xz"] as const) {
    it(`unpacks a ${compression} tar from standard input`, async () => {
      const stdin = Readable.from([compress(await makeTar(CONTEXT), compression)]);
      const tmp = join(freshDir("tmp"), "ctx");
      const context = await materializeContext("-", tmp, signal, { stdin });
      expect(context).toMatchObject({ kind: "stdin", dockerfileOnly: false });
      expect(context.dir.startsWith(tmp)).toBe(true);
      expect(readFileSync(join(context.dir, "app", "main.txt"), "utf8")).toBe("main\n");
    });
  }

  it("takes standard input that is not an archive as the Dockerfile", async () => {
    const stdin = Readable.from([Buffer.from("FROM scratch\n")]);
    const context = await materializeContext("-", join(freshDir("tmp"), "ctx"), signal, { stdin });
    expect(context.dockerfileOnly).toBe(true);
    expect(readdirSync(context.dir)).toEqual(["Dockerfile"]);
  });

  it("refuses empty standard input", async () => {
    await expect(materializeContext("-", join(freshDir("tmp"), "ctx"), signal, { stdin: Readable.from([]) })).rejects.toThrow(/standard input is empty/);
  });

  it("refuses a context archive with an escaping entry", async () => {
    const stdin = Readable.from([await makeTar([{ name: "../evil", content: "x" }])]);
    await expect(materializeContext("-", join(freshDir("tmp"), "ctx"), signal, { stdin })).rejects.toBeInstanceOf(UnsafeArchiveEntryError);
  });

  it("downloads and unpacks a URL", async () => {
    const tarball = compress(await makeTar(CONTEXT), "zstd");
    server.route("/ctx.tar.zst", (_request, response) => response.writeHead(200).end(tarball));
    const context = await materializeContext(server.url("/ctx.tar.zst"), join(freshDir("tmp"), "ctx"), signal);
    expect(context.kind).toBe("url");
    expect(readFileSync(join(context.dir, "Dockerfile"), "utf8")).toContain("FROM scratch");
  });

  it("reports a URL that cannot be downloaded", async () => {
    await expect(materializeContext(server.url("/absent.tar"), join(freshDir("tmp"), "ctx"), signal)).rejects.toThrow(/404/);
  });

  it("checks out a git URL's subdirectory, without .git", async () => {
    const context = await materializeContext(`${daemon.url("repo.git")}#main:sub`, join(freshDir("tmp"), "ctx"), signal);
    expect(context.kind).toBe("git");
    expect(readdirSync(context.dir).sort()).toEqual(["Dockerfile", "deeper", "inner.txt"]);
    expect(existsSync(join(context.dir, "..", ".git"))).toBe(false);
  });
});

describe("tsbuild build with a remote context", () => {
  beforeAll(() => {
    if (!existsSync(join(import.meta.dirname, "..", "..", "dist", "tsbuild.js"))) throw new Error("the CLI is not built: run `npm run build` first");
  });

  async function build(context: string, options: { input?: Buffer | string; extra?: string[] } = {}) {
    const root = freshDir("root");
    const dest = freshDir("out");
    const result = await runCli(["build", "--progress", "plain", "--root", root, "-o", `type=local,dest=${dest}`, ...(options.extra ?? []), context], {
      ...(options.input !== undefined ? { input: options.input } : {}),
    });
    expect(result.stderr).not.toContain("internal error");
    // The materialized context is gone, and so is its checksum cache.
    const entries = (dir: string) => (existsSync(join(root, dir)) ? readdirSync(join(root, dir)) : []);
    expect(entries("tmp")).toEqual([]);
    expect(entries("context-checksums")).toEqual([]);
    return { ...result, dest };
  }

  it("reads a compressed tar from standard input (-)", async () => {
    const { code, stderr, dest } = await build("-", { input: compress(await makeTar(CONTEXT), "gzip") });
    expect(code, stderr).toBe(0);
    expect(readFileSync(join(dest, "ctx", "app", "main.txt"), "utf8")).toBe("main\n");
    expect(existsSync(join(dest, "ctx", "ignored.log"))).toBe(false);
  });

  it("reads -f inside the archive from standard input", async () => {
    const { code, stderr, dest } = await build("-", { input: compress(await makeTar(CONTEXT), "bzip2"), extra: ["-f", "alt/Dockerfile.alt"] });
    expect(code, stderr).toBe(0);
    expect(readFileSync(join(dest, "alt.txt"), "utf8")).toBe("main\n");
  });

  it("takes a Dockerfile on standard input with an otherwise empty context", async () => {
    const { code, stderr, dest } = await build("-", { input: "FROM scratch\nCOPY <<EOF /hello.txt\nhello\nEOF\n" });
    expect(code, stderr).toBe(0);
    expect(readFileSync(join(dest, "hello.txt"), "utf8")).toBe("hello\n");
  });

  it("refuses - for both the context and the Dockerfile", async () => {
    const { code, stderr } = await build("-", { input: "x", extra: ["-f", "-"] });
    expect(code).not.toBe(0);
    expect(stderr).toContain("cannot both come from standard input");
  });

  it("downloads a tarball URL", async () => {
    const tarball = compress(await makeTar(CONTEXT), "xz");
    server.route("/context.tar.xz", (_request, response) => response.writeHead(200).end(tarball));
    const { code, stderr, dest } = await build(server.url("/context.tar.xz"));
    expect(code, stderr).toBe(0);
    expect(readFileSync(join(dest, "ctx", "Dockerfile"), "utf8")).toContain("COPY . /ctx/");
  });

  it("checks out a git URL at a ref with a subdirectory", async () => {
    const { code, stderr, dest } = await build(`${daemon.url("repo.git")}#main:sub`);
    expect(code, stderr).toBe(0);
    expect(readdirSync(join(dest, "got")).sort()).toEqual(["Dockerfile", "deeper", "inner.txt"]);
    expect(readFileSync(join(dest, "got", "inner.txt"), "utf8")).toBe("inner 2\n");
  });

  it("checks out an http(s) URL ending in .git as a git context", async () => {
    const { code, stderr, dest } = await build(`${gitHttp.url("repo.git")}#main:sub`);
    expect(code, stderr).toBe(0);
    expect(readFileSync(join(dest, "got", "inner.txt"), "utf8")).toBe("inner 2\n");
  });

  it("keeps -f inside a remote context", async () => {
    const { code, stderr } = await build(`${gitHttp.url("repo.git")}#main:sub`, { extra: ["-f", "../../../Dockerfile"] });
    expect(code).not.toBe(0);
    expect(stderr).toContain("must be inside the build context");
  });
});
