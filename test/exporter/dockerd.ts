/**
 * A docker daemon for the external-validator tests: the one already running if `docker info`
 * answers, else Debian's dockerd 20.10 started privately (its own data root, exec root, pid
 * file and socket under a temporary directory, no bridge, no iptables rules) and stopped again.
 */
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { closeSync, existsSync, mkdtempSync, openSync, readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";

/** Debian's client: it speaks the 20.10 daemon's API (a newer docker elsewhere on PATH may not). */
const DEBIAN_DOCKER = "/usr/bin/docker";
const DOCKERD = "/usr/sbin/dockerd";

export interface Docker {
  /** Runs the docker client; throws with its stderr when it fails. */
  run(args: readonly string[], options?: { input?: string }): string;
  /** How the daemon was found, for messages. */
  how: string;
  stop(): Promise<void>;
}

export async function startDocker(): Promise<Docker> {
  if (!existsSync(DEBIAN_DOCKER) || !existsSync(DOCKERD)) {
    throw new Error(`docker.io is not installed (no ${existsSync(DEBIAN_DOCKER) ? DOCKERD : DEBIAN_DOCKER}): apt-get install docker.io`);
  }
  const env = { ...process.env };
  if (spawnSync(DEBIAN_DOCKER, ["info"], { env, stdio: "ignore", timeout: 20_000 }).status === 0) {
    return { run: client(env), how: `the running daemon (${env.DOCKER_HOST ?? "unix:///var/run/docker.sock"})`, stop: async () => {} };
  }
  // A short path: a unix socket's path must fit in 108 bytes.
  const dir = mkdtempSync("/tmp/tsbuild-dockerd-");
  const host = `unix://${join(dir, "docker.sock")}`;
  const log = join(dir, "dockerd.log");
  const fd = openSync(log, "a");
  const args = [
    "--data-root",
    join(dir, "data"),
    "--exec-root",
    join(dir, "exec"),
    "--pidfile",
    join(dir, "dockerd.pid"),
    "-H",
    host,
    "--bridge=none",
    "--iptables=false",
    "--ip-masq=false",
    "--ip-forward=false",
  ];
  const child = spawn(DOCKERD, args, { stdio: ["ignore", fd, fd], detached: true });
  closeSync(fd);
  let exited = false;
  child.on("exit", () => (exited = true));
  child.on("error", () => (exited = true));
  const privateEnv = { ...env, DOCKER_HOST: host };
  const stop = () => stopDaemon(child, dir);
  for (let waited = 0; waited < 60_000 && !exited; waited += 250) {
    if (spawnSync(DEBIAN_DOCKER, ["info"], { env: privateEnv, stdio: "ignore", timeout: 10_000 }).status === 0) {
      return { run: client(privateEnv), how: `a private dockerd (${host})`, stop };
    }
    await sleep(250);
  }
  const tail = readFileSync(log, "utf8").trim().split("\n").slice(-10).join("\n");
  await stop();
  throw new Error(`dockerd did not start${exited ? "" : " within 60 s"}; the end of its log:\n${tail}`);
}

function client(env: NodeJS.ProcessEnv): Docker["run"] {
  return (args, options = {}) => {
    const result = spawnSync(DEBIAN_DOCKER, args, { env, encoding: "utf8", timeout: 120_000, ...(options.input !== undefined ? { input: options.input } : {}) });
    if (result.error) throw result.error;
    if (result.status !== 0) throw new Error(`docker ${args.join(" ")} failed (${result.status}): ${result.stderr.trim()}`);
    return result.stdout;
  };
}

/** SIGTERM, then SIGKILL to its process group (dockerd and its containerd) after 30 s; then unmount and remove its directory. */
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
  // dockerd mounts below its roots; a daemon that died early may leave them behind. Deepest first.
  const points = readFileSync("/proc/self/mountinfo", "utf8")
    .split("\n")
    .map((line) => line.split(" ")[4]?.replace(/\\([0-7]{3})/g, (_, octal: string) => String.fromCharCode(parseInt(octal, 8))))
    .filter((point): point is string => point !== undefined && (point === dir || point.startsWith(`${dir}/`)))
    .sort((a, b) => b.length - a.length);
  for (const point of points) spawnSync("umount", [point]);
  rmSync(dir, { recursive: true, force: true });
}
