/** `tsbuild login` / `logout`: check credentials against the registry, then store or erase them. */
import { RegistryClient, closeOperation, openOperation } from "./client.ts";
import { eraseCredentials, storeCredentials } from "./credentials.ts";
import { RegistryError } from "./errors.ts";
import { registryEndpoint } from "./hosts.ts";
import { DOCKER_HUB } from "./reference.ts";
import { withRetries } from "./retry.ts";
import { discard } from "./transport.ts";
import type { RegistryOptions } from "./types.ts";

/** "https://index.docker.io/v1/", "index.docker.io", "HTTPS://Reg:5000/" → "docker.io", "reg:5000". */
export function normalizeRegistryName(text: string): string {
  const host = text
    .trim()
    .replace(/^https?:\/\//i, "")
    .split("/")[0]!
    .toLowerCase();
  if (host === "" || /[\s@?#]/.test(host)) {
    throw new RegistryError("INVALID_REFERENCE", `${JSON.stringify(text)} is not a registry name`, { hint: 'write host[:port], e.g. "registry.example.com" or "localhost:5000"' });
  }
  return host === "index.docker.io" || host === "registry-1.docker.io" ? DOCKER_HUB : host;
}

/**
 * Verifies the credentials (GET /v2/ through the registry's auth flow), then stores them
 * in the docker config: through its credential helper if one is configured, else in
 * `auths` (base64 user:password). Throws UNAUTHORIZED when the registry refuses them.
 */
export async function login(registry: string, credentials: { username: string; password: string }, options: RegistryOptions = {}): Promise<void> {
  const name = normalizeRegistryName(registry);
  const prefix = `cannot log in to ${name}`;
  if (credentials.username === "" || credentials.password === "") {
    throw new RegistryError("UNAUTHORIZED", `${prefix}: the user name and the password must not be empty`, { hint: "give both" });
  }
  const operation = openOperation(options, { host: name, credentials });
  try {
    const client = new RegistryClient(operation, await registryEndpoint(name, options.hosts), "", { prefix, action: "login", scopes: [] });
    await withRetries(`login to ${name}`, prefix, operation.retry, async () => {
      const response = await client.send({ method: "GET", path: "/" });
      if (response.statusCode !== 200) throw await client.failure(response, "the API root /v2/");
      await discard(response);
    });
  } finally {
    await closeOperation(operation);
  }
  await storeCredentials(name, credentials, options.dockerConfigDir);
}

/** Removes the stored credentials; false when there were none. */
export async function logout(registry: string, options: RegistryOptions = {}): Promise<boolean> {
  return eraseCredentials(normalizeRegistryName(registry), options.dockerConfigDir);
}
