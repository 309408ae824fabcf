import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { parseChallenges } from "../../src/registry/auth.ts";
import { eraseCredentials, lookupCredentials, storeCredentials } from "../../src/registry/credentials.ts";
import { normalizeRegistryName } from "../../src/registry/index.ts";
import { parseRetryAfter } from "../../src/registry/retry.ts";
import { caught, freshDir } from "./helpers.ts";

describe("WWW-Authenticate", () => {
  it.each([
    [
      'Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/alpine:pull"',
      [{ scheme: "bearer", params: { realm: "https://auth.docker.io/token", service: "registry.docker.io", scope: "repository:library/alpine:pull" } }],
    ],
    ['Basic realm="Registry Realm"', [{ scheme: "basic", params: { realm: "Registry Realm" } }]],
    ['Bearer realm="r", error="insufficient_scope", scope="repository:a:pull,push"', [{ scheme: "bearer", params: { realm: "r", error: "insufficient_scope", scope: "repository:a:pull,push" } }]],
    ['Negotiate, Basic realm="x"', [{ scheme: "negotiate", params: {} }, { scheme: "basic", params: { realm: "x" } }]],
    ['Basic dXNlcjpwYXNz, Bearer realm=unquoted,service=s', [{ scheme: "basic", params: {} }, { scheme: "bearer", params: { realm: "unquoted", service: "s" } }]],
    ['Bearer realm="with \\"quotes\\" and, comma"', [{ scheme: "bearer", params: { realm: 'with "quotes" and, comma' } }]],
  ])("%s", (value, expected) => {
    expect(parseChallenges([value])).toEqual(expected);
  });

  it("reads several headers", () => {
    expect(parseChallenges(['Basic realm="a"', 'Bearer realm="b"']).map((challenge) => challenge.scheme)).toEqual(["basic", "bearer"]);
  });
});

describe("Retry-After", () => {
  it("takes seconds or an HTTP date", () => {
    expect(parseRetryAfter("3")).toBe(3000);
    expect(parseRetryAfter(undefined)).toBeUndefined();
    expect(parseRetryAfter("soon")).toBeUndefined();
    const inTenSeconds = new Date(Date.now() + 10_000).toUTCString();
    expect(parseRetryAfter(inTenSeconds)).toBeGreaterThan(8000);
    expect(parseRetryAfter("Thu, 01 Jan 1970 00:00:00 GMT")).toBe(0);
  });
});

describe("docker config credentials", () => {
  it("finds Docker Hub's credentials under any of its names", async () => {
    for (const key of ["https://index.docker.io/v1/", "index.docker.io", "https://registry-1.docker.io/v2/", "docker.io"]) {
      const dir = freshDir("creds");
      writeFileSync(join(dir, "config.json"), JSON.stringify({ auths: { [key]: { auth: Buffer.from("u:p:with:colons").toString("base64") } } }));
      expect(await lookupCredentials("docker.io", dir)).toEqual({ username: "u", password: "p:with:colons" });
      expect(await lookupCredentials("registry.example.com", dir)).toBeUndefined();
    }
  });

  it("stores Docker Hub's credentials under https://index.docker.io/v1/ and erases every alias", async () => {
    const dir = freshDir("creds");
    writeFileSync(join(dir, "config.json"), JSON.stringify({ auths: { "index.docker.io": { auth: "b2xkOm9sZA==" } }, HttpHeaders: { "X-A": "b" } }));
    await storeCredentials("docker.io", { username: "new", password: "pw" }, dir);
    const config = JSON.parse(readFileSync(join(dir, "config.json"), "utf8")) as Record<string, unknown>;
    expect(config).toEqual({ auths: { "https://index.docker.io/v1/": { auth: Buffer.from("new:pw").toString("base64") } }, HttpHeaders: { "X-A": "b" } });
    expect(await eraseCredentials("docker.io", dir)).toBe(true);
    expect(await lookupCredentials("docker.io", dir)).toBeUndefined();
  });

  it("reads identity tokens and reports malformed files", async () => {
    const dir = freshDir("creds");
    writeFileSync(join(dir, "config.json"), JSON.stringify({ auths: { "reg.example.com": { auth: Buffer.from("u:").toString("base64"), identitytoken: "tok" } } }));
    expect(await lookupCredentials("reg.example.com", dir)).toEqual({ username: "u", password: "", identityToken: "tok" });

    writeFileSync(join(dir, "config.json"), JSON.stringify({ auths: { "reg.example.com": { auth: Buffer.from("no-colon").toString("base64") } } }));
    const malformed = await caught(lookupCredentials("reg.example.com", dir), "INVALID_CONFIG");
    expect(malformed.message).toContain('malformed "auth" for reg.example.com');

    writeFileSync(join(dir, "config.json"), "{ not json");
    const error = await caught(lookupCredentials("reg.example.com", dir), "INVALID_CONFIG");
    expect(error.message).toContain(join(dir, "config.json"));
    expect(await lookupCredentials("reg.example.com", freshDir("empty"))).toBeUndefined();
  });

  it("normalizes registry names for login", () => {
    expect(normalizeRegistryName("https://index.docker.io/v1/")).toBe("docker.io");
    expect(normalizeRegistryName("index.docker.io")).toBe("docker.io");
    expect(normalizeRegistryName("HTTPS://Reg.Example.com:5000/")).toBe("reg.example.com:5000");
    expect(() => normalizeRegistryName("")).toThrow(/not a registry name/);
  });
});
