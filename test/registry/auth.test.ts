import { spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { chmodSync, existsSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { login, logout, parseReference, pullImage, pushImage, resolveDigest } from "../../src/registry/index.ts";
import { AMD64, caught, freshDir, freshStore, makeImage, verifyStore } from "./helpers.ts";
import { startRegistry, type RegistryServer } from "./registry-server.ts";
import { startTokenServer, type TokenServer } from "./token-server.ts";

const FAST = { retries: 3, retryDelayMs: 10 };
const PASSWORD = "s3cret-Pa55";

function configDir(config?: object): string {
  const dir = freshDir("docker-config");
  if (config !== undefined) writeFileSync(join(dir, "config.json"), JSON.stringify(config));
  return dir;
}

function readConfig(dir: string): { auths?: Record<string, Record<string, string>>; [key: string]: unknown } {
  return JSON.parse(readFileSync(join(dir, "config.json"), "utf8")) as ReturnType<typeof readConfig>;
}

function basicAuth(user: string, password: string): string {
  return Buffer.from(`${user}:${password}`).toString("base64");
}

function expectNoSecrets(error: Error & { hint?: string | undefined }): void {
  for (const text of [error.message, error.hint ?? ""]) {
    expect(text).not.toContain(PASSWORD);
    expect(text).not.toContain("wrong-password");
    expect(text).not.toMatch(/eyJ[A-Za-z0-9_-]{10,}/); // a JWT
  }
}

/** A docker-credential-test on PATH that keeps one file per server URL in a temp directory. */
const HELPER = `#!/bin/sh
dir="$TSBUILD_TEST_HELPER_DIR"
key() { printf '%s' "$1" | sha256sum | cut -c1-16; }
case "$1" in
  store)
    input=$(cat)
    url=$(printf '%s' "$input" | sed -n 's/.*"ServerURL":"\\([^"]*\\)".*/\\1/p')
    printf '%s' "$input" > "$dir/$(key "$url")" ;;
  get)
    url=$(cat)
    if [ -f "$dir/$(key "$url")" ]; then cat "$dir/$(key "$url")"; else echo "credentials not found in native keychain"; exit 1; fi ;;
  erase)
    url=$(cat)
    if [ -f "$dir/$(key "$url")" ]; then rm "$dir/$(key "$url")"; else echo "credentials not found in native keychain"; exit 1; fi ;;
  *) echo "unknown action $1" >&2; exit 2 ;;
esac
`;
let helperState: string;
beforeAll(() => {
  const bin = freshDir("helper-bin");
  helperState = freshDir("helper-state");
  writeFileSync(join(bin, "docker-credential-test"), HELPER);
  chmodSync(join(bin, "docker-credential-test"), 0o755);
  process.env.PATH = `${bin}:${process.env.PATH}`;
  process.env.TSBUILD_TEST_HELPER_DIR = helperState;
});

function helperFile(serverUrl: string): string {
  return join(helperState, createHash("sha256").update(serverUrl).digest("hex").slice(0, 16));
}

describe("htpasswd (Basic) auth", () => {
  let registry: RegistryServer;
  beforeAll(async () => {
    registry = await startRegistry({ htpasswd: { alice: PASSWORD } });
  });
  afterAll(async () => registry?.stop());

  it("refuses anonymous pushes with a hint to log in", async () => {
    const store = await freshStore();
    const image = await makeImage(store, AMD64);
    const error = await caught(pushImage(parseReference(`${registry.host}/team/app:1`), image, store, { ...FAST, dockerConfigDir: configDir() }), "UNAUTHORIZED");
    expect(error.message).toBe(`cannot push ${registry.host}/team/app:1: ${registry.host} requires authentication and no credentials are stored for it`);
    expect(error.hint).toBe(`log in with \`tsbuild login ${registry.host}\``);
  });

  it("does not store credentials the registry refuses", async () => {
    const dir = configDir();
    const error = await caught(login(registry.host, { username: "alice", password: "wrong-password" }, { ...FAST, dockerConfigDir: dir }), "UNAUTHORIZED");
    expect(error.message).toBe(`cannot log in to ${registry.host}: ${registry.host} rejected the credentials`);
    expectNoSecrets(error);
    expect(existsSync(join(dir, "config.json"))).toBe(false);
  });

  it("logs in, pushes, pulls and logs out", async () => {
    const dir = configDir({ auths: { "other.example.com": { auth: basicAuth("bob", "x") } }, psFormat: "table" });
    await login(registry.host, { username: "alice", password: PASSWORD }, { ...FAST, dockerConfigDir: dir });
    const config = readConfig(dir);
    expect(config.auths?.[registry.host]).toEqual({ auth: basicAuth("alice", PASSWORD) });
    expect(config.auths?.["other.example.com"]).toEqual({ auth: basicAuth("bob", "x") });
    expect(config.psFormat).toBe("table");
    expect(statSync(join(dir, "config.json")).mode & 0o777).toBe(0o600);

    const store = await freshStore();
    const image = await makeImage(store, AMD64);
    const ref = parseReference(`${registry.host}/team/app:1`);
    await pushImage(ref, image, store, { ...FAST, dockerConfigDir: dir });
    const inspect = spawnSync("skopeo", ["inspect", "--tls-verify=false", "--creds", `alice:${PASSWORD}`, `docker://${registry.host}/team/app:1`], { encoding: "utf8" });
    expect(inspect.status, inspect.stderr).toBe(0);
    expect((JSON.parse(inspect.stdout) as { Digest: string }).Digest).toBe(image.digest);
    const target = await freshStore();
    expect((await pullImage(ref, target, { ...FAST, platform: AMD64, dockerConfigDir: dir })).manifestDigest).toBe(image.digest);
    verifyStore(target);

    expect(await logout(registry.host, { dockerConfigDir: dir })).toBe(true);
    expect(readConfig(dir).auths).toEqual({ "other.example.com": { auth: basicAuth("bob", "x") } });
    expect(await logout(registry.host, { dockerConfigDir: dir })).toBe(false);
    await caught(resolveDigest(ref, { ...FAST, dockerConfigDir: dir }), "UNAUTHORIZED");
  });

  it("reads username/password entries and reports stored credentials that stopped working", async () => {
    const store = await freshStore();
    const image = await makeImage(store, AMD64);
    const ref = parseReference(`${registry.host}/team/fields:1`);
    await pushImage(ref, image, store, { ...FAST, dockerConfigDir: configDir({ auths: { [`https://${registry.host}/v2/`]: { username: "alice", password: PASSWORD } } }) });
    const error = await caught(
      pullImage(ref, await freshStore(), { ...FAST, platform: AMD64, dockerConfigDir: configDir({ auths: { [registry.host]: { auth: basicAuth("alice", "wrong-password") } } }) }),
      "UNAUTHORIZED",
    );
    expect(error.message).toBe(`cannot pull ${registry.host}/team/fields:1: ${registry.host} rejected the credentials`);
    expect(error.hint).toBe(`log in again with \`tsbuild login ${registry.host}\``);
    expectNoSecrets(error);
  });
});

describe("token (Bearer) auth", () => {
  let tokens: TokenServer;
  let registry: RegistryServer;
  beforeAll(async () => {
    tokens = await startTokenServer();
    tokens.users.set("alice", PASSWORD);
    tokens.users.set("reader", PASSWORD);
    tokens.policy = (user, repository, actions) => {
      if (user === "alice") return actions;
      if (user === "reader" || repository.startsWith("public/")) return actions.filter((action) => action === "pull");
      return [];
    };
    registry = await startRegistry({ token: tokens });
  });
  afterAll(async () => {
    await registry?.stop();
    await tokens?.stop();
  });

  it("logs in, pushes and pulls with tokens, asking the token service once per scope", async () => {
    const dir = configDir();
    await login(registry.host, { username: "alice", password: PASSWORD }, { ...FAST, dockerConfigDir: dir });
    expect(tokens.requests.at(-1)).toEqual({ method: "GET", user: "alice", scopes: [], grant: "basic" });
    const store = await freshStore();
    const image = await makeImage(store, AMD64);
    const ref = parseReference(`${registry.host}/private/app:1`);
    tokens.requests.length = 0;
    await pushImage(ref, image, store, { ...FAST, dockerConfigDir: dir });
    expect(tokens.requests).toEqual([{ method: "GET", user: "alice", scopes: ["repository:private/app:pull,push"], grant: "basic" }]);

    tokens.requests.length = 0;
    const target = await freshStore();
    await pullImage(ref, target, { ...FAST, platform: AMD64, dockerConfigDir: dir });
    await resolveDigest(ref, { ...FAST, dockerConfigDir: dir });
    await pullImage(ref, await freshStore(), { ...FAST, platform: AMD64, dockerConfigDir: dir });
    expect(tokens.requests).toEqual([{ method: "GET", user: "alice", scopes: ["repository:private/app:pull"], grant: "basic" }]);
    verifyStore(target);
  });

  it("pulls public repositories anonymously and refuses private ones", async () => {
    const store = await freshStore();
    const image = await makeImage(store, AMD64);
    const writer = configDir({ auths: { [registry.host]: { auth: basicAuth("alice", PASSWORD) } } });
    await pushImage(parseReference(`${registry.host}/public/app:1`), image, store, { ...FAST, dockerConfigDir: writer });
    await pushImage(parseReference(`${registry.host}/private/other:1`), image, store, { ...FAST, dockerConfigDir: writer });

    const anonymous = configDir();
    const pulled = await pullImage(parseReference(`${registry.host}/public/app:1`), await freshStore(), { ...FAST, platform: AMD64, dockerConfigDir: anonymous });
    expect(pulled.manifestDigest).toBe(image.digest);
    const error = await caught(pullImage(parseReference(`${registry.host}/private/other:1`), await freshStore(), { ...FAST, platform: AMD64, dockerConfigDir: anonymous }), "UNAUTHORIZED");
    expect(error.message).toBe(`cannot pull ${registry.host}/private/other:1: pull access to private/other on ${registry.host} was denied: the repository does not exist or needs credentials`);
    expect(error.hint).toContain(`tsbuild login ${registry.host}`);
  });

  it("refuses a wrong password at the token service", async () => {
    const error = await caught(login(registry.host, { username: "alice", password: "wrong-password" }, { ...FAST, dockerConfigDir: configDir() }), "UNAUTHORIZED");
    expect(error.message).toBe(`cannot log in to ${registry.host}: the token service ${tokens.url}/token rejected the credentials for ${registry.host}`);
    expectNoSecrets(error);
    const pull = await caught(
      pullImage(parseReference(`${registry.host}/private/app:1`), await freshStore(), {
        ...FAST,
        platform: AMD64,
        dockerConfigDir: configDir({ auths: { [registry.host]: { auth: basicAuth("alice", "wrong-password") } } }),
      }),
      "UNAUTHORIZED",
    );
    expectNoSecrets(pull);
  });

  it("says DENIED when the account may pull but not push", async () => {
    const store = await freshStore();
    const image = await makeImage(store, AMD64);
    const error = await caught(
      pushImage(parseReference(`${registry.host}/private/readonly:1`), image, store, { ...FAST, dockerConfigDir: configDir({ auths: { [registry.host]: { auth: basicAuth("reader", PASSWORD) } } }) }),
      "DENIED",
    );
    expect(error.message).toBe(`cannot push ${registry.host}/private/readonly:1: the credentials stored for ${registry.host} do not allow push access to private/readonly`);
  });

  it("exchanges an identity token with the OAuth2 refresh_token grant", async () => {
    tokens.refreshTokens.set("refresh-123", "alice");
    const store = await freshStore();
    const image = await makeImage(store, AMD64);
    tokens.requests.length = 0;
    await pushImage(parseReference(`${registry.host}/private/identity:1`), image, store, {
      ...FAST,
      dockerConfigDir: configDir({ auths: { [registry.host]: { identitytoken: "refresh-123" } } }),
    });
    expect(tokens.requests).toEqual([{ method: "POST", user: "alice", scopes: ["repository:private/identity:pull,push"], grant: "refresh_token" }]);
  });

  it("takes a helper's \"<token>\" user as an identity token", async () => {
    tokens.refreshTokens.set("refresh-456", "alice");
    writeFileSync(helperFile(registry.host), JSON.stringify({ ServerURL: registry.host, Username: "<token>", Secret: "refresh-456" }));
    const store = await freshStore();
    const image = await makeImage(store, AMD64);
    tokens.requests.length = 0;
    await pushImage(parseReference(`${registry.host}/private/helper-identity:1`), image, store, { ...FAST, dockerConfigDir: configDir({ credHelpers: { [registry.host]: "test" } }) });
    expect(tokens.requests.map((request) => request.grant)).toEqual(["refresh_token"]);
  });

  it("mounts across repositories with a token for both", async () => {
    const dir = configDir({ auths: { [registry.host]: { auth: basicAuth("alice", PASSWORD) } } });
    const store = await freshStore();
    const image = await makeImage(store, AMD64);
    const base = parseReference(`${registry.host}/private/base:1`);
    await pushImage(base, image, store, { ...FAST, dockerConfigDir: dir });
    tokens.requests.length = 0;
    const actions: string[] = [];
    await pushImage(parseReference(`${registry.host}/private/derived:1`), image, store, {
      ...FAST,
      dockerConfigDir: dir,
      mountFrom: new Map(image.blobs.map((blob) => [blob.digest, base])),
      onEvent: (event) => event.kind === "blob" && actions.push(event.action),
    });
    expect(new Set(actions)).toEqual(new Set(["mounted"]));
    expect(tokens.requests.map((request) => request.scopes)).toEqual([["repository:private/derived:pull,push", "repository:private/base:pull"]]);
  });
});

describe("credential helpers", () => {
  let registry: RegistryServer;
  beforeAll(async () => {
    registry = await startRegistry({ htpasswd: { alice: PASSWORD } });
  });
  afterAll(async () => registry?.stop());

  it("stores through credsStore, reads through it and erases from it", async () => {
    const dir = configDir({ credsStore: "test" });
    await login(registry.host, { username: "alice", password: PASSWORD }, { ...FAST, dockerConfigDir: dir });
    expect(readConfig(dir)).toEqual({ credsStore: "test", auths: { [registry.host]: {} } });
    expect(readFileSync(join(dir, "config.json"), "utf8")).not.toContain(PASSWORD);
    expect(JSON.parse(readFileSync(helperFile(registry.host), "utf8"))).toEqual({ ServerURL: registry.host, Username: "alice", Secret: PASSWORD });

    const store = await freshStore();
    const image = await makeImage(store, AMD64);
    await pushImage(parseReference(`${registry.host}/helper/app:1`), image, store, { ...FAST, dockerConfigDir: dir });

    expect(await logout(registry.host, { dockerConfigDir: dir })).toBe(true);
    expect(existsSync(helperFile(registry.host))).toBe(false);
    expect(readConfig(dir).auths).toEqual({});
    expect(await logout(registry.host, { dockerConfigDir: dir })).toBe(false);
  });

  it("prefers credHelpers for the registry and reports a missing helper", async () => {
    const dir = configDir({ credsStore: "missing", credHelpers: { [registry.host]: "test" } });
    await login(registry.host, { username: "alice", password: PASSWORD }, { ...FAST, dockerConfigDir: dir });
    const store = await freshStore();
    const image = await makeImage(store, AMD64);
    await pushImage(parseReference(`${registry.host}/helper/two:1`), image, store, { ...FAST, dockerConfigDir: dir });

    // The same registry under another name: credHelpers does not name it, so credsStore applies.
    const error = await caught(pushImage(parseReference(`localhost:${registry.port}/helper/three:1`), image, store, { ...FAST, dockerConfigDir: dir }), "CREDENTIAL_HELPER");
    expect(error.message).toBe("docker-credential-missing is not installed (not found on PATH)");
    expect(error.hint).toContain(join(dir, "config.json"));
  });
});
