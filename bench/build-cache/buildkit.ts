/**
 * BuildKit as Debian ships it: dockerd 20.10 from `docker.io`, driven by its own docker
 * client (`DOCKER_BUILDKIT=1 docker build`). Installs the package if missing and starts a
 * private daemon when none answers, stopping it again at the end.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync, openSync, closeSync } from "node:fs";
import { mkdir, readFile, rm } from "node:fs/promises";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import type { Builder } from "./builders.ts";
import { aptInstall, run, runChecked, succeeds, tail, type Command } from "./run.ts";

/**
 * Debian's client. A newer docker CLI elsewhere on PATH (e.g. /usr/local/bin) may need the
 * buildx plugin for BuildKit builds; the 20.10 client has BuildKit built in.
 */
const DEBIAN_DOCKER = "/usr/bin/docker";
const DOCKERD = "/usr/sbin/dockerd";

export interface BuildKitSetup {
  builder: Builder;
  /** How the daemon was found, for the report. */
  daemon: string;
}

/** Returns the builder, or throws an Error whose message says why BuildKit cannot be measured. */
export async function createBuildKit(workDir: string, log: (line: string) => void): Promise<BuildKitSetup> {
  await ensureInstalled(log);
  const client = existsSync(DEBIAN_DOCKER) ? DEBIAN_DOCKER : "docker";
  const env: Record<string, string> = { DOCKER_BUILDKIT: "1" };
  let daemon: Daemon | undefined;
  let how = `existing daemon at ${process.env.DOCKER_HOST ?? "unix:///var/run/docker.sock"} (its build cache is pruned)`;
  if (!(await succeeds({ cmd: client, args: ["info"], env }))) {
    daemon = await startDaemon(client, join(workDir, "dockerd"), log);
    env.DOCKER_HOST = daemon.host;
    how = `dockerd started by the bench (data root ${daemon.dataRoot})`;
  }
  const docker = (...args: string[]): Command => ({ cmd: client, args, env });
  try {
    const version = (await runChecked(docker("version", "--format", "{{.Server.Version}}"))).output.trim();
    const builder: Builder = {
      id: "buildkit",
      name: "BuildKit",
      version: `dockerd ${version}`,
      buildCommand: (contextDir, dest) => docker("build", "--progress=plain", ...(dest === undefined ? [] : ["-o", `type=local,dest=${dest}`]), contextDir),
      resetCache: async () => void (await runChecked(docker("builder", "prune", "-af"))),
      close: async () => {
        if (daemon !== undefined) await daemon.stop();
      },
    };
    return { builder, daemon: how };
  } catch (error) {
    if (daemon !== undefined) await daemon.stop();
    throw error;
  }
}

async function ensureInstalled(log: (line: string) => void): Promise<void> {
  if (existsSync(DEBIAN_DOCKER) && existsSync(DOCKERD)) return;
  log("docker.io is not installed: apt-get install -y docker.io");
  await aptInstall("docker.io");
}

interface Daemon {
  host: string;
  dataRoot: string;
  stop(): Promise<void>;
}

/**
 * A private dockerd: its own data root, exec root and socket under `dir`, no bridge network
 * and no iptables rules (the builds have no RUN steps, so they need no network), so it
 * leaves the machine as it found it.
 */
async function startDaemon(client: string, dir: string, log: (line: string) => void): Promise<Daemon> {
  await rm(dir, { recursive: true, force: true });
  await mkdir(dir, { recursive: true });
  const host = `unix://${join(dir, "docker.sock")}`;
  const dataRoot = join(dir, "data");
  const logFile = join(dir, "dockerd.log");
  const args = ["--data-root", dataRoot, "--exec-root", join(dir, "exec"), "--pidfile", join(dir, "dockerd.pid"), "-H", host, "--bridge=none", "--iptables=false", "--ip-masq=false"];
  log(`no docker daemon answers: starting ${DOCKERD} (log: ${logFile})`);
  const fd = openSync(logFile, "a");
  const child = spawn(DOCKERD, args, { stdio: ["ignore", fd, fd], detached: true });
  closeSync(fd);
  let exited = false;
  child.on("exit", () => (exited = true));
  child.on("error", () => (exited = true));

  const stop = () => stopDaemon(child, dir);
  for (let waited = 0; waited < 60_000; waited += 250) {
    if (exited) break;
    if (await succeeds({ cmd: client, args: ["info"], env: { DOCKER_HOST: host } }, 5_000)) return { host, dataRoot, stop };
    await sleep(250);
  }
  const why = tail(await readFile(logFile, "utf8").catch(() => ""), 8);
  await stop();
  throw new Error(`dockerd did not start${exited ? "" : " within 60 s"}; the end of its log:\n${why}`);
}

/** SIGTERM, then SIGKILL if dockerd has not exited after 30 s; then remove its directory. */
async function stopDaemon(child: ChildProcess, dir: string): Promise<void> {
  if (child.exitCode === null && child.signalCode === null) {
    const exited = new Promise((resolve) => child.once("exit", resolve));
    child.kill("SIGTERM");
    // dockerd runs in its own process group (detached) with its containerd: kill both.
    const timer = setTimeout(() => process.kill(-(child.pid as number), "SIGKILL"), 30_000);
    await exited;
    clearTimeout(timer);
  }
  await unmountUnder(dir);
  await rm(dir, { recursive: true, force: true }).catch(() => undefined);
}

/**
 * dockerd bind-mounts its data root onto itself; a daemon that dies during start-up leaves
 * that mount behind. Unmounts everything under `dir`, deepest first.
 */
async function unmountUnder(dir: string): Promise<void> {
  const mountInfo = await readFile("/proc/self/mountinfo", "utf8").catch(() => "");
  // The fifth field is the mount point, with spaces and the like written as octal escapes (\040).
  const points = mountInfo
    .split("\n")
    .map((line) => line.split(" ")[4]?.replace(/\\([0-7]{3})/g, (_, octal: string) => String.fromCharCode(parseInt(octal, 8))))
    .filter((point): point is string => point !== undefined && (point === dir || point.startsWith(`${dir}/`)));
  for (const point of points.sort((a, b) => b.length - a.length)) await run({ cmd: "umount", args: [point] });
}
