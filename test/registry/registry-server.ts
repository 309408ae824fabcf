/**
 * Starts Debian's `docker-registry` (distribution v2) on a free loopback port with its
 * own storage directory, for the registry tests. Variants: no auth, htpasswd, token auth
 * (with the token server of token-server.ts), TLS, and blob redirects to a storage server.
 */
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { createReadStream, existsSync, mkdtempSync, rmSync, statSync, writeFileSync } from "node:fs";
import { createServer, get as httpGet, type IncomingMessage, type Server } from "node:http";
import { get as httpsGet } from "node:https";
import { type AddressInfo, createServer as createNetServer } from "node:net";
import { tmpdir } from "node:os";
import { join, normalize } from "node:path";
import type { TokenServer } from "./token-server.ts";

const REGISTRY_BINARY = "/usr/bin/docker-registry";

export interface RegistryServer {
  /** "127.0.0.1:PORT": what image references use. */
  host: string;
  port: number;
  /** "http://127.0.0.1:PORT" (https for TLS). */
  url: string;
  storageDir: string;
  /** Requests the storage server saw (redirect variant only). */
  storageRequests: { method: string; path: string; authorization: boolean }[];
  output(): string;
  stop(): Promise<void>;
}

export interface RegistryServerOptions {
  /** htpasswd auth with these users. */
  htpasswd?: Record<string, string>;
  /** Bearer token auth through this token server. */
  token?: TokenServer;
  /** Serve https with a self-signed certificate. */
  tls?: boolean;
  /** Blob GET/HEAD are answered with a redirect to a separate storage server. */
  redirect?: boolean;
  /** Listen address (default 127.0.0.1). */
  address?: string;
}

/** Fails (never skips) when the registry is not installed. */
export function requireRegistryBinary(): void {
  if (!existsSync(REGISTRY_BINARY)) {
    throw new Error(`${REGISTRY_BINARY} is missing: the registry tests need Debian's distribution registry (apt-get install docker-registry)`);
  }
}

export async function freePort(address = "127.0.0.1"): Promise<number> {
  const server = createNetServer();
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, address, resolve);
  });
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

export async function startRegistry(options: RegistryServerOptions = {}): Promise<RegistryServer> {
  requireRegistryBinary();
  const dir = mkdtempSync(join(tmpdir(), "tsbuild-registry-"));
  const storageDir = join(dir, "storage");
  const address = options.address ?? "127.0.0.1";
  const lines = [
    "version: 0.1",
    "log:",
    "  level: error",
    "  accesslog:",
    "    disabled: true",
    "storage:",
    "  filesystem:",
    `    rootdirectory: ${storageDir}`,
    "  delete:",
    "    enabled: true",
    "  maintenance:",
    "    uploadpurging:",
    "      enabled: false",
  ];
  if (options.htpasswd) {
    const file = join(dir, "htpasswd");
    const entries = Object.entries(options.htpasswd).map(([user, password]) => {
      const result = spawnSync("htpasswd", ["-Bbn", user, password], { encoding: "utf8" });
      if (result.status !== 0) throw new Error(`htpasswd failed (apt-get install apache2-utils): ${result.stderr}`);
      return result.stdout.trim();
    });
    writeFileSync(file, `${entries.join("\n")}\n`);
    lines.push("auth:", "  htpasswd:", "    realm: tsbuild-test", `    path: ${file}`);
  }
  if (options.token) {
    lines.push(
      "auth:",
      "  token:",
      `    realm: ${options.token.url}/token`,
      `    service: ${options.token.service}`,
      `    issuer: ${options.token.issuer}`,
      `    rootcertbundle: ${options.token.certPath}`,
    );
  }
  let storage: Server | undefined;
  const storageRequests: RegistryServer["storageRequests"] = [];
  if (options.redirect) {
    storage = await startStorageServer(storageDir, storageRequests);
    const { port } = storage.address() as AddressInfo;
    lines.push("middleware:", "  storage:", "    - name: redirect", "      options:", `        baseurl: http://127.0.0.1:${port}/`);
  }
  let tlsLines: string[] = [];
  if (options.tls) {
    const cert = join(dir, "tls.crt");
    const key = join(dir, "tls.key");
    const result = spawnSync("openssl", ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", cert, "-days", "2", "-subj", "/CN=localhost", "-addext", `subjectAltName=IP:${address}`], {
      encoding: "utf8",
    });
    if (result.status !== 0) throw new Error(`openssl failed: ${result.stderr}`);
    tlsLines = ["  tls:", `    certificate: ${cert}`, `    key: ${key}`];
  }

  for (let attempt = 0; ; attempt++) {
    const port = await freePort(address);
    const host = address.includes(":") ? `[${address}]:${port}` : `${address}:${port}`;
    const config = join(dir, "config.yml");
    writeFileSync(config, [...lines, "http:", `  addr: ${host}`, "  secret: tsbuild-test-secret", ...tlsLines, ""].join("\n"));
    const child = spawn(REGISTRY_BINARY, ["serve", config], { stdio: ["ignore", "pipe", "pipe"] });
    let output = "";
    child.stdout!.on("data", (chunk: Buffer) => (output += chunk.toString()));
    child.stderr!.on("data", (chunk: Buffer) => (output += chunk.toString()));
    const url = `${options.tls ? "https" : "http"}://${host}`;
    const up = await waitForRegistry(child, url);
    if (!up) {
      child.kill("SIGKILL");
      if (attempt < 3) continue; // the port was taken meanwhile
      rmSync(dir, { recursive: true, force: true });
      throw new Error(`docker-registry did not start:\n${output}`);
    }
    return {
      host,
      port,
      url,
      storageDir,
      storageRequests,
      output: () => output,
      stop: async () => {
        await stopChild(child);
        if (storage) await new Promise<void>((resolve) => storage.close(() => resolve()));
        storage?.closeAllConnections();
        rmSync(dir, { recursive: true, force: true });
      },
    };
  }
}

async function waitForRegistry(child: ChildProcess, url: string): Promise<boolean> {
  const deadline = Date.now() + 15_000;
  let exited = false;
  child.once("exit", () => (exited = true));
  while (Date.now() < deadline && !exited) {
    const ok = await probe(`${url}/v2/`);
    if (ok) return true;
    await new Promise((resolve) => setTimeout(resolve, 30));
  }
  return false;
}

/** Any HTTP answer (200, or 401 with auth) means the registry is up. */
function probe(url: string): Promise<boolean> {
  return new Promise((resolve) => {
    const get = url.startsWith("https:") ? httpsGet : httpGet;
    const req = get(url, { rejectUnauthorized: false, timeout: 2000 }, (res) => {
      res.resume();
      resolve(true);
    });
    req.on("error", () => resolve(false));
    req.on("timeout", () => req.destroy());
  });
}

function stopChild(child: ChildProcess): Promise<void> {
  return new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) return resolve();
    const timer = setTimeout(() => child.kill("SIGKILL"), 5000);
    child.once("exit", () => {
      clearTimeout(timer);
      resolve();
    });
    child.kill("SIGTERM");
  });
}

/** Serves the registry's storage directory, as the redirect middleware's base URL (GET, HEAD, Range). */
async function startStorageServer(root: string, log: RegistryServer["storageRequests"]): Promise<Server> {
  const server = createServer((req: IncomingMessage, res) => {
    const path = normalize(decodeURIComponent(new URL(req.url ?? "/", "http://x").pathname));
    log.push({ method: req.method ?? "", path, authorization: req.headers.authorization !== undefined });
    const file = join(root, path);
    if (!file.startsWith(root) || !existsSync(file) || !statSync(file).isFile()) {
      res.writeHead(404).end();
      return;
    }
    const size = statSync(file).size;
    const range = /^bytes=(\d+)-$/.exec(req.headers.range ?? "");
    const start = range ? Number(range[1]) : 0;
    const headers = { "content-type": "application/octet-stream", "content-length": String(size - start) };
    if (range) res.writeHead(206, { ...headers, "content-range": `bytes ${start}-${size - 1}/${size}` });
    else res.writeHead(200, headers);
    if (req.method === "HEAD") return res.end();
    createReadStream(file, { start }).pipe(res);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return server;
}
