/**
 * Named network namespaces, made as `ip netns add` makes them: an empty file
 * with the namespace (/proc/<pid>/ns/net) bind-mounted on it, in a directory
 * that is a shared mount point of its own so that the bind mounts propagate
 * into (and their removal out of) mount namespaces created meanwhile.
 */
import { existsSync, readFileSync } from "node:fs";
import { mkdir, open, rm, unlink } from "node:fs/promises";
import { NetworkError, errnoCode } from "./errors.ts";
import { runProgram } from "./programs.ts";

async function run(command: string, args: string[]): Promise<{ ok: boolean; output: string }> {
  const result = await runProgram(command, args);
  const ok = result.code === 0 && !result.error;
  return { ok, output: `${result.stdout}${result.stderr}`.trim() || (ok ? "" : (result.error?.message ?? `${command} failed (exit status ${result.code ?? result.signal})`)) };
}

/** Mount points (field 5 of mountinfo, with its octal escapes decoded). */
function mountPoints(): Set<string> {
  const points = new Set<string>();
  let text: string;
  try {
    text = readFileSync("/proc/self/mountinfo", "utf8");
  } catch {
    return points;
  }
  for (const line of text.split("\n")) {
    const field = line.split(" ")[4];
    if (field) points.add(field.replace(/\\([0-7]{3})/g, (_, octal: string) => String.fromCharCode(parseInt(octal, 8))));
  }
  return points;
}

export function isMountPoint(path: string): boolean {
  return mountPoints().has(path);
}

const preparedDirs = new Set<string>();

/** Creates `dir` and makes it a shared mount point, once per process (callers hold the network lock). */
export async function prepareNetnsDir(dir: string): Promise<void> {
  if (preparedDirs.has(dir)) return;
  await mkdir(dir, { recursive: true, mode: 0o755 });
  if (!isMountPoint(dir)) {
    const bind = await run("mount", ["--bind", dir, dir]);
    if (!bind.ok) throw new NetworkError("NETNS_FAILED", `cannot bind-mount ${dir} onto itself: ${bind.output}`, { hint: "network namespaces need root" });
  }
  const shared = await run("mount", ["--make-shared", dir]);
  if (!shared.ok) throw new NetworkError("NETNS_FAILED", `cannot make ${dir} a shared mount: ${shared.output}`, { hint: "network namespaces need root" });
  preparedDirs.add(dir);
}

/** Creates a new network namespace held by the file `path` (which must not exist), with `lo` up. */
export async function createNetns(path: string): Promise<void> {
  try {
    const handle = await open(path, "wx", 0o444);
    await handle.close();
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
  for (let i = 0; i < 8 && isMountPoint(path); i++) {
    const unmounted = await run("umount", ["--lazy", path]);
    if (!unmounted.ok && isMountPoint(path)) {
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
