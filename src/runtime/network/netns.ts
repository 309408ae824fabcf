/**
 * Named network namespaces, made as `ip netns add` makes them: an empty file
 * with the namespace (/proc/<pid>/ns/net) bind-mounted on it, in a directory
 * that is a shared mount point of its own so that the bind mounts propagate
 * into (and their removal out of) mount namespaces created meanwhile.
 */
import { closeSync, existsSync, openSync, readFileSync, statSync } from "node:fs";
import { mkdir, rm, unlink } from "node:fs/promises";
import { dirname } from "node:path";
import { NetworkError, errnoCode } from "./errors.ts";
import { programPath, runProgram } from "./programs.ts";

async function run(command: string, args: string[]): Promise<{ ok: boolean; output: string }> {
  // util-linux and iproute2 need nothing of the environment but PATH (unshare runs ip through it)
  const result = await runProgram(command, args, { env: { PATH: programPath() } });
  const ok = result.code === 0 && !result.error;
  return { ok, output: `${result.stdout}${result.stderr}`.trim() || (ok ? "" : (result.error?.message ?? `${command} failed (exit status ${result.code ?? result.signal})`)) };
}

/** Mount points (field 5 of mountinfo, with its octal escapes decoded) → whether the last mount there is shared. */
function mountPoints(): Map<string, boolean> {
  const points = new Map<string, boolean>();
  let text: string;
  try {
    text = readFileSync("/proc/self/mountinfo", "utf8");
  } catch {
    return points;
  }
  for (const line of text.split("\n")) {
    const fields = line.split(" ");
    const point = fields[4];
    if (!point) continue;
    // optional fields (shared:N, master:N...) run from the 7th to the "-"
    const optional = fields.slice(6, fields.indexOf("-", 6));
    points.set(
      point.replace(/\\([0-7]{3})/g, (_, octal: string) => String.fromCharCode(parseInt(octal, 8))),
      optional.some((field) => field.startsWith("shared:")),
    );
  }
  return points;
}

export function isMountPoint(path: string): boolean {
  return mountPoints().has(path);
}

/**
 * Whether a namespace file holds its namespace: the mount on it (nsfs) has
 * another device than its directory. Two stat calls instead of reading
 * mountinfo, asked at every release.
 */
export function holdsNamespace(path: string): boolean {
  try {
    return statSync(path).dev !== statSync(dirname(path)).dev;
  } catch {
    return false;
  }
}

const preparedDirs = new Set<string>();

/** Creates `dir` and makes it a shared mount point, once per process (callers hold the network lock). */
export async function prepareNetnsDir(dir: string): Promise<void> {
  if (preparedDirs.has(dir)) return;
  await mkdir(dir, { recursive: true, mode: 0o755 });
  // what an earlier process did stays until the next reboot: nothing to run then
  const shared = mountPoints().get(dir);
  if (shared === undefined) {
    const bind = await run("mount", ["--bind", dir, dir]);
    if (!bind.ok) throw new NetworkError("NETNS_FAILED", `cannot bind-mount ${dir} onto itself: ${bind.output}`, { hint: "network namespaces need root" });
  }
  if (shared !== true) {
    const made = await run("mount", ["--make-shared", dir]);
    if (!made.ok) throw new NetworkError("NETNS_FAILED", `cannot make ${dir} a shared mount: ${made.output}`, { hint: "network namespaces need root" });
  }
  preparedDirs.add(dir);
}

/** Creates a new network namespace held by the file `path` (which must not exist), with `lo` up. */
export async function createNetns(path: string): Promise<void> {
  try {
    closeSync(openSync(path, "wx", 0o444));
  } catch (error) {
    if (errnoCode(error) === "EEXIST") {
      throw new NetworkError("ALREADY_ATTACHED", `the network namespace ${path} exists already`, {
        hint: "give each attachment its own id; a leftover of a crash is removed by the next clean-up",
      });
    }
    throw new NetworkError("NETNS_FAILED", `cannot create ${path}: ${(error as Error).message}`, { cause: error });
  }
  // util-linux's unshare bind-mounts the new namespace on the file, as `ip netns add` does,
  // and runs `ip` inside it to bring lo up (no CNI loopback plugin run)
  const made = await run("unshare", [`--net=${path}`, "ip", "link", "set", "lo", "up"]);
  if (!made.ok) {
    await removeNetns(path).catch(() => rm(path, { force: true }));
    throw new NetworkError("NETNS_FAILED", `cannot create the network namespace ${path}: ${made.output}`, {
      hint: "network namespaces need root, util-linux's unshare and iproute2 (apt-get install util-linux iproute2)",
    });
  }
}

/** Unmounts and removes a namespace file; nothing to do when it is gone. */
export async function removeNetns(path: string): Promise<void> {
  // a file can carry several stacked mounts (two racing creators): unmount them all
  let mounted = holdsNamespace(path);
  for (let i = 0; i < 8 && mounted; i++) {
    const unmounted = await run("umount", ["--lazy", path]);
    mounted = holdsNamespace(path);
    if (!unmounted.ok && mounted) {
      throw new NetworkError("NETNS_FAILED", `cannot unmount the network namespace ${path}: ${unmounted.output}`);
    }
  }
  try {
    await unlink(path);
  } catch (error) {
    if (errnoCode(error) === "ENOENT") return;
    throw new NetworkError("NETNS_FAILED", `cannot remove ${path}: ${(error as Error).message}`, { cause: error });
  }
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * Waits until the kernel has deleted these host-side interfaces (veth ends
 * whose peer was in a namespace that is gone: the kernel removes them
 * shortly after the namespace). One still there after `timeoutMs` (the
 * namespace is held by some process) is deleted by hand, so that no veth of
 * a released attachment stays on the bridge.
 */
export async function awaitVethsGone(names: readonly string[], timeoutMs = 2000): Promise<void> {
  const exists = (name: string) => existsSync(`/sys/class/net/${name}`);
  const deadline = Date.now() + timeoutMs;
  let delay = 1;
  while (names.some(exists) && Date.now() < deadline) {
    await sleep(delay);
    delay = Math.min(delay * 2, 20);
  }
  for (const name of names.filter(exists)) {
    const deleted = await run("ip", ["link", "delete", name]);
    if (!deleted.ok && exists(name)) throw new NetworkError("NETNS_FAILED", `cannot delete the interface ${name}: ${deleted.output}`);
  }
}
