/**
 * Where requests for a registry go: its mirrors (pulls only), then the registry itself;
 * over https, or plain http for insecure and loopback registries.
 */
import { readFile } from "node:fs/promises";
import { isIP } from "node:net";
import { RegistryError } from "./errors.ts";
import { DOCKER_HUB } from "./reference.ts";

export interface RegistryHosts {
  /** Registry ("docker.io", "reg.example.com:5000") → mirror base URLs, tried in order before it. */
  mirrors: ReadonlyMap<string, readonly string[]>;
  /** Registries (host[:port]) reached over plain http or https without certificate checks. */
  insecure: ReadonlySet<string>;
}

export const DEFAULT_REGISTRY_CONFIG = "/etc/tsbuild/registries.json";
/** Docker Hub's API is not served at docker.io. */
const DOCKER_HUB_API = "registry-1.docker.io";

/**
 * Reads the mirror and insecure-registry settings: `mirrors` entries "REGISTRY=URL" (a bare
 * URL mirrors docker.io), `insecure` entries host[:port], then the JSON config file
 * (`configFile`, else $TSBUILD_REGISTRY_CONFIG, else /etc/tsbuild/registries.json; a missing
 * file is no settings). Options come first, so their mirrors are tried first.
 */
export async function registryHosts(options: { mirrors?: readonly string[]; insecure?: readonly string[]; configFile?: string } = {}): Promise<RegistryHosts> {
  const mirrors = new Map<string, string[]>();
  const insecure = new Set<string>();
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
  for (const entry of options.insecure ?? []) insecure.add(normalizeHost(entry, `insecure registry ${JSON.stringify(entry)}`));

  const configFile = options.configFile ?? process.env.TSBUILD_REGISTRY_CONFIG ?? DEFAULT_REGISTRY_CONFIG;
  const file = await readConfigFile(configFile);
  if (file !== undefined) {
    const where = (what: string) => `${configFile}: ${what}`;
    for (const [registry, urls] of Object.entries(file.mirrors ?? {})) {
      for (const url of urls) addMirror(registry, url, where(`mirror of ${JSON.stringify(registry)}`));
    }
    for (const entry of file.insecure ?? []) insecure.add(normalizeHost(entry, where(`insecure registry ${JSON.stringify(entry)}`)));
  }
  return { mirrors, insecure };
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
    throw bad('"insecure" must be a list of host[:port]');
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
export function pullEndpoints(registry: string, hosts: RegistryHosts | undefined): Endpoint[] {
  const mirrors = (hosts?.mirrors.get(registry) ?? []).map((base): Endpoint => {
    const host = new URL(base).host;
    return { registry, host, bases: [withApiRoot(base)], verifyTls: !isInsecure(host, hosts), mirror: true };
  });
  return [...mirrors, registryEndpoint(registry, hosts)];
}

/** The registry itself (pushes, logins, and the last resort of pulls). */
export function registryEndpoint(registry: string, hosts: RegistryHosts | undefined): Endpoint {
  const host = registry === DOCKER_HUB ? DOCKER_HUB_API : registry;
  const insecure = isInsecure(registry, hosts);
  const bases = insecure ? [`https://${host}/v2`, `http://${host}/v2`] : [`https://${host}/v2`];
  return { registry, host: registry, bases, verifyTls: !insecure, mirror: false };
}

function isInsecure(host: string, hosts: RegistryHosts | undefined): boolean {
  return isLoopback(host) || (hosts?.insecure.has(host.toLowerCase()) ?? false);
}

/** A mirror URL names the API root when it has a path (containerd's rule); "/v2" otherwise. */
function withApiRoot(base: string): string {
  const url = new URL(base);
  return url.pathname === "/" || url.pathname === "" ? `${url.origin}/v2` : `${url.origin}${url.pathname.replace(/\/+$/, "")}`;
}
