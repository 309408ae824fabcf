/**
 * Build contexts that are not a local directory, as `docker build` accepts them:
 * `-` (a tar archive on standard input, possibly compressed), an http(s) URL of a
 * tarball, or a git URL (`URL#ref:subdir`). Each is materialized into a directory that
 * a LocalContext then reads. Input that is not an archive (standard input or a URL) is
 * taken as a Dockerfile, and the context holds only it, as the docker CLI does.
 */
import { createWriteStream } from "node:fs";
import { mkdir, rename, stat } from "node:fs/promises";
import { dirname, join, posix } from "node:path";
import type { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { detectArchive, unpackArchive } from "../solver/ops/unpack-archive.ts";
import { checkoutGit, isGitUrl, parseGitUrl } from "../solver/sources/git.ts";
import { fetchToFile, redactUrl, type FetchOptions } from "../solver/sources/http.ts";
import { UserError } from "../user-error.ts";

export type RemoteContextKind = "stdin" | "url" | "git";

/** What kind of remote context `spec` names, or undefined for a local directory. */
export function remoteContextKind(spec: string): RemoteContextKind | undefined {
  if (spec === "-") return "stdin";
  if (isGitUrl(spec)) return "git";
  if (/^https?:\/\//i.test(spec)) return "url";
  return undefined;
}

export function isRemoteContext(spec: string): boolean {
  return remoteContextKind(spec) !== undefined;
}

export interface MaterializedContext {
  /** The context directory (inside tmpDir). */
  dir: string;
  kind: RemoteContextKind;
  /** The input was a Dockerfile rather than an archive: the context holds only that file. */
  dockerfileOnly: boolean;
}

export interface MaterializeOptions {
  /** Where `-` reads from (default: process.stdin). */
  stdin?: Readable;
  /** The name a Dockerfile given instead of an archive gets in the context (default "Dockerfile"). */
  dockerfileName?: string;
  /** Download tuning for URL contexts. */
  http?: Pick<FetchOptions, "retries" | "retryDelayMs" | "connectTimeoutMs" | "headersTimeoutMs" | "bodyTimeoutMs">;
}

/**
 * Materializes a remote context into `tmpDir` (created; the caller removes it afterwards)
 * and returns the directory to open as the build context.
 */
export async function materializeContext(spec: string, tmpDir: string, signal: AbortSignal, options: MaterializeOptions = {}): Promise<MaterializedContext> {
  const kind = remoteContextKind(spec);
  if (kind === undefined) throw new UserError(`build context ${JSON.stringify(spec)} is not a remote context`, "pass -, an http(s) URL or a git URL");
  await mkdir(tmpDir, { recursive: true });
  if (kind === "git") {
    const { dir } = await checkoutGit(parseGitUrl(spec), join(tmpDir, "repository"), { keepGitDir: false, signal });
    return { dir, kind, dockerfileOnly: false };
  }
  const input = join(tmpDir, "input");
  if (kind === "stdin") {
    const stdin = options.stdin ?? process.stdin;
    if ((stdin as Readable & { isTTY?: boolean }).isTTY) {
      throw new UserError("the build context is - but standard input is a terminal", "pipe a tar archive (or a Dockerfile) in: tsbuild build - < context.tar.gz");
    }
    await pipeline(stdin, createWriteStream(input, { mode: 0o600 }), { signal });
    if ((await stat(input)).size === 0) {
      throw new UserError("the build context is - but standard input is empty", "pipe a tar archive (or a Dockerfile) in: tsbuild build - < context.tar.gz");
    }
  } else {
    const result = await fetchToFile(spec, input, { signal, ...(options.http ?? {}) });
    if (result.status !== "downloaded") throw new Error(`unexpected answer to the download of ${redactUrl(spec)}`);
  }
  const unpacked = await unpackInput(input, join(tmpDir, "context"), options.dockerfileName ?? "Dockerfile", kind === "stdin" ? "standard input" : redactUrl(spec));
  return { ...unpacked, kind };
}

/** Unpacks the archive into `dir`, or, when the input is not an archive, makes it the context's only file: the Dockerfile. */
async function unpackInput(input: string, dir: string, dockerfileName: string, name: string): Promise<{ dir: string; dockerfileOnly: boolean }> {
  const compression = await detectArchive(input);
  if (compression !== undefined) {
    await unpackArchive(input, dir, { compression, name });
    return { dir, dockerfileOnly: false };
  }
  const relative = posix.normalize(`/${dockerfileName}`).slice(1);
  if (relative === "" || relative.endsWith("/")) throw new UserError(`the Dockerfile name ${JSON.stringify(dockerfileName)} is not a file name`);
  await mkdir(dirname(join(dir, relative)), { recursive: true });
  await rename(input, join(dir, relative));
  return { dir, dockerfileOnly: true };
}
