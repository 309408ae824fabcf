/**
 * A private docker daemon for the tests (an external validator) and the benches (BuildKit):
 * Debian's dockerd 20.10 with its data root, exec root, pid file, socket and log under one
 * directory, no iptables rules and no forwarding, so that it leaves the machine as it found it.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { closeSync, openSync } from "node:fs";
import { mkdir, readFile, rm } from "node:fs/promises";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";

/** Debian's client: it speaks the 20.10 daemon's API and has BuildKit built in (a newer docker on PATH may need buildx). */
export const DEBIAN_DOCKER = "/usr/bin/docker";
export const DOCKERD = "/usr/sbin/dockerd";

export interface PrivateDockerd {
  /** For DOCKER_HOST. */
  host: string;
  dataRoot: string;
  logFile: string;
  /** SIGTERM, SIGKILL to its process group (dockerd and its containerd) after 30 s; then unmounts and removes its directory. */
  stop(): Promise<void>;
}

/**
 * Starts dockerd with everything under `dir` (keep it short: a unix socket's path must fit
 * in 108 bytes) and waits up to 60 s for `docker info`. `bridge`: an existing bridge for
 * containers, else none at all. Throws with the end of dockerd's log if it does not start.
 */
export async function startPrivateDockerd(dir: string, options: { bridge?: string } = {}): Promise<PrivateDockerd> {
  await mkdir(dir, { recursive: true });
  const host = `unix://${join(dir, "docker.sock")}`;
  const dataRoot = join(dir, "data");
  const logFile = join(dir, "dockerd.log");
  const args = ["--data-root", dataRoot, "--exec-root", join(dir, "exec"), "--pidfile", join(dir, "dockerd.pid"), "-H", host];
  args.push(`--bridge=${options.bridge ?? "none"}`, "--iptables=false", "--ip-masq=false", "--ip-forward=false");
  const fd = openSync(logFile, "a");
  const child = spawn(DOCKERD, args, { stdio: ["ignore", fd, fd], detached: true });
  closeSync(fd);
  let exited = false;
  child.on("exit", () => (exited = true));
  child.on("error", () => (exited = true));
  const stop = () => stopDaemon(child, dir);
  for (let waited = 0; waited < 60_000 && !exited; waited += 250) {
    if (await answers(host)) return { host, dataRoot, logFile, stop };
    await sleep(250);
  }
  const tail = (await readFile(logFile, "utf8").catch(() => "")).trim().split("\n").slice(-10).join("\n");
  await stop();
  throw new Error(`dockerd did not start${exited ? "" : " within 60 s"}; the end of its log:\n${tail}`);
}

/** Whether `docker info` succeeds against `host` (DOCKER_HOST undefined: the default daemon). */
export function answers(host: string | undefined): Promise<boolean> {
  return new Promise((resolve) => {
    const env = { ...process.env, ...(host === undefined ? {} : { DOCKER_HOST: host }) };
    const info = spawn(DEBIAN_DOCKER, ["info"], { env, stdio: "ignore", timeout: 10_000 });
    info.once("error", () => resolve(false));
    info.once("exit", (code) => resolve(code === 0));
  });
}

async function stopDaemon(child: ChildProcess, dir: string): Promise<void> {
  if (child.exitCode === null && child.signalCode === null) {
    const exited = new Promise((resolve) => child.once("exit", resolve));
    child.kill("SIGTERM");
    const timer = setTimeout(() => {
      try {
        process.kill(-(child.pid as number), "SIGKILL");
      } catch {
        // already gone
      }
    }, 30_000);
    await exited;
    clearTimeout(timer);
  }
  await unmountUnder(dir);
  await rm(dir, { recursive: true, force: true }).catch(() => undefined);
}

/** dockerd bind-mounts its data root onto itself; a daemon that died early leaves that behind. Deepest first. */
async function unmountUnder(dir: string): Promise<void> {
  const mountInfo = await readFile("/proc/self/mountinfo", "utf8").catch(() => "");
  // The fifth field is the mount point, with spaces and the like written as octal escapes (\040).
  const points = mountInfo
    .split("\n")
    .map((line) => line.split(" ")[4]?.replace(/\\([0-7]{3})/g, (_, octal: string) => String.fromCharCode(parseInt(octal, 8))))
    .filter((point): point is string => point !== undefined && (point === dir || point.startsWith(`${dir}/`)));
  for (const point of points.sort((a, b) => b.length - a.length)) {
    await new Promise((resolve) => spawn("umount", [point], { stdio: "ignore" }).once("exit", resolve).once("error", resolve));
  }
}
