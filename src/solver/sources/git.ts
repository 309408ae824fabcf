/**
 * ADD of a git repository (BuildKit's git source) and git build contexts: `URL#ref:subdir`,
 * ref a branch, a tag or a commit (default: the remote's HEAD), subdir a directory whose
 * contents become the result. The ref is resolved with `git ls-remote` (so an unchanged
 * commit is a cache hit without fetching), then fetched shallowly and checked out; `.git`
 * is removed unless asked to keep it. Needs the `git` command.
 */
import { lstat, readdir, realpath, rename, rm } from "node:fs/promises";
import { join, posix, sep } from "node:path";
import { canonicalJson, sha256, type SourceOp } from "../../llb/index.ts";
import { UserError } from "../../user-error.ts";
import type { LayerInfo, StateRoot } from "../store/index.ts";
import { CommandFailedError, MissingCommandError, runCommand } from "./command.ts";
import type { RemoteSourceOptions } from "./index.ts";

export interface GitSpec {
  /** The repository URL, without the fragment. */
  remote: string;
  /** Branch, tag, full ref or commit; "" for the remote's default branch. */
  ref: string;
  /** A directory in the repository ("" for the root), relative, normalized. */
  subdir: string;
}

/** Docker's rule for a git URL: `git://`, `git@host:…`, `ssh://`, or an http(s) URL ending in `.git` (before any `#fragment`). */
export function isGitUrl(spec: string): boolean {
  return /^git@|^git:\/\/|^ssh:\/\//.test(spec) || (/^https?:\/\//i.test(spec) && /\.git(#.*)?$/.test(spec));
}

/** Splits `URL#ref:subdir`. */
export function parseGitUrl(spec: string): GitSpec {
  const hash = spec.indexOf("#");
  const remote = hash < 0 ? spec : spec.slice(0, hash);
  const fragment = hash < 0 ? "" : spec.slice(hash + 1);
  const colon = fragment.indexOf(":");
  const ref = colon < 0 ? fragment : fragment.slice(0, colon);
  const subdirText = colon < 0 ? "" : fragment.slice(colon + 1);
  if (remote === "") throw new UserError(`git source ${JSON.stringify(spec)}: the repository URL is empty`, "write URL#ref:subdir");
  if (remote.startsWith("-") || ref.startsWith("-")) throw new UserError(`git source ${JSON.stringify(spec)}: a URL or ref cannot start with "-"`);
  const subdir = posix.normalize(`/${subdirText}`).slice(1).replace(/\/$/, "");
  if (subdirText.split("/").includes("..")) {
    throw new UserError(`git source ${JSON.stringify(spec)}: the subdirectory ${JSON.stringify(subdirText)} leaves the repository`, "name a directory inside the repository");
  }
  return { remote, ref, subdir };
}

/** The source op identifier is `git://` followed by what the Dockerfile wrote (itself possibly `git://…`, `git@…` or `https://….git`). */
export function specOfIdentifier(identifier: string): string {
  const rest = identifier.replace(/^git:\/\//, "");
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(rest) || /^[^/:@]+@[^/:]+:/.test(rest)) return rest;
  return identifier; // a plain git:// URL
}

/** The URL without any user:password, for messages and cache keys. */
export function redactGitUrl(remote: string): string {
  return remote.replace(/^([a-z][a-z0-9+.-]*:\/\/)[^@/]*@/i, "$1");
}

interface ResolvedRef {
  /** The commit, when known without fetching (a short commit id needs a fetch). */
  commit: string | undefined;
  /** What to fetch. */
  kind: "branch" | "tag" | "ref" | "commit" | "head";
  /** refs/heads/x, refs/tags/x, another full ref, or the commit as written. */
  name: string;
}

const GIT_ENV = { GIT_TERMINAL_PROMPT: "0", LC_ALL: "C" };
const FULL_COMMIT = /^[0-9a-f]{40}$|^[0-9a-f]{64}$/;

function git(args: string[], options: { cwd?: string; signal?: AbortSignal } = {}): Promise<string> {
  return runCommand("git", ["-c", "advice.detachedHead=false", "-c", "init.defaultBranch=main", ...args], {
    purpose: "a git source",
    env: { ...process.env, ...GIT_ENV },
    ...options,
  });
}

function describeGitError(spec: GitSpec, error: unknown, what: string): unknown {
  if (error instanceof MissingCommandError || error instanceof UserError) return error;
  if (error instanceof CommandFailedError) {
    const detail = redactGitUrl(error.stderr.split("\n").filter((line) => line.trim() !== "").slice(-3).join("; ")) || `exit code ${error.exitCode}`;
    return new UserError(`${what} of git repository ${redactGitUrl(spec.remote)} failed: ${detail}`, "check the URL, the ref and that you may read the repository");
  }
  return error;
}

/** Resolves the ref with `git ls-remote` (branches win over tags, as git checkout does). */
export async function resolveGitRef(spec: GitSpec, signal?: AbortSignal): Promise<ResolvedRef> {
  if (FULL_COMMIT.test(spec.ref)) return { commit: spec.ref, kind: "commit", name: spec.ref };
  const patterns = spec.ref === "" ? ["HEAD"] : [spec.ref, `${spec.ref}^{}`];
  let output: string;
  try {
    output = await git(["ls-remote", "--symref", spec.remote, ...patterns], signal ? { signal } : {});
  } catch (error) {
    throw describeGitError(spec, error, "listing the refs");
  }
  const refs = new Map<string, string>();
  let headTarget: string | undefined;
  for (const line of output.split("\n")) {
    const [left = "", right = ""] = line.split("\t");
    if (left.startsWith("ref: ")) {
      if (right === "HEAD") headTarget = left.slice("ref: ".length);
      continue;
    }
    if (left !== "" && right !== "") refs.set(right, left);
  }
  if (spec.ref === "") {
    const commit = refs.get("HEAD");
    if (headTarget?.startsWith("refs/heads/") && commit) return { commit, kind: "branch", name: headTarget };
    return { commit, kind: "head", name: "HEAD" };
  }
  const bare = spec.ref.replace(/^refs\/(heads|tags)\//, "");
  const exact = spec.ref.startsWith("refs/") ? refs.get(`${spec.ref}^{}`) ?? refs.get(spec.ref) : undefined;
  if (exact !== undefined) {
    const kind = spec.ref.startsWith("refs/heads/") ? "branch" : spec.ref.startsWith("refs/tags/") ? "tag" : "ref";
    return { commit: exact, kind, name: spec.ref };
  }
  const branch = refs.get(`refs/heads/${bare}`);
  if (branch !== undefined) return { commit: branch, kind: "branch", name: `refs/heads/${bare}` };
  const tag = refs.get(`refs/tags/${bare}^{}`) ?? refs.get(`refs/tags/${bare}`);
  if (tag !== undefined) return { commit: tag, kind: "tag", name: `refs/tags/${bare}` };
  if (/^[0-9a-f]{7,63}$/.test(spec.ref)) return { commit: undefined, kind: "commit", name: spec.ref };
  throw new UserError(`git repository ${redactGitUrl(spec.remote)} has no branch, tag or commit ${JSON.stringify(spec.ref)}`, "check the ref after # in the URL");
}

export interface CheckoutOptions {
  keepGitDir: boolean;
  signal?: AbortSignal;
  /** The ref as resolved already (saves a second ls-remote). */
  resolved?: ResolvedRef;
}

/**
 * Fetches the ref shallowly into `workDir` (which must not exist) and checks it out;
 * submodules too. Returns the commit and the directory that holds the result (the
 * subdirectory when one is asked for).
 */
export async function checkoutGit(spec: GitSpec, workDir: string, options: CheckoutOptions): Promise<{ commit: string; dir: string }> {
  const resolved = options.resolved ?? (await resolveGitRef(spec, options.signal));
  const run = (args: string[]) => git(args, { cwd: workDir, ...(options.signal ? { signal: options.signal } : {}) });
  try {
    await git(["init", "-q", workDir], options.signal ? { signal: options.signal } : {});
    await run(["remote", "add", "origin", spec.remote]);
    let target: string;
    switch (resolved.kind) {
      case "branch": {
        const branch = resolved.name.slice("refs/heads/".length);
        await run(["fetch", "-q", "--depth=1", "--no-tags", "origin", `+${resolved.name}:refs/remotes/origin/${branch}`]);
        await run(["checkout", "-q", "-B", branch, `refs/remotes/origin/${branch}`]);
        target = "HEAD";
        break;
      }
      case "tag":
      case "ref":
        await run(["fetch", "-q", "--depth=1", "--no-tags", "origin", `+${resolved.name}:${resolved.name}`]);
        target = `${resolved.name}^{commit}`;
        break;
      case "head":
        await run(["fetch", "-q", "--depth=1", "--no-tags", "origin", "HEAD"]);
        target = "FETCH_HEAD^{commit}";
        break;
      case "commit":
        target = await fetchCommit(run, resolved.name);
        break;
    }
    if (target !== "HEAD") await run(["checkout", "-q", "--detach", target]);
    const commit = (await run(["rev-parse", "HEAD"])).trim();
    if (resolved.commit !== undefined && commit !== resolved.commit) {
      throw new UserError(`git repository ${redactGitUrl(spec.remote)}: ${spec.ref || "HEAD"} moved to ${commit} while it was fetched (it was ${resolved.commit})`, "build again");
    }
    const hasSubmodules = await lstat(join(workDir, ".gitmodules")).then(
      () => true,
      () => false,
    );
    let submodules: string[] = [];
    if (hasSubmodules) {
      await run(["submodule", "update", "-q", "--init", "--recursive", "--depth=1"]);
      submodules = (await run(["submodule", "foreach", "--quiet", "--recursive", 'echo "$displaypath"'])).split("\n").filter((line) => line !== "");
    }
    if (!options.keepGitDir) {
      for (const path of submodules) await rm(join(workDir, path, ".git"), { recursive: true, force: true });
      await rm(join(workDir, ".git"), { recursive: true, force: true });
    }
    return { commit, dir: await subdirectory(spec, workDir, commit) };
  } catch (error) {
    throw describeGitError(spec, error, "fetching");
  }
}

/** Fetches one commit shallowly; servers that refuse unadvertised commits get a full fetch. */
async function fetchCommit(run: (args: string[]) => Promise<string>, commit: string): Promise<string> {
  if (FULL_COMMIT.test(commit)) {
    try {
      await run(["fetch", "-q", "--depth=1", "--no-tags", "origin", commit]);
      return commit;
    } catch (error) {
      if (!(error instanceof CommandFailedError)) throw error;
    }
  }
  await run(["fetch", "-q", "--tags", "origin", "+refs/heads/*:refs/remotes/origin/*"]);
  try {
    return (await run(["rev-parse", "--verify", "--quiet", `${commit}^{commit}`])).trim();
  } catch (error) {
    if (!(error instanceof CommandFailedError)) throw error;
    throw new UserError(`the git repository has no commit ${commit}`, "check the commit id after # in the URL");
  }
}

/** The real path of the asked subdirectory, which must be a directory inside the checkout. */
async function subdirectory(spec: GitSpec, workDir: string, commit: string): Promise<string> {
  const root = await realpath(workDir);
  if (spec.subdir === "") return root;
  const missing = () =>
    new UserError(`git repository ${redactGitUrl(spec.remote)} at ${commit.slice(0, 12)} has no directory ${JSON.stringify(spec.subdir)}`, "check the path after : in the URL's #ref:subdir");
  let path: string;
  try {
    path = await realpath(join(root, spec.subdir));
  } catch {
    throw missing();
  }
  if (path !== root && !path.startsWith(root + sep)) {
    throw new UserError(`git repository ${redactGitUrl(spec.remote)}: ${JSON.stringify(spec.subdir)} is a symbolic link that leaves the repository`);
  }
  if (!(await lstat(path)).isDirectory()) throw missing();
  return path;
}

/** Loads a `git://…` source op (ADD of a repository) into a layer. */
export async function loadGitSource(op: SourceOp, store: StateRoot, options: RemoteSourceOptions = {}): Promise<{ layers: LayerInfo[]; cacheKey: string }> {
  const spec = parseGitUrl(specOfIdentifier(op.identifier));
  const keepGitDir = op.attrs?.keepGitDir === "true";
  const layerIdOf = (commit: string) =>
    sha256(canonicalJson({ source: "git", remote: redactGitUrl(spec.remote), commit, subdir: spec.subdir, keepGitDir })).slice("sha256:".length);
  const resolved = await resolveGitRef(spec, options.signal);
  if (resolved.commit !== undefined) {
    const id = layerIdOf(resolved.commit);
    if (await store.hasLayer(id)) return { layers: [await store.layerInfo(id)], cacheKey: `sha256:${id}` };
  }
  const workDir = store.tempPath("git");
  try {
    const { commit, dir } = await checkoutGit(spec, workDir, { keepGitDir, resolved, ...(options.signal ? { signal: options.signal } : {}) });
    const id = layerIdOf(commit);
    const layer = await store.createLayer(id, async (fsDir) => {
      for (const name of await readdir(dir)) await rename(join(dir, name), join(fsDir, name));
    });
    return { layers: [layer], cacheKey: `sha256:${id}` };
  } finally {
    await rm(workDir, { recursive: true, force: true });
  }
}
