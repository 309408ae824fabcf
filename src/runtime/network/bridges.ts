/**
 * Which bridge and subnet a state root's attachments use.
 *
 * host-local keeps its leases under each state root, so two state roots must
 * never hand out addresses on the same bridge at the same time. A registry in
 * the run directory (tmpfs: it goes away with the bridges at reboot) records
 * the last state root of each bridge; a state root takes tsbuild0 unless
 * another state root has attachments running there, then tsbuild1, and so on.
 * A new bridge gets the first 10.88.N.0/24 that no host route or address
 * overlaps. The registry entry also lists the bridge's iptables rules (NAT,
 * forwarding), installed once and kept while the bridge is.
 */
import { execFile } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { mkdir, readdir, rename, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { bridgeRules, installRules, removeRules, sameRule, type BridgeRule } from "./bridge-rules.ts";
import { NetworkError, errnoCode } from "./errors.ts";
import { formatNetwork, overlaps, parseNetwork, pickFreeSubnet, type Ipv4Network } from "./ipv4.ts";
import { isOwnerAlive } from "./owner.ts";
import { listRecords } from "./records.ts";

export const DEFAULT_BRIDGE = "tsbuild0";
const AUTO_BRIDGES = 100;

interface RegistryEntry {
  stateDir: string;
  subnet: string;
  /** The iptables rules installed for the bridge (they stay while it does, whichever state root uses it). */
  rules?: BridgeRule[];
}

export interface BridgeChoice {
  bridge: string;
  subnet: Ipv4Network;
}

export interface ChooseOptions {
  runDir: string;
  stateDir: string;
  /** A bridge asked for by name: no fallback to another. */
  bridge?: string;
  subnet?: Ipv4Network;
  /** Releases the attachments of dead processes of another state root before its bridge is taken over. */
  cleanupStateRoot: (stateDir: string) => Promise<void>;
}

function registryDir(runDir: string): string {
  return join(runDir, "net", "bridges");
}

async function readEntry(runDir: string, bridge: string): Promise<RegistryEntry | undefined> {
  try {
    // read for every attachment: a small file on tmpfs, read synchronously (cheaper for the event loop)
    const entry = JSON.parse(readFileSync(join(registryDir(runDir), `${bridge}.json`), "utf8")) as RegistryEntry;
    return typeof entry.stateDir === "string" && typeof entry.subnet === "string" ? entry : undefined;
  } catch (error) {
    if (errnoCode(error) === "ENOENT" || error instanceof SyntaxError) return undefined;
    throw error;
  }
}

async function writeEntry(runDir: string, bridge: string, entry: RegistryEntry): Promise<void> {
  const dir = registryDir(runDir);
  await mkdir(dir, { recursive: true, mode: 0o755 });
  const temp = join(dir, `.${bridge}.${process.pid}.tmp`);
  await writeFile(temp, JSON.stringify(entry));
  await rename(temp, join(dir, `${bridge}.json`));
}

async function otherEntries(runDir: string, except: string): Promise<RegistryEntry[]> {
  let names: string[];
  try {
    names = await readdir(registryDir(runDir));
  } catch {
    return [];
  }
  const entries: RegistryEntry[] = [];
  for (const name of names) {
    if (!name.endsWith(".json") || name === `${except}.json`) continue;
    const entry = await readEntry(runDir, name.slice(0, -".json".length));
    if (entry) entries.push(entry);
  }
  return entries;
}

async function hasLiveAttachments(stateDir: string, bridge: string): Promise<boolean> {
  const records = await listRecords(stateDir);
  return records.some((record) => record.bridge === bridge && isOwnerAlive(record.owner));
}

function ipJson(args: string[]): Promise<unknown[]> {
  return new Promise((resolve, reject) => {
    execFile("ip", ["-j", ...args], { encoding: "utf8" }, (error, stdout, stderr) => {
      if (error) {
        reject(
          new NetworkError("SUBNET_UNAVAILABLE", `cannot read the host's routes (ip ${args.join(" ")}): ${stderr.trim() || error.message}`, {
            hint: "install iproute2 (apt-get install iproute2)",
          }),
        );
        return;
      }
      try {
        const parsed = JSON.parse(stdout || "[]") as unknown;
        resolve(Array.isArray(parsed) ? parsed : []);
      } catch {
        resolve([]);
      }
    });
  });
}

/** The IPv4 networks of the host's routes (every table) and addresses, but the default route and the bridge's own. */
export async function hostNetworks(exceptDevice?: string): Promise<Ipv4Network[]> {
  const networks: Ipv4Network[] = [];
  for (const route of (await ipJson(["-4", "route", "show", "table", "all"])) as Array<{ dst?: string; dev?: string }>) {
    if (!route.dst || route.dst === "default" || (exceptDevice && route.dev === exceptDevice)) continue;
    const network = parseNetwork(route.dst);
    if (network && network.prefix > 0) networks.push(network);
  }
  for (const link of (await ipJson(["-4", "addr", "show"])) as Array<{ ifname?: string; addr_info?: Array<{ local?: string; prefixlen?: number }> }>) {
    if (exceptDevice && link.ifname === exceptDevice) continue;
    for (const info of link.addr_info ?? []) {
      const network = info.local ? parseNetwork(`${info.local}/${info.prefixlen ?? 32}`) : undefined;
      if (network) networks.push(network);
    }
  }
  return networks;
}

/** The subnet of the bridge's IPv4 address, when the bridge exists and has one. */
async function bridgeSubnet(bridge: string): Promise<Ipv4Network | undefined> {
  if (!existsSync(join("/sys/class/net", bridge))) return undefined;
  const links = (await ipJson(["-4", "addr", "show", "dev", bridge])) as Array<{ addr_info?: Array<{ local?: string; prefixlen?: number }> }>;
  const info = links[0]?.addr_info?.[0];
  return info?.local ? parseNetwork(`${info.local}/${info.prefixlen ?? 32}`) : undefined;
}

function sameNetwork(a: Ipv4Network, b: Ipv4Network): boolean {
  return a.base === b.base && a.prefix === b.prefix;
}

/** Picks (and records) the bridge and subnet; the caller holds the network lock. */
export async function chooseBridge(options: ChooseOptions): Promise<BridgeChoice> {
  const { runDir, stateDir } = options;
  const candidates = options.bridge ? [options.bridge] : Array.from({ length: AUTO_BRIDGES }, (_, i) => `tsbuild${i}`);
  for (const bridge of candidates) {
    const entry = await readEntry(runDir, bridge);
    if (entry && entry.stateDir !== stateDir) {
      if (await hasLiveAttachments(entry.stateDir, bridge)) {
        if (options.bridge) {
          throw new NetworkError("BRIDGE_IN_USE", `the bridge ${bridge} is used by running builds of the state root ${entry.stateDir}`, {
            hint: "two state roots cannot share a bridge while both run builds: pick another bridge, or let tsbuild pick one",
          });
        }
        continue;
      }
      // leases of crashed builds of that root would clash with ours: release them first
      await options.cleanupStateRoot(entry.stateDir);
    }

    let subnet: Ipv4Network | undefined;
    const existing = existsSync(join("/sys/class/net", bridge))
      ? entry && entry.stateDir === stateDir
        ? parseNetwork(entry.subnet)
        : await bridgeSubnet(bridge)
      : undefined;
    if (existing) {
      if (options.subnet && !sameNetwork(options.subnet, existing)) {
        if (options.bridge) {
          throw new NetworkError("BRIDGE_IN_USE", `the bridge ${bridge} has the subnet ${formatNetwork(existing)}, not ${formatNetwork(options.subnet)}`, {
            hint: `delete the bridge (ip link delete ${bridge}) to change its subnet, or pick another bridge`,
          });
        }
        continue;
      }
      subnet = existing;
    } else {
      const taken = [...(await hostNetworks(bridge))];
      for (const other of await otherEntries(runDir, bridge)) {
        const network = parseNetwork(other.subnet);
        if (network) taken.push(network);
      }
      if (options.subnet) {
        const requested = options.subnet;
        const clash = taken.find((t) => overlaps(t, requested));
        if (clash) {
          throw new NetworkError("SUBNET_UNAVAILABLE", `the subnet ${formatNetwork(requested)} overlaps ${formatNetwork(clash)}, a route or address of this host or another bridge`, {
            hint: "pick a subnet that no route of the host (ip route) covers",
          });
        }
        subnet = requested;
      } else {
        const previous = entry ? parseNetwork(entry.subnet) : undefined;
        subnet = previous && !taken.some((t) => overlaps(t, previous)) ? previous : pickFreeSubnet(taken);
        if (!subnet) {
          throw new NetworkError("SUBNET_UNAVAILABLE", "every subnet 10.88.0.0/24 ... 10.88.255.0/24 overlaps a route or address of this host", {
            hint: "pass a free subnet explicitly",
          });
        }
      }
    }
    // an entry that says so already is left as it is (every RUN step attaches: no write per step)
    if (entry?.stateDir !== stateDir || entry.subnet !== formatNetwork(subnet)) {
      await writeEntry(runDir, bridge, { stateDir, subnet: formatNetwork(subnet), ...(entry?.rules ? { rules: entry.rules } : {}) });
    }
    return { bridge, subnet };
  }
  throw new NetworkError("BRIDGE_IN_USE", `the bridges tsbuild0 ... tsbuild${AUTO_BRIDGES - 1} are all used by running builds of other state roots`, {
    hint: "wait for some builds to finish, or pass a bridge name",
  });
}

/** Bridges (run directory, name) whose rules this process installed or found, with the subnet they are for. */
const rulesReady = new Map<string, string>();

/** Whether this process has checked the bridge's rules for this subnet already. */
export function bridgeRulesReady(runDir: string, bridge: string, subnet: Ipv4Network): boolean {
  return rulesReady.get(`${runDir}\0${bridge}`) === formatNetwork(subnet);
}

/**
 * Installs the bridge's NAT and forwarding rules when missing (once per
 * process and bridge) and records them in the registry; rules recorded for
 * another subnet (the bridge was deleted and made again) are removed first.
 * The caller holds the network lock, after chooseBridge recorded the bridge.
 */
export async function ensureBridgeRules(runDir: string, bridge: string, subnet: Ipv4Network): Promise<void> {
  if (bridgeRulesReady(runDir, bridge, subnet)) return;
  const cidr = formatNetwork(subnet);
  const wanted = bridgeRules(bridge, cidr);
  const entry = await readEntry(runDir, bridge);
  if (!entry) throw new NetworkError("BRIDGE_IN_USE", `the bridge ${bridge} is not in the registry`);
  const recorded = entry.rules ?? [];
  const stale = recorded.filter((rule) => !wanted.some((w) => sameRule(w, rule)));
  const listed = recorded.length === wanted.length && stale.length === 0;
  // recorded before they are added: whatever moment the process dies at, the registry lists every rule there may be
  if (!listed) await writeEntry(runDir, bridge, { ...entry, rules: [...stale, ...wanted] });
  await removeRules(stale);
  await installRules(wanted);
  if (!listed) await writeEntry(runDir, bridge, { ...entry, rules: wanted });
  rulesReady.set(`${runDir}\0${bridge}`, cidr);
}
