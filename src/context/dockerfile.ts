/**
 * Locating and reading the Dockerfile of a local build, as the docker CLI
 * does: `-f PATH` is relative to the working directory; without it
 * `<context>/Dockerfile`, falling back to `<context>/dockerfile`.
 */
import { readFile, stat } from "node:fs/promises";
import path from "node:path";
import { ContextError, errnoCode, isNotFound } from "./errors.ts";

export const DEFAULT_DOCKERFILE_NAME = "Dockerfile";

/** The absolute path of the Dockerfile to use (it is not required to exist unless it is the default). */
export async function resolveDockerfilePath(contextDir: string, dockerfilePath?: string): Promise<string> {
  if (dockerfilePath !== undefined && dockerfilePath !== "") return path.resolve(dockerfilePath);
  const preferred = path.resolve(contextDir, DEFAULT_DOCKERFILE_NAME);
  if (await isFile(preferred)) return preferred;
  const lower = path.resolve(contextDir, DEFAULT_DOCKERFILE_NAME.toLowerCase());
  return (await isFile(lower)) ? lower : preferred;
}

/** Reads the Dockerfile of a local build; errors are ContextErrors that say which file and what to do. */
export async function readDockerfile(contextDir: string, dockerfilePath?: string): Promise<{ path: string; text: string }> {
  const file = await resolveDockerfilePath(contextDir, dockerfilePath);
  try {
    return { path: file, text: await readFile(file, "utf8") };
  } catch (error) {
    const code = errnoCode(error);
    const why = isNotFound(error) ? "no such file" : code === "EISDIR" ? "it is a directory" : code === "EACCES" ? "permission denied" : String(error);
    throw new ContextError("DOCKERFILE_NOT_FOUND", `failed to read Dockerfile ${file}: ${why}`, {
      hint: dockerfilePath === undefined ? `put a Dockerfile in ${path.resolve(contextDir)} or point to one with -f PATH` : "check the path given with -f",
      cause: error,
    });
  }
}

async function isFile(candidate: string): Promise<boolean> {
  try {
    return (await stat(candidate)).isFile();
  } catch {
    return false;
  }
}
