/**
 * BuildKit as Debian ships it: dockerd 20.10 from `docker.io`, driven by its own docker
 * client (`DOCKER_BUILDKIT=1 docker build`). Installs the package if missing and starts a
 * private daemon when none answers, stopping it again at the end (with the bridge it made
 * for RUN steps, if it made one).
 */
import { existsSync } from "node:fs";
import { rm } from "node:fs/promises";
import { join } from "node:path";
import { DEBIAN_DOCKER, DOCKERD, startPrivateDockerd } from "../../scripts/private-dockerd.ts";
import type { Builder } from "./builders.ts";
import { aptInstall, run, runChecked, succeeds, type Command } from "./run.ts";

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
    daemon = await startDaemon(join(workDir, "dockerd"), log, options.network ?? "none");
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
 * A private dockerd (scripts/private-dockerd.ts) with either no bridge network at all or one
 * on a bridge the bench creates and removes, so it leaves the machine as it found it.
 */
async function startDaemon(dir: string, log: (line: string) => void, network: "none" | "bridge"): Promise<Daemon> {
  await rm(dir, { recursive: true, force: true });
  const bridge = network === "bridge" ? await createBridge(BENCH_BRIDGE) : undefined;
  const removeBridge = async () => {
    if (bridge !== undefined) await run({ cmd: "ip", args: ["link", "del", BENCH_BRIDGE] });
  };
  log(`no docker daemon answers: starting ${DOCKERD} (log: ${join(dir, "dockerd.log")}${bridge === undefined ? "" : `; bridge ${bridge}`})`);
  try {
    const daemon = await startPrivateDockerd(dir, bridge === undefined ? {} : { bridge: BENCH_BRIDGE });
    const stop = async () => {
      await daemon.stop();
      await removeBridge();
    };
    return { host: daemon.host, dataRoot: daemon.dataRoot, ...(bridge === undefined ? {} : { bridge }), stop };
  } catch (error) {
    await removeBridge();
    throw error;
  }
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
