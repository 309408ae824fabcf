import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { mkdirSync, writeFileSync } from "node:fs";
import { createServer as createHttpServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import { createConnection, createServer as createNetServer } from "node:net";
import { dirname, join } from "node:path";
import { gzipSync } from "node:zlib";
import { pack as createPack, type Pack } from "tar-stream";
import { freshDirs } from "../../fresh-dir.ts";

export const repoRoot = join(import.meta.dirname, "..", "..", "..");
export const bin = join(repoRoot, "bin", "tsbuild.js");

/** A new empty directory, removed after the test file. */
export const freshDir = freshDirs("sources");

export function writeFiles(dir: string, files: Record<string, string>): string {
  for (const [path, content] of Object.entries(files)) {
    mkdirSync(dirname(join(dir, path)), { recursive: true });
    writeFileSync(join(dir, path), content);
  }
  return dir;
}

// --- tar archives ----------------------------------------------------------

export interface TarEntry {
  name: string;
  type?: "file" | "directory" | "symlink" | "link" | "fifo" | "character-device";
  content?: string | Buffer;
  linkname?: string;
  mode?: number;
  uid?: number;
  gid?: number;
  mtime?: Date;
  devmajor?: number;
  devminor?: number;
}

/** An uncompressed tar made with tar-stream (entries written exactly as given, even hostile names). */
export async function makeTar(entries: TarEntry[]): Promise<Buffer> {
  const pack: Pack = createPack();
  const chunks: Buffer[] = [];
  const done = new Promise<void>((resolve, reject) => {
    pack.on("data", (chunk: unknown) => chunks.push(chunk as Buffer));
    pack.on("end", () => resolve());
    pack.on("error", reject);
  });
  for (const entry of entries) {
    const type = entry.type ?? "file";
    const header = {
      name: entry.name,
      type,
      mode: entry.mode ?? (type === "directory" ? 0o755 : 0o644),
      uid: entry.uid ?? 0,
      gid: entry.gid ?? 0,
      mtime: entry.mtime ?? new Date("2020-01-02T03:04:05Z"),
      ...(entry.linkname !== undefined ? { linkname: entry.linkname } : {}),
      ...(entry.devmajor !== undefined ? { devmajor: entry.devmajor, devminor: entry.devminor ?? 0 } : {}),
    };
    await new Promise<void>((resolve, reject) => {
      const callback = (error?: Error | null) => (error ? reject(error) : resolve());
      if (type === "file") pack.entry(header, entry.content ?? "", callback);
      else pack.entry(header, callback);
    });
  }
  pack.finalize();
  await done;
  return Buffer.concat(chunks);
}

export type Compression = "uncompressed" | "gzip" | "bzip2" | "xz" | "zstd";

/** Compresses with zlib (gzip) or the real bzip2 / xz / zstd commands. */
export function compress(data: Buffer, compression: Compression): Buffer {
  if (compression === "uncompressed") return data;
  if (compression === "gzip") return gzipSync(data);
  const result = spawnSync(compression, compression === "zstd" ? ["-q", "-c"] : ["-c"], { input: data, maxBuffer: 64 * 1024 * 1024 });
  if (result.status !== 0) throw new Error(`${compression} failed: ${result.stderr.toString()}`);
  return result.stdout;
}

// --- git --------------------------------------------------------------------

export function git(cwd: string, ...args: string[]): string {
  const result = spawnSync("git", args, {
    cwd,
    encoding: "utf8",
    env: {
      ...process.env,
      GIT_AUTHOR_NAME: "t",
      GIT_AUTHOR_EMAIL: "t@example.com",
      GIT_COMMITTER_NAME: "t",
      GIT_COMMITTER_EMAIL: "t@example.com",
      GIT_CONFIG_NOSYSTEM: "1",
      HOME: cwd,
    },
  });
  if (result.status !== 0) throw new Error(`git ${args.join(" ")} failed: ${result.stderr}`);
  return result.stdout.trim();
}

export interface TestRepo {
  /** The bare repository (what clients fetch). */
  bare: string;
  /** A working clone that pushes to it. */
  work: string;
  /** Commit ids by name. */
  commits: { first: string; second: string; feature: string };
  /** Adds a commit on main with these files and pushes it; returns its id. */
  commit(files: Record<string, string>, message: string): string;
}

/**
 * A bare repository in `baseDir/name`: main has two commits (tag v1, annotated, on the
 * first), branch "feature" one more. Files: README, sub/inner.txt, sub/deeper/x.txt.
 */
export function makeRepo(baseDir: string, name = "repo.git"): TestRepo {
  const work = join(baseDir, `${name}-work`);
  const bare = join(baseDir, name);
  mkdirSync(work, { recursive: true });
  git(work, "init", "-q", "-b", "main");
  writeFiles(work, { README: "version 1\n", "sub/inner.txt": "inner 1\n", "sub/deeper/x.txt": "x\n" });
  git(work, "add", ".");
  git(work, "commit", "-q", "-m", "first");
  const first = git(work, "rev-parse", "HEAD");
  git(work, "tag", "-a", "v1", "-m", "version 1");
  writeFiles(work, { README: "version 2\n", "sub/inner.txt": "inner 2\n" });
  git(work, "commit", "-q", "-am", "second");
  const second = git(work, "rev-parse", "HEAD");
  git(work, "checkout", "-q", "-b", "feature");
  writeFiles(work, { "sub/feature.txt": "feature\n" });
  git(work, "add", ".");
  git(work, "commit", "-q", "-m", "feature");
  const feature = git(work, "rev-parse", "HEAD");
  git(work, "checkout", "-q", "main");
  git(baseDir, "clone", "-q", "--bare", work, bare);
  git(work, "remote", "add", "origin", bare);
  return {
    bare,
    work,
    commits: { first, second, feature },
    commit(files, message) {
      writeFiles(work, files);
      git(work, "add", ".");
      git(work, "commit", "-q", "-m", message);
      git(work, "push", "-q", "origin", "main");
      return git(work, "rev-parse", "HEAD");
    },
  };
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createNetServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const address = server.address();
      const port = typeof address === "object" && address ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

async function waitForPort(port: number, child: ChildProcess): Promise<void> {
  for (let attempt = 0; attempt < 100; attempt++) {
    if (child.exitCode !== null) throw new Error(`git daemon exited with ${child.exitCode}`);
    const open = await new Promise<boolean>((resolve) => {
      const socket = createConnection({ host: "127.0.0.1", port });
      socket.once("connect", () => {
        socket.destroy();
        resolve(true);
      });
      socket.once("error", () => resolve(false));
    });
    if (open) return;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  throw new Error(`git daemon did not listen on port ${port}`);
}

/** `git daemon` serving every repository under `baseDir` on a loopback port. Stop it with `stop()`. */
export async function startGitDaemon(baseDir: string): Promise<{ url: (name: string) => string; stop: () => Promise<void> }> {
  const port = await freePort();
  const child = spawn("git", ["daemon", "--reuseaddr", "--listen=127.0.0.1", `--port=${port}`, `--base-path=${baseDir}`, "--export-all", baseDir], {
    stdio: ["ignore", "ignore", "pipe"],
  });
  await waitForPort(port, child);
  return {
    url: (name) => `git://127.0.0.1:${port}/${name}`,
    stop: async () => {
      if (child.exitCode !== null) return;
      const exited = new Promise((resolve) => child.once("exit", resolve));
      child.kill();
      await exited;
    },
  };
}

/** git's smart HTTP protocol (`git http-backend` as a CGI) for every repository under `baseDir`, on a loopback port. */
export async function startGitHttpServer(baseDir: string): Promise<{ url: (name: string) => string; close: () => Promise<void> }> {
  const server: Server = createHttpServer((request, response) => {
    const url = new URL(request.url ?? "/", "http://localhost");
    const env: NodeJS.ProcessEnv = {
      ...process.env,
      GIT_PROJECT_ROOT: baseDir,
      GIT_HTTP_EXPORT_ALL: "1",
      PATH_INFO: decodeURIComponent(url.pathname),
      QUERY_STRING: url.search.slice(1),
      REQUEST_METHOD: request.method ?? "GET",
      CONTENT_TYPE: request.headers["content-type"] ?? "",
      REMOTE_ADDR: "127.0.0.1",
      ...(typeof request.headers["content-encoding"] === "string" ? { HTTP_CONTENT_ENCODING: request.headers["content-encoding"] } : {}),
      ...(typeof request.headers["git-protocol"] === "string" ? { GIT_PROTOCOL: request.headers["git-protocol"] } : {}),
    };
    const child = spawn("git", ["http-backend"], { env, stdio: ["pipe", "pipe", "ignore"] });
    request.pipe(child.stdin);
    let head = Buffer.alloc(0);
    let headersDone = false;
    child.stdout.on("data", (chunk: Buffer) => {
      if (headersDone) {
        response.write(chunk);
        return;
      }
      head = Buffer.concat([head, chunk]);
      const end = head.indexOf("\r\n\r\n");
      if (end < 0) return;
      headersDone = true;
      let status = 200;
      for (const line of head.subarray(0, end).toString("latin1").split("\r\n")) {
        const colon = line.indexOf(":");
        const name = line.slice(0, colon).trim();
        const value = line.slice(colon + 1).trim();
        if (name.toLowerCase() === "status") status = Number.parseInt(value, 10);
        else response.setHeader(name, value);
      }
      response.writeHead(status);
      response.write(head.subarray(end + 4));
    });
    child.stdout.on("end", () => response.end());
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const address = server.address();
  const port = typeof address === "object" && address ? address.port : 0;
  return {
    url: (name) => `http://127.0.0.1:${port}/${name}`,
    close: () =>
      new Promise((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

// --- http -------------------------------------------------------------------

export type Handler = (request: IncomingMessage, response: ServerResponse) => void;

export interface TestServer {
  url: (path: string) => string;
  /** Requests seen, with their conditional headers. */
  requests: { method: string; path: string; ifNoneMatch?: string; ifModifiedSince?: string }[];
  route(path: string, handler: Handler): void;
  close(): Promise<void>;
}

/** An http server on 127.0.0.1 with per-path handlers. */
export async function startHttpServer(): Promise<TestServer> {
  const routes = new Map<string, Handler>();
  const requests: TestServer["requests"] = [];
  const server: Server = createHttpServer((request, response) => {
    const path = (request.url ?? "/").split("?")[0] ?? "/";
    requests.push({
      method: request.method ?? "GET",
      path,
      ...(typeof request.headers["if-none-match"] === "string" ? { ifNoneMatch: request.headers["if-none-match"] } : {}),
      ...(typeof request.headers["if-modified-since"] === "string" ? { ifModifiedSince: request.headers["if-modified-since"] } : {}),
    });
    const handler = routes.get(path);
    if (!handler) {
      response.writeHead(404).end("not found");
      return;
    }
    handler(request, response);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const address = server.address();
  const port = typeof address === "object" && address ? address.port : 0;
  return {
    url: (path) => `http://127.0.0.1:${port}${path}`,
    requests,
    route: (path, handler) => routes.set(path, handler),
    close: () =>
      new Promise((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/** A static file with ETag / Last-Modified that answers conditional requests with 304. */
export function staticFile(file: { content: string | Buffer; etag?: string; lastModified?: string }): Handler {
  return (request, response) => {
    const headers: Record<string, string> = { "content-type": "application/octet-stream" };
    if (file.etag !== undefined) headers.etag = file.etag;
    if (file.lastModified !== undefined) headers["last-modified"] = file.lastModified;
    const ifNoneMatch = request.headers["if-none-match"];
    const ifModifiedSince = request.headers["if-modified-since"];
    if ((file.etag !== undefined && ifNoneMatch === file.etag) || (ifNoneMatch === undefined && file.lastModified !== undefined && ifModifiedSince === file.lastModified)) {
      response.writeHead(304, headers).end();
      return;
    }
    response.writeHead(200, headers).end(file.content);
  };
}

// --- the CLI ----------------------------------------------------------------

/** Runs `node bin/tsbuild.js ARGS` without blocking this process (test servers keep answering). */
export function runCli(args: string[], options: { input?: Buffer | string; env?: Record<string, string>; cwd?: string } = {}): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [bin, ...args], { cwd: options.cwd ?? repoRoot, env: { ...process.env, ...options.env }, stdio: ["pipe", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on("data", (chunk: Buffer) => (stderr += chunk.toString()));
    child.once("error", reject);
    child.once("close", (code) => resolve({ code, stdout, stderr }));
    child.stdin.on("error", () => undefined);
    child.stdin.end(options.input ?? "");
  });
}
