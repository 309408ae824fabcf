/**
 * BuildKit as Debian ships it: dockerd 20.10 from `docker.io`, driven by its own docker
 * client (`DOCKER_BUILDKIT=1 docker build`). Installs the package if missing and starts a
 * private daemon when none answers, stopping it again at the end (with the bridge it made
 * for RUN steps, if it made one).
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

export interface BuildKitOptions {
  /**
   * The network of a private daemon. "none" (the default): no bridge at all, which is enough
   * for builds without RUN (BuildKit fails a RUN step with "network bridge not found").
   * "bridge": a bridge of the bench's own on a free 10.x subnet, no iptables rules, no
   * forwarding, removed at the end, so RUN steps get a veth pair on it as on a normal install.
   */
  network?: "none" | "bridge";
}

export interface BuildKitSetup {
  builder: Builder;
  /** How the daemon was found, for the report. */
  daemon: string;
}

/** Returns the builder, or throws an Error whose message says why BuildKit cannot be measured. */
export async function createBuildKit(workDir: string, log: (line: string) => void, options: BuildKitOptions = {}): Promise<BuildKitSetup> {
  await ensureInstalled(log);
  const client = existsSync(DEBIAN_DOCKER) ? DEBIAN_DOCKER : "docker";
  const env: Record<string, string> = { DOCKER_BUILDKIT: "1" };
  let daemon: Daemon | undefined;
  let how = `existing daemon at ${process.env.DOCKER_HOST ?? "unix:///var/run/docker.sock"} (its build cache is pruned)`;
  if (!(await succeeds({ cmd: client, args: ["info"], env }))) {
    daemon = await startDaemon(client, join(workDir, "dockerd"), log, options.network ?? "none");
    env.DOCKER_HOST = daemon.host;
    how = `dockerd started by the bench (data root ${daemon.dataRoot}${daemon.bridge === undefined ? "" : `; bridge ${daemon.bridge}`})`;
  }
  const docker = (...args: string[]): Command => ({ cmd: client, args, env });
  try {
    const version = (await runChecked(docker("version", "--format", "{{.Server.Version}}"))).output.trim();
    const builder: Builder = {
      id: "buildkit",
      name: "BuildKit",
      version: `dockerd ${version}`,
      buildCommand: (contextDir, dest, flags = {}) =>
        docker(
          "build",
          "--progress=plain",
          ...(flags.noCache === true ? ["--no-cache"] : []),
          ...(flags.network === undefined ? [] : [`--network=${flags.network}`]),           ...(dest === undefined ? [] : ["-o", `type=local,dest=${dest}`]),
          contextDir,
        ),
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
  /** "tsbench0 10.x.y.1/24" when the daemon has a bridge of the bench's. */
  bridge?: string;
  stop(): Promise<void>;
}

/** The bridge a private daemon with `network: "bridge"` uses; the bench creates and removes it. */
const BENCH_BRIDGE = "tsbench0";

/**
 * A private dockerd: its own data root, exec root and socket under `dir`, no iptables rules
 * and no forwarding, and either no bridge network at all or one on a bridge the bench creates
 * and removes, so it leaves the machine as it found it.
 */
async function startDaemon(client: string, dir: string, log: (line: string) => void, network: "none" | "bridge"): Promise<Daemon> {
  await rm(dir, { recursive: true, force: true });
  await mkdir(dir, { recursive: true });
  const host = `unix://${join(dir, "docker.sock")}`;
  const dataRoot = join(dir, "data");
  const logFile = join(dir, "dockerd.log");
  const bridge = network === "bridge" ? await createBridge(BENCH_BRIDGE) : undefined;
  const args = [
    "--data-root",
    dataRoot,
    "--exec-root",
    join(dir, "exec"),
    "--pidfile",
    join(dir, "dockerd.pid"),
    "-H",
    host,
    `--bridge=${bridge === undefined ? "none" : BENCH_BRIDGE}`,
    "--iptables=false",
    "--ip-masq=false",
    "--ip-forward=false",
  ];
  log(`no docker daemon answers: starting ${DOCKERD} (log: ${logFile}${bridge === undefined ? "" : `; bridge ${bridge}`})`);
  const fd = openSync(logFile, "a");
  const child = spawn(DOCKERD, args, { stdio: ["ignore", fd, fd], detached: true });
  closeSync(fd);
  let exited = false;
  child.on("exit", () => (exited = true));
  child.on("error", () => (exited = true));

  const stop = async () => {
    await stopDaemon(child, dir);
    if (bridge !== undefined) await run({ cmd: "ip", args: ["link", "del", BENCH_BRIDGE] });
  };
  for (let waited = 0; waited < 60_000; waited += 250) {
    if (exited) break;
    if (await succeeds({ cmd: client, args: ["info"], env: { DOCKER_HOST: host } }, 5_000)) return { host, dataRoot, ...(bridge === undefined ? {} : { bridge }), stop };
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

/**
 * Creates bridge `name` (replacing one a killed bench left) with the first 10.213.N.1/24 that
 * no address or route of the host overlaps, and returns "name address".
 */
async function createBridge(name: string): Promise<string> {
  await run({ cmd: "ip", args: ["link", "del", name] });
  const taken = [
    ...JSON.parse((await runChecked({ cmd: "ip", args: ["-j", "-4", "route", "show", "table", "all"] })).output || "[]").map((route: { dst?: string }) => route.dst ?? ""),
    ...JSON.parse((await runChecked({ cmd: "ip", args: ["-j", "-4", "addr"] })).output || "[]").flatMap((link: { addr_info?: { local: string; prefixlen: number }[] }) =>
      (link.addr_info ?? []).map((addr) => `${addr.local}/${addr.prefixlen}`),
    ),
  ]
    .map(parseCidr)
    .filter((network): network is [number, number] => network !== undefined);
  for (let n = 0; n < 256; n++) {
    const [base, bits] = parseCidr(`10.213.${n}.0/24`) as [number, number];
    if (taken.some(([other, otherBits]) => sameNetwork(base, other, Math.min(bits, otherBits)))) continue;
    const address = `10.213.${n}.1/24`;
    await runChecked({ cmd: "ip", args: ["link", "add", name, "type", "bridge"] });
    try {
      await runChecked({ cmd: "ip", args: ["addr", "add", address, "dev", name] });
      await runChecked({ cmd: "ip", args: ["link", "set", name, "up"] });
    } catch (error) {
      await run({ cmd: "ip", args: ["link", "del", name] });
      throw error;
    }
    return `${name} ${address}`;
  }
  throw new Error("no free 10.213.N.0/24 subnet for the bench's bridge");
}

/** "a.b.c.d/n" (or "a.b.c.d", a host route) → [address as a 32-bit number, prefix length]; "default" and the like → undefined. */
function parseCidr(text: string): [number, number] | undefined {
  const match = /^(\d+)\.(\d+)\.(\d+)\.(\d+)(?:\/(\d+))?$/.exec(text);
  if (match === null) return undefined;
  const octets = match.slice(1, 5).map(Number);
  return [octets.reduce((sum, octet) => sum * 256 + octet, 0), match[5] === undefined ? 32 : Number(match[5])];
}

function sameNetwork(a: number, b: number, bits: number): boolean {
  const size = 2 ** (32 - bits);
  return Math.floor(a / size) === Math.floor(b / size);
}
