/** ADD of archives, URLs and git repositories, end to end through `tsbuild build`. */
import { createHash } from "node:crypto";
import { chmodSync, existsSync, lstatSync, mkdirSync, readFileSync, readdirSync, readlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { gzipSync } from "node:zlib";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { compress, freshDir, makeRepo, makeTar, runCli, startGitDaemon, startHttpServer, staticFile, writeFiles, type TestServer } from "./helpers.ts";

const LAST_MODIFIED = "Wed, 21 Oct 2015 07:28:00 GMT";
let server: TestServer;
let daemon: Awaited<ReturnType<typeof startGitDaemon>>;

beforeAll(async () => {
  if (!existsSync(join(import.meta.dirname, "..", "..", "..", "dist", "tsbuild.js"))) throw new Error("the CLI is not built: run `npm run build` first");
  server = await startHttpServer();
  const gitBase = freshDir("git");
  makeRepo(gitBase);
  daemon = await startGitDaemon(gitBase);
});
afterAll(async () => {
  await server?.close();
  await daemon?.stop();
});

function sha256(content: string | Buffer): string {
  return `sha256:${createHash("sha256").update(content).digest("hex")}`;
}

async function build(context: string, root: string, extra: string[] = []) {
  const dest = freshDir("out");
  const result = await runCli(["build", "--progress", "plain", "--root", root, "-o", `type=local,dest=${dest}`, ...extra, context]);
  return { ...result, dest };
}

describe("ADD", () => {
  it("unpacks local archives of every compression, and copies other files as they are", async () => {
    const context = freshDir("ctx");
    const entries = [
      { name: "bin/", type: "directory" as const },
      { name: "bin/tool", content: "#!/bin/sh\n", mode: 0o755 },
      { name: "bin/alias", type: "symlink" as const, linkname: "tool" },
    ];
    const tar = await makeTar(entries);
    for (const compression of ["uncompressed", "gzip", "bzip2", "xz", "zstd"] as const) writeFileSync(join(context, `pkg-${compression}.data`), compress(tar, compression));
    writeFileSync(join(context, "notes.txt.gz"), gzipSync("not a tar\n"));
    writeFiles(context, {
      Dockerfile: [
        "FROM scratch",
        "ADD pkg-uncompressed.data /plain",
        "ADD pkg-gzip.data /gzip/",
        "ADD pkg-bzip2.data pkg-xz.data /multi/",
        "ADD pkg-zstd.data /zstd",
        "ADD notes.txt.gz /docs/",
        "COPY pkg-gzip.data /copied/",
        "",
      ].join("\n"),
    });
    const { code, stderr, dest } = await build(context, freshDir("root"));
    expect(stderr).not.toContain("internal error");
    expect(code).toBe(0);
    for (const dir of ["plain", "gzip", "multi", "zstd"]) {
      expect(readFileSync(join(dest, dir, "bin", "tool"), "utf8")).toBe("#!/bin/sh\n");
      expect(lstatSync(join(dest, dir, "bin", "tool")).mode & 0o777).toBe(0o755);
      expect(readlinkSync(join(dest, dir, "bin", "alias"))).toBe("tool");
    }
    expect(readFileSync(join(dest, "docs", "notes.txt.gz"))).toEqual(gzipSync("not a tar\n"));
    // COPY never unpacks.
    expect(readdirSync(join(dest, "copied"))).toEqual(["pkg-gzip.data"]);
  });

  it("keeps the metadata of directories from the image below that archive entries go into", async () => {
    const context = freshDir("below");
    mkdirSync(join(context, "base", "tmp"), { recursive: true });
    chmodSync(join(context, "base", "tmp"), 0o1777);
    writeFileSync(join(context, "over.tar"), await makeTar([{ name: "tmp/added.txt", content: "added\n" }]));
    writeFiles(context, { Dockerfile: "FROM scratch\nCOPY base/ /\nADD over.tar /\n" });
    const { code, stderr, dest } = await build(context, freshDir("root"));
    expect(code, stderr).toBe(0);
    expect(readFileSync(join(dest, "tmp", "added.txt"), "utf8")).toBe("added\n");
    expect(lstatSync(join(dest, "tmp")).mode & 0o7777).toBe(0o1777);
  });

  it("fails on an archive entry that escapes, naming it", async () => {
    const context = freshDir("evil");
    writeFileSync(join(context, "evil.tar"), await makeTar([{ name: "../../etc/evil", content: "x" }]));
    writeFiles(context, { Dockerfile: "FROM scratch\nADD evil.tar /app/\n" });
    const { code, stderr } = await build(context, freshDir("root"));
    expect(code).not.toBe(0);
    expect(stderr).toContain('refusing entry "../../etc/evil" of archive evil.tar');
    expect(stderr).not.toContain("internal error");
  });

  it("downloads URLs, checks --checksum and keeps the URL's file name", async () => {
    server.route("/dl/tool.txt", staticFile({ content: "tool\n", etag: '"t1"', lastModified: LAST_MODIFIED }));
    const context = writeFiles(freshDir("ctx"), {
      Dockerfile: [
        "FROM scratch",
        `ADD --checksum=${sha256("tool\n")} ${server.url("/dl/tool.txt")} /bin/`,
        `ADD ${server.url("/dl/tool.txt")} /renamed.txt`,
        `ADD --chmod=755 ${server.url("/dl/tool.txt")} /exec/`,
        "",
      ].join("\n"),
    });
    const root = freshDir("root");
    const { code, stderr, dest } = await build(context, root);
    expect(stderr).not.toContain("internal error");
    expect(code).toBe(0);
    expect(readFileSync(join(dest, "bin", "tool.txt"), "utf8")).toBe("tool\n");
    expect(lstatSync(join(dest, "bin", "tool.txt")).mode & 0o777).toBe(0o600);
    expect(lstatSync(join(dest, "bin", "tool.txt")).mtime.toISOString()).toBe(new Date(LAST_MODIFIED).toISOString());
    expect(readFileSync(join(dest, "renamed.txt"), "utf8")).toBe("tool\n");
    expect(lstatSync(join(dest, "exec", "tool.txt")).mode & 0o777).toBe(0o755);

    // Rebuilding: the checksummed download is not requested again, the other is checked with its ETag.
    const before = server.requests.filter((request) => request.path === "/dl/tool.txt").length;
    const again = await build(context, root);
    expect(again.code).toBe(0);
    const after = server.requests.filter((request) => request.path === "/dl/tool.txt").slice(before);
    expect(after.length).toBeGreaterThan(0);
    expect(after.every((request) => request.ifNoneMatch === '"t1"')).toBe(true);
    expect(again.stderr).toMatch(/CACHED/);
  });

  it("fails on a wrong --checksum, naming both digests", async () => {
    server.route("/dl/other.txt", staticFile({ content: "other\n" }));
    const wrong = sha256("something else\n");
    const context = writeFiles(freshDir("ctx"), { Dockerfile: `FROM scratch\nADD --checksum=${wrong} ${server.url("/dl/other.txt")} /x/\n` });
    const { code, stderr } = await build(context, freshDir("root"));
    expect(code).not.toBe(0);
    expect(stderr).toContain(wrong);
    expect(stderr).toContain(sha256("other\n"));
  });

  it("adds git repositories at a tag with a subdirectory, and with --keep-git-dir", async () => {
    const context = writeFiles(freshDir("ctx"), {
      Dockerfile: ["FROM scratch", `ADD ${daemon.url("repo.git")}#v1:sub /src`, `ADD --keep-git-dir=true ${daemon.url("repo.git")}#main /full/`, ""].join("\n"),
    });
    const { code, stderr, dest } = await build(context, freshDir("root"));
    expect(stderr).not.toContain("internal error");
    expect(code).toBe(0);
    expect(readdirSync(join(dest, "src")).sort()).toEqual(["deeper", "inner.txt"]);
    expect(readFileSync(join(dest, "src", "inner.txt"), "utf8")).toBe("inner 1\n");
    expect(readFileSync(join(dest, "full", "README"), "utf8")).toBe("version 2\n");
    expect(existsSync(join(dest, "full", ".git", "HEAD"))).toBe(true);
  });
});
