import { execFileSync } from "node:child_process";
import { chmod, chown, lchown, mkdir, mkdtemp, readFile, rename, rm, stat, symlink, utimes, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { ContextError, LocalContext, readDockerfile, resolveDockerfilePath, safeJoin } from "../../src/context/index.ts";
import type { Selection, SelectOptions } from "../../src/context/index.ts";

/** Files written just before hashing are not cached (a later change could keep their ctime); wait past that window. */
const PAST_RACY_WINDOW_MS = 80;
const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

let scratch: string;
let ctxDir: string;

beforeEach(async () => {
  scratch = await mkdtemp(path.join(tmpdir(), "tsbuild-context-"));
  ctxDir = path.join(scratch, "ctx");
  await mkdir(ctxDir);
});

afterEach(async () => {
  await rm(scratch, { recursive: true, force: true });
});

/** Writes a tree: "dir/" entries make directories, "->target" values make symlinks. */
async function makeTree(root: string, tree: Record<string, string>): Promise<void> {
  for (const [rel, content] of Object.entries(tree)) {
    const full = path.join(root, rel);
    if (rel.endsWith("/")) {
      await mkdir(full, { recursive: true });
      continue;
    }
    await mkdir(path.dirname(full), { recursive: true });
    if (content.startsWith("->")) await symlink(content.slice(2), full);
    else await writeFile(full, content);
  }
}

async function openContext(options: { dir?: string; dockerfile?: string; cache?: string } = {}): Promise<LocalContext> {
  const dir = options.dir ?? ctxDir;
  return LocalContext.open({
    dir,
    dockerfilePath: options.dockerfile ?? path.join(dir, "Dockerfile"),
    ...(options.cache === undefined ? {} : { checksumCachePath: options.cache }),
  });
}

async function selectIn(patterns: string[], options?: SelectOptions): Promise<Selection> {
  const context = await openContext();
  return context.select(patterns, options);
}

function sources(selection: Selection): string[] {
  return selection.entries.map((entry) => entry.source);
}

function childPaths(selection: Selection, index = 0): string[] {
  return (selection.entries[index]?.children ?? []).map((child) => child.path);
}

async function selectError(patterns: string[], options?: SelectOptions, context?: LocalContext): Promise<ContextError> {
  const ctx = context ?? (await openContext());
  try {
    await ctx.select(patterns, options);
  } catch (error) {
    if (error instanceof ContextError) return error;
    throw error;
  }
  throw new Error(`expected select(${JSON.stringify(patterns)}) to fail`);
}

async function checksumOf(patterns: string[], options: { dir?: string } & SelectOptions = {}, sumOptions = {}): Promise<string> {
  const context = await openContext(options.dir === undefined ? {} : { dir: options.dir });
  return context.checksum(await context.select(patterns, options), sumOptions);
}

describe("LocalContext.select: plain sources", () => {
  it("selects a single file with its metadata", async () => {
    await makeTree(ctxDir, { "app.js": "console.log(1)\n" });
    await chmod(path.join(ctxDir, "app.js"), 0o640);
    const selection = await selectIn(["app.js"]);
    expect(selection.entries).toHaveLength(1);
    const [entry] = selection.entries;
    expect(entry).toMatchObject({ source: "app.js", type: "file", hostPath: path.join(ctxDir, "app.js") });
    expect(entry!.children).toBeUndefined();
    expect(entry!.stat).toMatchObject({ path: ".", type: "file", mode: 0o640, size: 15, uid: process.getuid!(), gid: process.getgid!() });
  });

  it("a leading '/' means the context root, and paths are cleaned", async () => {
    await makeTree(ctxDir, { "src/main.go": "package main\n" });
    expect(sources(await selectIn(["/src/main.go"]))).toEqual(["src/main.go"]);
    expect(sources(await selectIn(["./src/../src//main.go"]))).toEqual(["src/main.go"]);
    expect(sources(await selectIn(["src/main.go/"]))).toEqual(["src/main.go"]); // filepath.Join drops the slash
  });

  it("a directory selects its contents recursively, sorted, directories first in their subtree", async () => {
    await makeTree(ctxDir, { "web/b.css": "b", "web/a/x.js": "x", "web/a/y/z.txt": "z", "web/empty/": "", "other.txt": "o" });
    const selection = await selectIn(["web"]);
    expect(selection.entries[0]).toMatchObject({ source: "web", type: "dir", hostPath: path.join(ctxDir, "web") });
    expect(childPaths(selection)).toEqual(["a", "a/x.js", "a/y", "a/y/z.txt", "b.css", "empty"]);
    const child = selection.entries[0]!.children!.find((c) => c.path === "a/y/z.txt")!;
    expect(child).toMatchObject({ type: "file", size: 1, hostPath: path.join(ctxDir, "web/a/y/z.txt") });
  });

  it("'.' and '/' select the whole context", async () => {
    await makeTree(ctxDir, { "a.txt": "a", "d/b.txt": "b" });
    for (const root of [".", "/", ""]) {
      const selection = await selectIn([root]);
      expect(sources(selection)).toEqual(["."]);
      expect(childPaths(selection)).toEqual(["a.txt", "d", "d/b.txt"]);
    }
  });

  it("keeps several sources in order", async () => {
    await makeTree(ctxDir, { "a": "a", "b": "b" });
    expect(sources(await selectIn(["b", "a"]))).toEqual(["b", "a"]);
  });

  it("rejects '..' that leaves the context", async () => {
    await makeTree(ctxDir, { "a/b.txt": "b" });
    await writeFile(path.join(scratch, "outside.txt"), "secret");
    for (const source of ["../outside.txt", "a/../../outside.txt", "/../outside.txt", ".."]) {
      const error = await selectError([source]);
      expect(error.code).toBe("SOURCE_OUTSIDE_CONTEXT");
      expect(error.message).toBe(`COPY failed: forbidden path outside the build context: ${source}`);
    }
    expect(sources(await selectIn(["a/../a/b.txt"]))).toEqual(["a/b.txt"]);
  });

  it("fails clearly for a missing source", async () => {
    const error = await selectError(["nope.txt"]);
    expect(error.code).toBe("SOURCE_NOT_FOUND");
    expect(error.message).toBe("COPY failed: file not found in build context or excluded by .dockerignore: stat nope.txt: file does not exist");
    expect(error.hint).toContain(ctxDir);
    expect((await selectError(["nope.txt"], { instruction: "ADD" })).message).toMatch(/^ADD failed: /);
  });

  it("fails for a path through a file", async () => {
    await makeTree(ctxDir, { "file": "x" });
    expect((await selectError(["file/inner"])).code).toBe("SOURCE_NOT_FOUND");
  });

  it("rejects FIFOs as sources and leaves them out of directories without opening them", async () => {
    await makeTree(ctxDir, { "d/regular": "r" });
    execFileSync("mkfifo", [path.join(ctxDir, "d/pipe")]);
    const error = await selectError(["d/pipe"]);
    expect(error.code).toBe("UNSUPPORTED_FILE_TYPE");
    const context = await openContext();
    const selection = await context.select(["d"]);
    expect(childPaths(selection)).toEqual(["regular"]);
    await context.checksum(selection); // would hang if the FIFO were opened
  });
});

describe("LocalContext.select: wildcards", () => {
  beforeEach(async () => {
    await makeTree(ctxDir, {
      "a.txt": "a",
      "b.txt": "b",
      "c.md": "c",
      "notes.txt/inner.txt": "dir named like a file",
      "dir/one/x": "1",
      "dir/two/x": "2",
      "dir/two/y": "2y",
      "dir/three/sub/x": "3",
      "dir/x": "top",
    });
  });

  it("matches '*.txt' at the top level, in name order, without descending into matches", async () => {
    const selection = await selectIn(["*.txt"]);
    expect(sources(selection)).toEqual(["a.txt", "b.txt", "notes.txt"]);
    expect(selection.entries[2]).toMatchObject({ type: "dir" });
    expect(childPaths(selection, 2)).toEqual(["inner.txt"]);
  });

  it("matches per path element: 'dir/*/x'", async () => {
    expect(sources(await selectIn(["dir/*/x"]))).toEqual(["dir/one/x", "dir/two/x"]);
    expect(sources(await selectIn(["/dir/t*/?"]))).toEqual(["dir/two/x", "dir/two/y"]);
    expect(sources(await selectIn(["*/*/sub"]))).toEqual(["dir/three/sub"]);
    expect(sources(await selectIn(["[ab].txt"]))).toEqual(["a.txt", "b.txt"]);
  });

  it("a backslash escapes a wildcard character (fsutil's containsWildcards)", async () => {
    await writeFile(path.join(ctxDir, "star*"), "literal star");
    await writeFile(path.join(ctxDir, "back\\*"), "literal backslash");
    // Only escaped wildcards: not a pattern, looked up as written.
    expect(sources(await selectIn(["back\\*"]))).toEqual(["back\\*"]);
    // A pattern: the backslash escapes the next character.
    expect(sources(await selectIn(["s\\tar*"]))).toEqual(["star*"]);
    expect(sources(await selectIn(["sta[r]\\*"]))).toEqual(["star*"]);
  });

  it("fails with 'no source files were specified' when the sources select nothing", async () => {
    const error = await selectError(["*.nothing"]);
    expect(error.code).toBe("NO_SOURCE_FILES");
    expect(error.message).toBe("COPY failed: no source files were specified");
    expect((await selectIn(["*.nothing"], { allowEmptyWildcard: true })).entries).toEqual([]);
    // As with Docker, a wildcard may match nothing when other sources select something.
    expect(sources(await selectIn(["*.nothing", "c.md"]))).toEqual(["c.md"]);
  });

  it("fails when the directory before the wildcard is missing (as BuildKit)", async () => {
    const error = await selectError(["missing/*.txt"]);
    expect(error.code).toBe("SOURCE_NOT_FOUND");
    expect(error.message).toContain("stat missing: file does not exist");
  });

  it("rejects malformed patterns", async () => {
    expect((await selectError(["[a-"])).code).toBe("INVALID_PATTERN");
  });
});

describe("LocalContext.select: symlinks stay inside the context", () => {
  it("resolves an absolute symlink target inside the context root", async () => {
    await makeTree(ctxDir, { "etc/shadow": "context copy", "link": "->/etc/shadow" });
    const followed = await selectIn(["link"], { followLinks: true });
    expect(followed.entries[0]).toMatchObject({ source: "link", type: "file", hostPath: path.join(ctxDir, "etc/shadow") });
    expect(await readFile(followed.entries[0]!.hostPath, "utf8")).toBe("context copy");
  });

  it("a symlink to a path missing inside the context is not found, never read outside", async () => {
    await makeTree(ctxDir, { "link": "->/etc/hostname", "up": "->../../../../etc/hostname" });
    expect((await selectError(["link"], { followLinks: true })).code).toBe("SOURCE_NOT_FOUND");
    expect((await selectError(["up"], { followLinks: true })).code).toBe("SOURCE_NOT_FOUND");
  });

  it("'..' in a symlink target stops at the context root", async () => {
    await makeTree(ctxDir, { "data.txt": "d", "deep/er/link": "->../../../../../data.txt" });
    const selection = await selectIn(["deep/er/link"], { followLinks: true });
    expect(selection.entries[0]!.hostPath).toBe(path.join(ctxDir, "data.txt"));
  });

  it("copies a final symlink as a symlink unless followLinks", async () => {
    await makeTree(ctxDir, { "target.txt": "t", "link": "->target.txt" });
    const selection = await selectIn(["link"]);
    expect(selection.entries[0]).toMatchObject({ source: "link", type: "symlink", hostPath: path.join(ctxDir, "link") });
    expect(selection.entries[0]!.stat.linkTarget).toBe("target.txt");
  });

  it("always follows symlinks that are a path prefix", async () => {
    await makeTree(ctxDir, { "real/file.txt": "f", "real/sub/x": "x", "alias": "->/real" });
    const selection = await selectIn(["alias/file.txt"]);
    expect(selection.entries[0]).toMatchObject({ source: "alias/file.txt", type: "file", hostPath: path.join(ctxDir, "real/file.txt") });
    // Wildcards below a symlinked directory report the resolved paths, as BuildKit.
    expect(sources(await selectIn(["alias/*"], { followLinks: true }))).toEqual(["real/file.txt", "real/sub"]);
  });

  it("keeps symlinks inside a selected directory as symlinks", async () => {
    await makeTree(ctxDir, { "d/target": "t", "d/link": "->target", "d/abs": "->/etc/passwd" });
    const selection = await selectIn(["d"], { followLinks: true });
    const children = selection.entries[0]!.children!;
    expect(children.map((c) => [c.path, c.type, c.linkTarget])).toEqual([
      ["abs", "symlink", "/etc/passwd"],
      ["link", "symlink", "target"],
      ["target", "file", undefined],
    ]);
  });

  it("follows a final symlink to a directory and walks the target", async () => {
    await makeTree(ctxDir, { "real/a": "a", "real/b/c": "c", "dirlink": "->real" });
    const selection = await selectIn(["dirlink"], { followLinks: true });
    expect(selection.entries[0]).toMatchObject({ source: "dirlink", type: "dir", hostPath: path.join(ctxDir, "real") });
    expect(childPaths(selection)).toEqual(["a", "b", "b/c"]);
  });

  it("detects symlink loops", async () => {
    await makeTree(ctxDir, { "l1": "->l2", "l2": "->l1" });
    expect((await selectError(["l1"], { followLinks: true })).code).toBe("TOO_MANY_SYMLINKS");
  });
});

describe("LocalContext.select with .dockerignore", () => {
  it("reports an ignored source like a missing one", async () => {
    await makeTree(ctxDir, { ".dockerignore": "secret.txt\nlogs\n", "secret.txt": "s", "logs/today.log": "l", "ok.txt": "o" });
    for (const source of ["secret.txt", "logs", "logs/today.log"]) {
      const error = await selectError([source]);
      expect(error.code).toBe("SOURCE_NOT_FOUND");
      expect(error.message).toBe(`COPY failed: file not found in build context or excluded by .dockerignore: stat ${source}: file does not exist`);
      expect(error.hint).toContain(".dockerignore");
    }
    expect(sources(await selectIn(["*"]))).toEqual([".dockerignore", "ok.txt"]);
    expect(childPaths(await selectIn(["."]))).toEqual([".dockerignore", "ok.txt"]);
  });

  it("follows the ignore rules for symlink targets and symlinks", async () => {
    await makeTree(ctxDir, { ".dockerignore": "private\nhidden-link\n", "private/key": "k", "to-key": "->private/key", "hidden-link": "->ok", "ok": "ok" });
    expect((await selectError(["to-key"], { followLinks: true })).code).toBe("SOURCE_NOT_FOUND");
    expect((await selectError(["hidden-link/x"])).code).toBe("SOURCE_NOT_FOUND");
  });

  it("re-included paths inside an ignored directory stay selectable", async () => {
    await makeTree(ctxDir, {
      ".dockerignore": "vendor\n!vendor/keep\n",
      "vendor/keep/a.txt": "a",
      "vendor/drop/b.txt": "b",
      "vendor/top.txt": "t",
    });
    const selection = await selectIn(["vendor"]);
    expect(childPaths(selection)).toEqual(["keep", "keep/a.txt"]);
    expect(sources(await selectIn(["vendor/keep/a.txt"]))).toEqual(["vendor/keep/a.txt"]);
    expect((await selectError(["vendor/top.txt"])).code).toBe("SOURCE_NOT_FOUND");
    expect(sources(await selectIn(["vendor/*"]))).toEqual(["vendor/keep"]);
  });

  it("an ignored directory with nothing re-included does not exist", async () => {
    await makeTree(ctxDir, { ".dockerignore": "build\n!build/keep.txt\n", "build/other.txt": "o" });
    expect((await selectError(["build"])).code).toBe("SOURCE_NOT_FOUND");
  });

  it("<Dockerfile>.dockerignore beside the Dockerfile wins over <context>/.dockerignore", async () => {
    await makeTree(ctxDir, { ".dockerignore": "a.txt\n", "a.txt": "a", "b.txt": "b" });
    const dockerfiles = path.join(scratch, "dockerfiles");
    await makeTree(dockerfiles, { "app.Dockerfile": "FROM scratch\n", "app.Dockerfile.dockerignore": "b.txt\n" });
    const context = await openContext({ dockerfile: path.join(dockerfiles, "app.Dockerfile") });
    expect(context.ignoreFile).toBe(path.join(dockerfiles, "app.Dockerfile.dockerignore"));
    expect(sources(await context.select(["a.txt"]))).toEqual(["a.txt"]);
    expect((await selectError(["b.txt"], {}, context)).code).toBe("SOURCE_NOT_FOUND");
    expect(context.isIgnored("b.txt")).toBe(true);
    expect(context.isIgnored("/a.txt")).toBe(false);
  });

  it("reports an invalid .dockerignore with its file and line", async () => {
    await makeTree(ctxDir, { ".dockerignore": "ok\n[bad\n" });
    await expect(openContext()).rejects.toMatchObject({ code: "INVALID_DOCKERIGNORE", message: expect.stringContaining(".dockerignore:2:") });
  });
});

describe("LocalContext.select with --exclude", () => {
  beforeEach(async () => {
    await makeTree(ctxDir, {
      "README.md": "r",
      "main.go": "m",
      "docs/guide.md": "g",
      "docs/img/logo.png": "p",
      "node_modules/dep/index.js": "i",
      "dir1/file-101.png": "2",
      "dir1/file-102.txt": "3",
      "dir2/file-201.pdf": "6",
    });
  });

  it("excludes paths below the source, relative to it", async () => {
    const selection = await selectIn(["."], { excludes: ["*.md", "node_modules"] });
    expect(childPaths(selection)).toEqual(["dir1", "dir1/file-101.png", "dir1/file-102.txt", "dir2", "dir2/file-201.pdf", "docs", "docs/guide.md", "docs/img", "docs/img/logo.png", "main.go"]);
    expect(childPaths(await selectIn(["docs"], { excludes: ["*.md"] }))).toEqual(["img", "img/logo.png"]);
    expect(childPaths(await selectIn(["."], { excludes: ["**/*.png", "*/*.md", "node_modules", "dir*", "*.md"] }))).toEqual(["docs", "docs/img", "main.go"]);
  });

  it("applies to each wildcard match's contents, never to the matched source itself", async () => {
    const selection = await selectIn(["dir*"], { excludes: ["*.png", "*.pdf"] });
    expect(sources(selection)).toEqual(["dir1", "dir2"]);
    expect(childPaths(selection, 0)).toEqual(["file-102.txt"]);
    expect(childPaths(selection, 1)).toEqual([]);
    expect(sources(await selectIn(["*.md"], { excludes: ["*.md"] }))).toEqual(["README.md"]);
  });

  it("supports '!' exceptions", async () => {
    const selection = await selectIn(["docs"], { excludes: ["*", "!img/logo.png"] });
    expect(childPaths(selection)).toEqual(["img", "img/logo.png"]);
  });

  it("rejects malformed exclude patterns", async () => {
    expect((await selectError(["."], { excludes: ["[x"] })).code).toBe("INVALID_PATTERN");
    expect((await selectError(["."], { excludes: ["!"] })).code).toBe("INVALID_PATTERN");
  });
});

describe("LocalContext.checksum", () => {
  const tree = { "app/main.js": "main", "app/lib/util.js": "util", "app/link": "->main.js", "unrelated.txt": "u" };

  it("is the same for the same content in another directory with other mtimes", async () => {
    await makeTree(ctxDir, tree);
    const other = path.join(scratch, "other");
    await makeTree(other, tree);
    await utimes(path.join(other, "app/main.js"), 1_000_000, 1_000_000);
    await utimes(path.join(other, "app/lib"), 2_000_000, 2_000_000);
    const first = await checksumOf(["app"]);
    expect(first).toMatch(/^sha256:[0-9a-f]{64}$/);
    expect(await checksumOf(["app"], { dir: other })).toBe(first);
    expect(await checksumOf(["app/main.js"], { dir: other })).toBe(await checksumOf(["app/main.js"]));
  });

  it("ignores changes to files outside the selection", async () => {
    await makeTree(ctxDir, tree);
    const before = await checksumOf(["app"]);
    await writeFile(path.join(ctxDir, "unrelated.txt"), "changed a lot");
    await writeFile(path.join(ctxDir, "new-file"), "new");
    expect(await checksumOf(["app"])).toBe(before);
    expect(await checksumOf(["app/*.js"])).toBe(await checksumOf(["app/*.js"]));
  });

  it("ignores .dockerignore'd files inside a selected directory and never reads them", async () => {
    await makeTree(ctxDir, { ...tree, ".dockerignore": "app/lib\n" });
    const context = await openContext();
    const before = await context.checksum(await context.select(["app"]));
    expect(context.counters.filesHashed).toBe(1); // main.js only
    await writeFile(path.join(ctxDir, "app/lib/util.js"), "ignored change");
    expect(await checksumOf(["app"])).toBe(before);
  });

  it("changes when a selected file changes, even with the same size and mtime", async () => {
    await makeTree(ctxDir, tree);
    const file = path.join(ctxDir, "app/main.js");
    await utimes(file, 1_500_000_000, 1_500_000_000);
    await sleep(PAST_RACY_WINDOW_MS);
    const cache = path.join(scratch, "state", "checksums.json");
    const first = await openContext({ cache });
    const before = await first.checksum(await first.select(["app"]));
    await first.close();

    await writeFile(file, "MAIN"); // same size
    await utimes(file, 1_500_000_000, 1_500_000_000); // same mtime
    const second = await openContext({ cache });
    const after = await second.checksum(await second.select(["app"]));
    expect(after).not.toBe(before);
    expect(second.counters.filesHashed).toBe(1);
    await second.close();

    // Replaced by a new inode with the same size and mtime.
    const replacement = path.join(ctxDir, "app/.main.js.new");
    await writeFile(replacement, "main");
    await utimes(replacement, 1_500_000_000, 1_500_000_000);
    await rename(replacement, file);
    const third = await openContext({ cache });
    expect(await third.checksum(await third.select(["app"]))).toBe(before);
    expect(third.counters.filesHashed).toBe(1);
  });

  it("changes with the mode unless ignoreMode, with the owner unless ignoreOwner", async () => {
    await makeTree(ctxDir, tree);
    const file = path.join(ctxDir, "app/main.js");
    const base = await checksumOf(["app"]);
    const baseNoMode = await checksumOf(["app"], {}, { ignoreMode: true });
    const baseNoOwner = await checksumOf(["app"], {}, { ignoreOwner: true });
    const mode = (await stat(file)).mode;
    await chmod(file, 0o755);
    expect(await checksumOf(["app"])).not.toBe(base);
    expect(await checksumOf(["app"], {}, { ignoreMode: true })).toBe(baseNoMode);
    await chmod(file, mode & 0o7777);
    expect(await checksumOf(["app"])).toBe(base);

    await chown(file, 1234, 5678);
    expect(await checksumOf(["app"])).not.toBe(base);
    expect(await checksumOf(["app"], {}, { ignoreOwner: true })).toBe(baseNoOwner);
    await lchown(path.join(ctxDir, "app/link"), 42, 42);
    expect(await checksumOf(["app"], {}, { ignoreOwner: true })).toBe(baseNoOwner);
  });

  it("changes with a symlink target, a file's name, and the set of files", async () => {
    await makeTree(ctxDir, tree);
    const base = await checksumOf(["app"]);
    await rm(path.join(ctxDir, "app/link"));
    await symlink("lib/util.js", path.join(ctxDir, "app/link"));
    const relinked = await checksumOf(["app"]);
    expect(relinked).not.toBe(base);
    await rename(path.join(ctxDir, "app/lib/util.js"), path.join(ctxDir, "app/lib/util2.js"));
    expect(await checksumOf(["app"])).not.toBe(relinked);
    await writeFile(path.join(ctxDir, "app/lib/extra"), "");
    const withExtra = await checksumOf(["app"]);
    await mkdir(path.join(ctxDir, "app/lib/empty"));
    expect(await checksumOf(["app"])).not.toBe(withExtra);
  });

  it("depends on which sources matched", async () => {
    await makeTree(ctxDir, { "a.txt": "same", "b.txt": "same" });
    expect(await checksumOf(["a.txt"])).not.toBe(await checksumOf(["b.txt"]));
    expect(await checksumOf(["*.txt"])).not.toBe(await checksumOf(["a.txt"]));
    await writeFile(path.join(ctxDir, "c.txt"), "new match");
    const context = await openContext();
    const selection = await context.select(["*.txt"]);
    expect(sources(selection)).toEqual(["a.txt", "b.txt", "c.txt"]);
  });

  it("persists file digests across opens and reuses them", async () => {
    await makeTree(ctxDir, tree);
    await sleep(PAST_RACY_WINDOW_MS);
    const cache = path.join(scratch, "state", "context-checksums.json");
    const cold = await openContext({ cache });
    const first = await cold.checksum(await cold.select(["."]));
    expect(cold.counters).toMatchObject({ filesHashed: 3, cacheHits: 0 });
    // The same file twice in one session is hashed once.
    await cold.checksum(await cold.select(["app/main.js"]));
    expect(cold.counters).toMatchObject({ filesHashed: 3, cacheHits: 1 });
    await cold.close();

    const warm = await openContext({ cache });
    expect(await warm.checksum(await warm.select(["."]))).toBe(first);
    expect(warm.counters).toMatchObject({ filesHashed: 0, bytesHashed: 0, cacheHits: 3 });
    await warm.close();

    // A context without a cache path keeps nothing.
    const memoryOnly = await openContext();
    await memoryOnly.checksum(await memoryOnly.select(["."]));
    await memoryOnly.close();
    expect(memoryOnly.counters.filesHashed).toBe(3);
  });

  it("ignores a corrupt or foreign cache file and replaces it", async () => {
    await makeTree(ctxDir, tree);
    await sleep(PAST_RACY_WINDOW_MS);
    const cache = path.join(scratch, "checksums.json");
    for (const junk of ["{not json", JSON.stringify({ format: "other", version: 1, entries: [] }), "[]"]) {
      await writeFile(cache, junk);
      const context = await openContext({ cache });
      await context.checksum(await context.select(["app"]));
      expect(context.counters.filesHashed).toBe(2);
      await context.close();
      const again = await openContext({ cache });
      await again.checksum(await again.select(["app"]));
      expect(again.counters.filesHashed).toBe(0);
    }
  });
});

describe("LocalContext: a 10,000-file context", () => {
  it("warm checksums read no file contents", async () => {
    const files = 10_000;
    for (let d = 0; d < 100; d++) {
      const dir = path.join(ctxDir, "src", `pkg${d}`);
      await mkdir(dir, { recursive: true });
      await Promise.all(Array.from({ length: files / 100 }, (_, i) => writeFile(path.join(dir, `file${i}.ts`), `export const v${d}_${i} = ${i};\n`)));
    }
    await sleep(PAST_RACY_WINDOW_MS);
    const cache = path.join(scratch, "state", "checksums.json");

    const cold = await openContext({ cache });
    const coldStart = performance.now();
    const coldSum = await cold.checksum(await cold.select(["."]));
    const coldMs = performance.now() - coldStart;
    expect(cold.counters.filesHashed).toBe(files);
    await cold.close();

    const warm = await openContext({ cache });
    const warmStart = performance.now();
    const selection = await warm.select(["."]);
    const warmSum = await warm.checksum(selection);
    const warmMs = performance.now() - warmStart;
    expect(selection.entries[0]!.children).toHaveLength(files + 101);
    expect(warmSum).toBe(coldSum);
    expect(warm.counters).toMatchObject({ filesHashed: 0, bytesHashed: 0, cacheHits: files });
    await warm.close();

    // One edit: one file read.
    await writeFile(path.join(ctxDir, "src/pkg7/file7.ts"), "edited\n");
    const edited = await openContext({ cache });
    expect(await edited.checksum(await edited.select(["."]))).not.toBe(coldSum);
    expect(edited.counters.filesHashed).toBe(1);
    console.log(`10,000 files: cold select+checksum ${coldMs.toFixed(0)} ms, warm ${warmMs.toFixed(0)} ms`);
  });
});

describe("safeJoin", () => {
  it("never leaves the root", () => {
    expect(safeJoin("/ctx", "a/b")).toBe("/ctx/a/b");
    expect(safeJoin("/ctx", "/a/../b")).toBe("/ctx/b");
    expect(safeJoin("/ctx", "../../etc/passwd")).toBe("/ctx/etc/passwd");
    expect(safeJoin("/ctx/", "..")).toBe("/ctx");
    expect(safeJoin("/ctx", "")).toBe("/ctx");
    expect(safeJoin("/", "../x")).toBe("/x");
  });
});

describe("LocalContext.open and Dockerfile helpers", () => {
  it("rejects a missing context and a file as context", async () => {
    await expect(openContext({ dir: path.join(scratch, "missing") })).rejects.toMatchObject({ code: "CONTEXT_NOT_FOUND" });
    await writeFile(path.join(scratch, "file"), "x");
    await expect(openContext({ dir: path.join(scratch, "file") })).rejects.toMatchObject({ code: "CONTEXT_NOT_FOUND" });
  });

  it("uses the real path of a symlinked context", async () => {
    await makeTree(ctxDir, { "a": "a" });
    const alias = path.join(scratch, "alias");
    await symlink(ctxDir, alias);
    const context = await openContext({ dir: alias });
    expect(context.dir).toBe(ctxDir);
    expect((await context.select(["a"])).entries[0]!.hostPath).toBe(path.join(ctxDir, "a"));
  });

  it("finds the Dockerfile like the docker CLI", async () => {
    await expect(readDockerfile(ctxDir)).rejects.toMatchObject({ code: "DOCKERFILE_NOT_FOUND" });
    await writeFile(path.join(ctxDir, "dockerfile"), "FROM lower\n");
    expect(await readDockerfile(ctxDir)).toEqual({ path: path.join(ctxDir, "dockerfile"), text: "FROM lower\n" });
    await writeFile(path.join(ctxDir, "Dockerfile"), "FROM upper\n");
    expect((await readDockerfile(ctxDir)).text).toBe("FROM upper\n");
    expect(await resolveDockerfilePath(ctxDir, path.join(scratch, "x.Dockerfile"))).toBe(path.join(scratch, "x.Dockerfile"));
  });
});
