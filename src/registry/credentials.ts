/**
 * Credentials from the docker CLI's config (`$DOCKER_CONFIG/config.json`, else
 * ~/.docker/config.json): `auths` entries and the `credsStore` / `credHelpers` programs
 * (docker-credential-<name>), read and written the way the docker CLI does.
 */
import { spawn } from "node:child_process";
import { chmod, mkdir, readFile, rename, rm, writeFile } from "node:fs/promises";
import { homedir } from "node:os";
import { join } from "node:path";
import { RegistryError } from "./errors.ts";
import { DOCKER_HUB } from "./reference.ts";

export interface Credentials {
  username?: string;
  password?: string;
  /** An OAuth2 refresh token (docker config `identitytoken`, or a helper's "<token>" user). */
  identityToken?: string;
}

/** Where the docker CLI keeps Docker Hub's credentials. */
export const DOCKER_HUB_KEY = "https://index.docker.io/v1/";
const HELPER_TIMEOUT_MS = 60_000;
/** What helpers print when they have nothing for a server (docker-credential-helpers' ErrCredentialsNotFound). */
const NOT_FOUND_RE = /credentials not found/i;

interface AuthEntry {
  auth?: string;
  username?: string;
  password?: string;
  identitytoken?: string;
  [key: string]: unknown;
}

interface DockerConfig {
  auths?: Record<string, AuthEntry>;
  credsStore?: string;
  credHelpers?: Record<string, string>;
  [key: string]: unknown;
}

export function dockerConfigDir(option?: string): string {
  return option ?? process.env.DOCKER_CONFIG ?? join(homedir(), ".docker");
}

/** The key a registry's credentials are stored under (and the server URL given to helpers). */
export function credentialKey(registry: string): string {
  return registry === DOCKER_HUB ? DOCKER_HUB_KEY : registry;
}

/** "https://index.docker.io/v1/" → "index.docker.io" (the docker CLI's ConvertToHostname). */
function hostnameOf(key: string): string {
  return key
    .replace(/^https?:\/\//i, "")
    .split("/")[0]!
    .toLowerCase();
}

/** Names a registry can be stored under: Docker Hub has several. */
function aliases(registry: string): Set<string> {
  const host = registry.toLowerCase();
  return host === DOCKER_HUB ? new Set(["index.docker.io", "docker.io", "registry-1.docker.io"]) : new Set([host]);
}

async function readConfig(dir: string): Promise<DockerConfig> {
  const path = join(dir, "config.json");
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === "ENOENT" || code === "ENOTDIR") return {};
    throw new RegistryError("INVALID_CONFIG", `cannot read the docker config ${path}: ${(error as Error).message}`, {
      hint: "fix its permissions, or point DOCKER_CONFIG at another directory",
    });
  }
  let parsed: unknown;
  try {
    parsed = text.trim() === "" ? {} : JSON.parse(text);
  } catch (error) {
    throw new RegistryError("INVALID_CONFIG", `the docker config ${path} is not valid JSON: ${(error as Error).message}`, {
      hint: "fix or remove the file",
    });
  }
  if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) {
    throw new RegistryError("INVALID_CONFIG", `the docker config ${path} is not a JSON object`, { hint: "fix or remove the file" });
  }
  return parsed as DockerConfig;
}

async function writeConfig(dir: string, config: DockerConfig): Promise<void> {
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const path = join(dir, "config.json");
  const temp = join(dir, `.config.json.${process.pid}.${Date.now()}.tmp`);
  try {
    await writeFile(temp, `${JSON.stringify(config, null, "\t")}\n`, { mode: 0o600 });
    await chmod(temp, 0o600);
    await rename(temp, path);
  } catch (error) {
    await rm(temp, { force: true });
    throw new RegistryError("INVALID_CONFIG", `cannot write the docker config ${path}: ${(error as Error).message}`, {
      hint: "check the directory's permissions, or point DOCKER_CONFIG at a writable directory",
    });
  }
}

/** The helper configured for a registry: credHelpers first, then credsStore. */
function helperFor(config: DockerConfig, registry: string): string | undefined {
  const names = aliases(registry);
  for (const [key, helper] of Object.entries(config.credHelpers ?? {})) {
    if (typeof helper === "string" && helper !== "" && (key === credentialKey(registry) || names.has(hostnameOf(key)))) return helper;
  }
  return typeof config.credsStore === "string" && config.credsStore !== "" ? config.credsStore : undefined;
}

/** The auths entries stored for a registry (exact key first, then any key naming the same host). */
function authKeys(config: DockerConfig, registry: string): string[] {
  const names = aliases(registry);
  const exact = credentialKey(registry);
  const keys = Object.keys(config.auths ?? {});
  return [...keys.filter((key) => key === exact), ...keys.filter((key) => key !== exact && names.has(hostnameOf(key)))];
}

/** The credentials stored for `registry` (host[:port], or "docker.io"), if any. */
export async function lookupCredentials(registry: string, configDirOption?: string): Promise<Credentials | undefined> {
  const dir = dockerConfigDir(configDirOption);
  const config = await readConfig(dir);
  const helper = helperFor(config, registry);
  if (helper !== undefined) {
    const found = await helperGet(helper, credentialKey(registry), dir);
    if (found !== undefined) return found;
  }
  for (const key of authKeys(config, registry)) {
    const entry = config.auths?.[key];
    const credentials = entry === undefined ? undefined : fromAuthEntry(entry, join(dir, "config.json"), key);
    if (credentials !== undefined) return credentials;
  }
  return undefined;
}

function fromAuthEntry(entry: AuthEntry, path: string, key: string): Credentials | undefined {
  const credentials: Credentials = {};
  if (typeof entry.auth === "string" && entry.auth !== "") {
    const decoded = Buffer.from(entry.auth, "base64").toString("utf8");
    const colon = decoded.indexOf(":");
    if (colon < 0) {
      throw new RegistryError("INVALID_CONFIG", `the docker config ${path} has a malformed "auth" for ${key} (not base64 of user:password)`, {
        hint: `log in again with \`tsbuild login ${hostnameOf(key) === "index.docker.io" ? DOCKER_HUB : hostnameOf(key)}\``,
      });
    }
    credentials.username = decoded.slice(0, colon);
    credentials.password = decoded.slice(colon + 1);
  } else if (typeof entry.username === "string" && entry.username !== "") {
    credentials.username = entry.username;
    if (typeof entry.password === "string") credentials.password = entry.password;
  }
  if (typeof entry.identitytoken === "string" && entry.identitytoken !== "") credentials.identityToken = entry.identitytoken;
  return credentials.username !== undefined || credentials.identityToken !== undefined ? credentials : undefined;
}

/** Saves credentials as `docker login` does: in the configured helper, else base64 in `auths`. */
export async function storeCredentials(registry: string, credentials: { username: string; password: string }, configDirOption?: string): Promise<void> {
  const dir = dockerConfigDir(configDirOption);
  const config = await readConfig(dir);
  const key = credentialKey(registry);
  const helper = helperFor(config, registry);
  const auths: Record<string, AuthEntry> = { ...(config.auths ?? {}) };
  for (const other of authKeys(config, registry)) delete auths[other];
  if (helper !== undefined) {
    await runHelper(helper, "store", JSON.stringify({ ServerURL: key, Username: credentials.username, Secret: credentials.password }), dir, [credentials.password]);
    auths[key] = {}; // as the docker CLI leaves it: the secret lives in the helper
  } else {
    auths[key] = { auth: Buffer.from(`${credentials.username}:${credentials.password}`).toString("base64") };
  }
  await writeConfig(dir, { ...config, auths });
}

/** Removes a registry's credentials (helper and `auths`); false when nothing was stored. */
export async function eraseCredentials(registry: string, configDirOption?: string): Promise<boolean> {
  const dir = dockerConfigDir(configDirOption);
  const config = await readConfig(dir);
  let removed = false;
  const helper = helperFor(config, registry);
  if (helper !== undefined) {
    const result = await runHelper(helper, "erase", credentialKey(registry), dir, [], { allowNotFound: true });
    removed = result !== undefined;
  }
  const keys = authKeys(config, registry);
  if (keys.length > 0) {
    const auths = { ...(config.auths ?? {}) };
    for (const key of keys) {
      if (fromAuthEntry(auths[key] ?? {}, join(dir, "config.json"), key) !== undefined) removed = true;
      delete auths[key];
    }
    await writeConfig(dir, { ...config, auths });
  }
  return removed;
}

async function helperGet(helper: string, serverUrl: string, dir: string): Promise<Credentials | undefined> {
  const output = await runHelper(helper, "get", serverUrl, dir, [], { allowNotFound: true });
  if (output === undefined || output.trim() === "") return undefined;
  let parsed: { Username?: unknown; Secret?: unknown };
  try {
    parsed = JSON.parse(output) as typeof parsed;
  } catch {
    throw new RegistryError("CREDENTIAL_HELPER", `docker-credential-${helper} get printed something that is not JSON for ${serverUrl}`, {
      hint: `check the helper with: echo ${serverUrl} | docker-credential-${helper} get`,
    });
  }
  const username = typeof parsed.Username === "string" ? parsed.Username : "";
  const secret = typeof parsed.Secret === "string" ? parsed.Secret : "";
  if (secret === "" && username === "") return undefined;
  // The helper convention for an identity (refresh) token.
  if (username === "<token>") return { identityToken: secret };
  return { username, password: secret };
}

/**
 * Runs `docker-credential-<helper> <action>` with `input` on stdin; resolves its stdout, or
 * undefined when it says it has no credentials (with allowNotFound). Output quoted in
 * errors has `secrets` (and anything after "Secret") removed.
 */
function runHelper(helper: string, action: "get" | "store" | "erase", input: string, dir: string, secrets: string[], options: { allowNotFound?: boolean } = {}): Promise<string | undefined> {
  const program = `docker-credential-${helper}`;
  return new Promise((resolve, reject) => {
    const child = spawn(program, [action], { stdio: ["pipe", "pipe", "pipe"], timeout: HELPER_TIMEOUT_MS });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on("data", (chunk: Buffer) => (stderr += chunk.toString()));
    child.stdin.on("error", () => undefined); // a helper that exits without reading
    child.on("error", (error: NodeJS.ErrnoException) => {
      reject(
        new RegistryError(
          "CREDENTIAL_HELPER",
          error.code === "ENOENT" ? `${program} is not installed (not found on PATH)` : `cannot run ${program}: ${error.message}`,
          { hint: `install ${program}, or remove "credsStore"/"credHelpers" from ${join(dir, "config.json")}` },
        ),
      );
    });
    child.on("close", (code, signal) => {
      if (code === 0) return resolve(stdout);
      const said = redact(`${stdout.trim()} ${stderr.trim()}`.trim(), secrets).split("\n")[0]!.slice(0, 300);
      if (options.allowNotFound && NOT_FOUND_RE.test(said)) return resolve(undefined);
      reject(
        new RegistryError("CREDENTIAL_HELPER", `${program} ${action} failed (${signal ?? `exit code ${code}`})${said ? `: ${said}` : ""}`, {
          hint: `check the helper, or remove "credsStore"/"credHelpers" from ${join(dir, "config.json")}`,
        }),
      );
    });
    child.stdin.end(input);
  });
}

function redact(text: string, secrets: readonly string[]): string {
  let out = text.replace(/("?Secret"?\s*[:=]\s*)("[^"]*"|\S+)/gi, "$1<redacted>");
  for (const secret of secrets) if (secret !== "") out = out.split(secret).join("<redacted>");
  return out;
}
