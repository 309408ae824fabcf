/**
 * Where requests for a registry go: its mirrors (pulls only), then the registry itself;
 * over https, or plain http for insecure and loopback registries.
 */
import { lookup } from "node:dns/promises";
import { readFile } from "node:fs/promises";
import { isIP } from "node:net";
import { RegistryError } from "./errors.ts";
import { DOCKER_HUB } from "./reference.ts";

export interface RegistryHosts {
  /** Registry ("docker.io", "reg.example.com:5000") → mirror base URLs, tried in order before it. */
  mirrors: ReadonlyMap<string, readonly string[]>;
  /** Registries (host[:port]) reached over plain http or https without certificate checks. */
  insecure: ReadonlySet<string>;
  /** Networks ("10.0.0.0/8") whose registries are insecure too: by their IP, or the addresses their name resolves to. */
  insecureNetworks: readonly Network[];
}

/** An IPv4 or IPv6 network: the address as a number, and the prefix length. */
export interface Network {
  family: 4 | 6;
  address: bigint;
  bits: number;
}

export const DEFAULT_REGISTRY_CONFIG = "/etc/tsbuild/registries.json";
/** Docker Hub's API is not served at docker.io. */
const DOCKER_HUB_API = "registry-1.docker.io";

/**
 * Reads the mirror and insecure-registry settings: `mirrors` entries "REGISTRY=URL" (a bare
 * URL mirrors docker.io), `insecure` entries host[:port] or CIDR networks, then the JSON config file
 * (`configFile`, else $TSBUILD_REGISTRY_CONFIG, else /etc/tsbuild/registries.json; a missing
 * file is no settings). Options come first, so their mirrors are tried first.
 */
export async function registryHosts(options: { mirrors?: readonly string[]; insecure?: readonly string[]; configFile?: string } = {}): Promise<RegistryHosts> {
  const mirrors = new Map<string, string[]>();
  const insecure = new Set<string>();
  const insecureNetworks: Network[] = [];
  const addInsecure = (entry: string, where: string) => {
    const network = parseNetwork(entry);
    if (network !== undefined) insecureNetworks.push(network);
    else insecure.add(normalizeHost(entry, where));
  };
  const addMirror = (registry: string, url: string, where: string) => {
    const key = normalizeRegistry(registry, where);
    const list = mirrors.get(key) ?? [];
    const normalized = normalizeMirrorUrl(url, where);
    if (!list.includes(normalized)) list.push(normalized);
    mirrors.set(key, list);
  };
  for (const entry of options.mirrors ?? []) {
    const where = `mirror ${JSON.stringify(entry)}`;
    const eq = entry.indexOf("=");
    if (eq < 0) addMirror(DOCKER_HUB, entry, where);
    else addMirror(entry.slice(0, eq), entry.slice(eq + 1), where);
  }
  for (const entry of options.insecure ?? []) addInsecure(entry, `insecure registry ${JSON.stringify(entry)}`);

  const configFile = options.configFile ?? process.env.TSBUILD_REGISTRY_CONFIG ?? DEFAULT_REGISTRY_CONFIG;
  const file = await readConfigFile(configFile);
  if (file !== undefined) {
    const where = (what: string) => `${configFile}: ${what}`;
    for (const [registry, urls] of Object.entries(file.mirrors ?? {})) {
      for (const url of urls) addMirror(registry, url, where(`mirror of ${JSON.stringify(registry)}`));
    }
    for (const entry of file.insecure ?? []) addInsecure(entry, where(`insecure registry ${JSON.stringify(entry)}`));
  }
  return { mirrors, insecure, insecureNetworks };
}

interface ConfigFile {
  mirrors?: Record<string, string[]>;
  insecure?: string[];
}

async function readConfigFile(path: string): Promise<ConfigFile | undefined> {
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === "ENOENT" || code === "ENOTDIR") return undefined;
    throw new RegistryError("INVALID_CONFIG", `cannot read the registries config ${path}: ${(error as Error).message}`, {
      hint: "fix the path (or TSBUILD_REGISTRY_CONFIG), or remove the setting",
    });
  }
  const bad = (problem: string) =>
    new RegistryError("INVALID_CONFIG", `the registries config ${path} is not valid: ${problem}`, {
      hint: 'expected JSON like {"mirrors": {"docker.io": ["https://mirror.example"]}, "insecure": ["registry.local:5000"]}',
    });
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (error) {
    throw bad((error as Error).message);
  }
  if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) throw bad("it is not a JSON object");
  const { mirrors, insecure } = parsed as Record<string, unknown>;
  if (mirrors !== undefined) {
    if (typeof mirrors !== "object" || mirrors === null || Array.isArray(mirrors)) throw bad('"mirrors" must be an object of registry → list of URLs');
    for (const [registry, urls] of Object.entries(mirrors)) {
      if (!Array.isArray(urls) || urls.some((url) => typeof url !== "string")) throw bad(`"mirrors"."${registry}" must be a list of URLs`);
    }
  }
  if (insecure !== undefined && (!Array.isArray(insecure) || insecure.some((entry) => typeof entry !== "string"))) {
    throw bad('"insecure" must be a list of host[:port] or CIDR networks');
  }
  return parsed as ConfigFile;
}

function normalizeRegistry(text: string, where: string): string {
  const host = normalizeHost(text, where);
  return host === "index.docker.io" || host === DOCKER_HUB_API ? DOCKER_HUB : host;
}

/** "HTTP://Reg.Local:5000/" → "reg.local:5000". */
function normalizeHost(text: string, where: string): string {
  const host = text
    .trim()
    .replace(/^https?:\/\//i, "")
    .replace(/\/+$/, "")
    .toLowerCase();
  if (host === "" || /[/\s@?#]/.test(host)) {
    throw new RegistryError("INVALID_CONFIG", `${where}: ${JSON.stringify(text)} is not a registry host[:port]`, {
      hint: 'write e.g. "registry.local:5000" (no path)',
    });
  }
  return host;
}

function normalizeMirrorUrl(text: string, where: string): string {
  let url: URL | undefined;
  try {
    url = new URL(text.trim());
  } catch {
    url = undefined;
  }
  if (url === undefined || (url.protocol !== "http:" && url.protocol !== "https:") || url.username !== "" || url.password !== "" || url.search !== "") {
    throw new RegistryError("INVALID_CONFIG", `${where}: ${JSON.stringify(text)} is not an http(s) URL`, {
      hint: 'write e.g. "docker.io=https://mirror.example" or "docker.io=http://127.0.0.1:5000" (credentials go in the docker config, not the URL)',
    });
  }
  return `${url.origin}${url.pathname.replace(/\/+$/, "")}`;
}

/** localhost, 127.0.0.0/8 and ::1 (with or without a port): plain http is always allowed there. */
export function isLoopback(hostPort: string): boolean {
  const host = hostOf(hostPort).toLowerCase();
  if (host === "localhost" || host.endsWith(".localhost")) return true;
  if (isIP(host) === 4) return host.startsWith("127.");
  if (isIP(host) === 6) return host === "::1" || host === "0:0:0:0:0:0:0:1";
  return false;
}

/** "reg:5000" → "reg", "[::1]:5000" → "::1". */
function hostOf(hostPort: string): string {
  if (hostPort.startsWith("[")) return hostPort.slice(1, hostPort.indexOf("]"));
  const colon = hostPort.lastIndexOf(":");
  return colon >= 0 && hostPort.indexOf(":") === colon ? hostPort.slice(0, colon) : hostPort;
}

/** One place requests for a registry can go. */
export interface Endpoint {
  /** The registry the image belongs to ("docker.io"). */
  registry: string;
  /** host[:port] of this endpoint: what credentials are looked up by. */
  host: string;
  /** Base URLs to try, in order: one, or https then http for insecure and loopback hosts. */
  bases: readonly string[];
  /** Whether TLS certificates are checked (not for insecure and loopback hosts). */
  verifyTls: boolean;
  mirror: boolean;
}

/** The endpoints a pull tries: mirrors first, then the registry itself. */
export async function pullEndpoints(registry: string, hosts: RegistryHosts | undefined): Promise<Endpoint[]> {
  const mirrors: Endpoint[] = [];
  for (const base of hosts?.mirrors.get(registry) ?? []) {
    const host = new URL(base).host;
    mirrors.push({ registry, host, bases: [withApiRoot(base)], verifyTls: !(await isInsecureHost(host, hosts)), mirror: true });
  }
  return [...mirrors, await registryEndpoint(registry, hosts)];
}

/** The registry itself (pushes, logins, and the last resort of pulls). */
export async function registryEndpoint(registry: string, hosts: RegistryHosts | undefined): Promise<Endpoint> {
  const host = registry === DOCKER_HUB ? DOCKER_HUB_API : registry;
  const insecure = await isInsecureHost(registry, hosts);
  const bases = insecure ? [`https://${host}/v2`, `http://${host}/v2`] : [`https://${host}/v2`];
  return { registry, host: registry, bases, verifyTls: !insecure, mirror: false };
}

/**
 * Whether plain http and unchecked certificates are allowed for `hostPort`: a loopback
 * host, one listed, or one in a listed network (a name is resolved for that, as docker does).
 */
export async function isInsecureHost(hostPort: string, hosts: RegistryHosts | undefined): Promise<boolean> {
  if (isLoopback(hostPort) || (hosts?.insecure.has(hostPort.toLowerCase()) ?? false)) return true;
  const networks = hosts?.insecureNetworks ?? [];
  return networks.length > 0 && (await resolvesInto(hostOf(hostPort), networks));
}

/** Whether `host` (an IP, or a name resolved here) has an address in one of `networks`. */
export async function resolvesInto(host: string, networks: readonly Network[]): Promise<boolean> {
  let addresses: string[];
  if (isIP(host) !== 0) addresses = [host];
  else {
    try {
      addresses = (await lookup(host, { all: true })).map((entry) => entry.address);
    } catch {
      return false; // the connection will say what is wrong with the name
    }
  }
  return addresses.some((address) => {
    const ip = parseAddress(address);
    return ip !== undefined && networks.some((network) => network.family === ip.family && sameNetwork(ip.address, network, ip.family));
  });
}

/** "10.0.0.0/8", "fd00::/8" → a Network; anything else (a host[:port]) → undefined. */
export function parseNetwork(text: string): Network | undefined {
  const match = /^([^/\s]+)\/(\d{1,3})$/.exec(text.trim());
  if (match === null) return undefined;
  const ip = parseAddress(match[1] as string);
  const bits = Number(match[2]);
  if (ip === undefined || bits > (ip.family === 4 ? 32 : 128)) {
    throw new RegistryError("INVALID_CONFIG", `insecure registry ${JSON.stringify(text)} is not a valid CIDR network`, {
      hint: 'write e.g. "10.0.0.0/8" or "fd00::/8", or a registry host[:port]',
    });
  }
  return { family: ip.family, address: ip.address, bits };
}

function sameNetwork(address: bigint, network: Network, family: 4 | 6): boolean {
  const width = BigInt(family === 4 ? 32 : 128);
  const shift = width - BigInt(network.bits);
  return address >> shift === network.address >> shift;
}

/** An IPv4 or IPv6 address as a number (an IPv4-mapped IPv6 address counts as IPv4). */
function parseAddress(text: string): { family: 4 | 6; address: bigint } | undefined {
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(text);
  const plain = mapped?.[1] ?? text;
  if (isIP(plain) === 4) return { family: 4, address: plain.split(".").reduce((sum, octet) => (sum << 8n) + BigInt(Number(octet)), 0n) };
  if (isIP(plain) !== 6) return undefined;
  const [head = "", tail = ""] = plain.split("::");
  const groups = (part: string) => (part === "" ? [] : part.split(":"));
  const left = groups(head);
  const right = plain.includes("::") ? groups(tail) : [];
  const all = plain.includes("::") ? [...left, ...Array<string>(8 - left.length - right.length).fill("0"), ...right] : left;
  if (all.length !== 8 || all.some((group) => group.includes("."))) return undefined;
  return { family: 6, address: all.reduce((sum, group) => (sum << 16n) + BigInt(parseInt(group, 16)), 0n) };
}

/** A mirror URL names the API root when it has a path (containerd's rule); "/v2" otherwise. */
function withApiRoot(base: string): string {
  const url = new URL(base);
  return url.pathname === "/" || url.pathname === "" ? `${url.origin}/v2` : `${url.origin}${url.pathname.replace(/\/+$/, "")}`;
}
