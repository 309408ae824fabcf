import { writeFileSync } from "node:fs";
import { networkInterfaces } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { isInsecureHost, isLoopback, normalizePlatform, parseNetwork, parseReference, platformMatches, pullImage, pushImage, registryHosts, resolvesInto } from "../../src/registry/index.ts";
import { AMD64, caught, freshDir, freshStore, makeImage } from "./helpers.ts";
import { startRegistry, type RegistryServer } from "./registry-server.ts";

const FAST = { retries: 2, retryDelayMs: 10 };
const NO_FILE = "/nonexistent/tsbuild/registries.json";

describe("registryHosts", () => {
  it("reads mirrors and insecure registries from options and the config file, options first", async () => {
    const file = join(freshDir("hosts"), "registries.json");
    writeFileSync(file, JSON.stringify({ mirrors: { "docker.io": ["https://m.example/"], "reg.local:5000": ["http://10.0.0.1:5000/v2"] }, insecure: ["Reg.Local:5000", "http://other.local/"] }));
    const hosts = await registryHosts({
      mirrors: ["http://127.0.0.1:5000", "index.docker.io=https://m2.example", "ghcr.io=https://ghcr-mirror.example/prefix/"],
      insecure: ["10.1.2.3:5000"],
      configFile: file,
    });
    expect(Object.fromEntries(hosts.mirrors)).toEqual({
      "docker.io": ["http://127.0.0.1:5000", "https://m2.example", "https://m.example"],
      "ghcr.io": ["https://ghcr-mirror.example/prefix"],
      "reg.local:5000": ["http://10.0.0.1:5000/v2"],
    });
    expect([...hosts.insecure].sort()).toEqual(["10.1.2.3:5000", "other.local", "reg.local:5000"]);
  });

  it("takes CIDR networks as insecure, matching registries by their address or what their name resolves to", async () => {
    const hosts = await registryHosts({ insecure: ["10.0.0.0/8", "192.168.7.0/24", "fd00::/8"], configFile: NO_FILE });
    expect(hosts.insecure.size).toBe(0);
    expect(hosts.insecureNetworks).toHaveLength(3);
    expect(await isInsecureHost("10.20.30.40:5000", hosts)).toBe(true);
    expect(await isInsecureHost("192.168.7.255", hosts)).toBe(true);
    expect(await isInsecureHost("192.168.8.1:5000", hosts)).toBe(false);
    expect(await isInsecureHost("[fd12:3456::1]:5000", hosts)).toBe(true);
    expect(await isInsecureHost("[fe80::1]:5000", hosts)).toBe(false);
    // A name counts by the addresses it resolves to (here through /etc/hosts).
    expect(await resolvesInto("localhost", [parseNetwork("127.0.0.0/8")!])).toBe(true);
    expect(await resolvesInto("localhost", [parseNetwork("10.0.0.0/8")!])).toBe(false);
    expect(await resolvesInto("::ffff:10.1.2.3", [parseNetwork("10.0.0.0/8")!])).toBe(true);
    expect(parseNetwork("reg.local:5000")).toBeUndefined();
  });

  it("treats a missing config file as no settings and honours TSBUILD_REGISTRY_CONFIG", async () => {
    expect(await registryHosts({ configFile: NO_FILE })).toEqual({ mirrors: new Map(), insecure: new Set(), insecureNetworks: [] });
    const file = join(freshDir("hosts"), "env.json");
    writeFileSync(file, JSON.stringify({ insecure: ["env.local"] }));
    const saved = process.env.TSBUILD_REGISTRY_CONFIG;
    process.env.TSBUILD_REGISTRY_CONFIG = file;
    try {
      expect([...(await registryHosts({})).insecure]).toEqual(["env.local"]);
    } finally {
      if (saved === undefined) delete process.env.TSBUILD_REGISTRY_CONFIG;
      else process.env.TSBUILD_REGISTRY_CONFIG = saved;
    }
  });

  it.each([
    [{ mirrors: ["ftp://m.example"] }, /mirror "ftp:\/\/m.example": "ftp:\/\/m.example" is not an http\(s\) URL/],
    [{ mirrors: ["docker.io=m.example"] }, /is not an http\(s\) URL/],
    [{ mirrors: ["docker.io=https://user:pw@m.example"] }, /is not an http\(s\) URL/],
    [{ mirrors: ["a/b=https://m.example"] }, /is not a registry host\[:port\]/],
    [{ insecure: ["reg.local/path"] }, /insecure registry "reg.local\/path"/],
    [{ insecure: ["10.0.0.0/33"] }, /insecure registry "10.0.0.0\/33" is not a valid CIDR network/],
    [{ insecure: ["fd00::/129"] }, /is not a valid CIDR network/],
  ])("rejects %j", async (options, message) => {
    const error = await caught(registryHosts({ ...options, configFile: NO_FILE }), "INVALID_CONFIG");
    expect(error.message).toMatch(message);
  });

  it.each([
    ["{", /is not valid: .*JSON/],
    ["[]", /is not a JSON object/],
    [JSON.stringify({ mirrors: ["x"] }), /"mirrors" must be an object/],
    [JSON.stringify({ mirrors: { "docker.io": "https://m" } }), /"mirrors"."docker.io" must be a list of URLs/],
    [JSON.stringify({ insecure: "reg" }), /"insecure" must be a list/],
  ])("rejects the config file %s", async (text, message) => {
    const file = join(freshDir("hosts"), "bad.json");
    writeFileSync(file, text);
    const error = await caught(registryHosts({ configFile: file }), "INVALID_CONFIG");
    expect(error.message).toContain(file);
    expect(error.message).toMatch(message);
  });
});

describe("isLoopback", () => {
  it.each([
    ["localhost", true],
    ["localhost:5000", true],
    ["registry.localhost:5000", true],
    ["127.0.0.1:5000", true],
    ["127.1.2.3", true],
    ["[::1]:5000", true],
    ["::1", true],
    ["128.0.0.1:5000", false],
    ["10.0.0.1", false],
    ["docker.io", false],
    ["localhost.example.com", false],
    ["[::2]:5000", false],
  ])("%s → %s", (host, loopback) => {
    expect(isLoopback(host)).toBe(loopback);
  });
});

describe("platforms", () => {
  it.each([
    [{ os: "linux", architecture: "x86_64" }, { os: "linux", architecture: "amd64" }],
    [{ os: "linux", architecture: "amd64", variant: "v1" }, { os: "linux", architecture: "amd64" }],
    [{ os: "linux", architecture: "aarch64" }, { os: "linux", architecture: "arm64" }],
    [{ os: "linux", architecture: "arm64", variant: "8" }, { os: "linux", architecture: "arm64" }],
    [{ os: "linux", architecture: "arm" }, { os: "linux", architecture: "arm", variant: "v7" }],
    [{ os: "linux", architecture: "armhf" }, { os: "linux", architecture: "arm", variant: "v7" }],
    [{ os: "linux", architecture: "armel" }, { os: "linux", architecture: "arm", variant: "v6" }],
    [{ os: "linux", architecture: "arm", variant: "6" }, { os: "linux", architecture: "arm", variant: "v6" }],
    [{ os: "Linux", architecture: "i386" }, { os: "linux", architecture: "386" }],
  ])("normalizes %j", (platform, normalized) => {
    expect(normalizePlatform(platform)).toEqual(normalized);
  });

  it("matches by os, architecture and normalized variant", () => {
    expect(platformMatches({ os: "linux", architecture: "arm64" }, { os: "linux", architecture: "arm64", variant: "v8" })).toBe(true);
    expect(platformMatches({ os: "linux", architecture: "arm" }, { os: "linux", architecture: "arm", variant: "v6" })).toBe(false);
    expect(platformMatches({ os: "linux", architecture: "amd64" }, { os: "windows", architecture: "amd64" })).toBe(false);
    expect(platformMatches({ os: "linux", architecture: "arm64", variant: "v9" }, { os: "linux", architecture: "arm64" })).toBe(false);
  });
});

describe("https and plain http", () => {
  let tls: RegistryServer;
  beforeAll(async () => {
    tls = await startRegistry({ tls: true });
  });
  afterAll(async () => tls?.stop());

  it("talks https (any certificate) or http to loopback registries", async () => {
    const store = await freshStore();
    const image = await makeImage(store, AMD64);
    const ref = parseReference(`${tls.host}/secure/app:1`);
    await pushImage(ref, image, store, FAST);
    expect((await pullImage(ref, await freshStore(), { ...FAST, platform: AMD64 })).manifestDigest).toBe(image.digest);
  });

  const external = Object.values(networkInterfaces())
    .flat()
    .find((entry) => entry !== undefined && entry.family === "IPv4" && !entry.internal)?.address;

  describe.skipIf(external === undefined)(`a registry on a non-loopback address (${external})`, () => {
    let plain: RegistryServer;
    let secure: RegistryServer;
    beforeAll(async () => {
      plain = await startRegistry({ address: external });
      secure = await startRegistry({ address: external, tls: true });
    });
    afterAll(async () => {
      await plain?.stop();
      await secure?.stop();
    });

    it("needs https with a valid certificate unless it is listed as insecure", async () => {
      const store = await freshStore();
      const image = await makeImage(store, AMD64);
      for (const server of [plain, secure]) {
        const ref = parseReference(`${server.host}/insecure/app:1`);
        const error = await caught(pushImage(ref, image, store, { ...FAST, hosts: await registryHosts({ configFile: NO_FILE }) }), "NETWORK");
        expect(error.message).toMatch(new RegExp(`^cannot push ${server.host}/insecure/app:1: a TLS connection could not be made`));
        expect(error.hint).toMatch(/insecure/);
        // Listed by host:port, or by a network that holds its address.
        for (const insecure of [server.host, `${external}/32`, `${external?.split(".").slice(0, 2).join(".")}.0.0/16`]) {
          const hosts = await registryHosts({ insecure: [insecure], configFile: NO_FILE });
          await pushImage(ref, image, store, { ...FAST, hosts });
          expect((await pullImage(ref, await freshStore(), { ...FAST, hosts, platform: AMD64 })).manifestDigest).toBe(image.digest);
        }
      }
    });
  });
});
