import { describe, expect, it } from "vitest";
import { RegistryError, formatReference, parseReference, type ImageReference } from "../../src/registry/index.ts";

const DIGEST = `sha256:${"a".repeat(64)}`;

describe("parseReference", () => {
  const valid: [string, ImageReference][] = [
    ["alpine", { registry: "docker.io", repository: "library/alpine", tag: "latest" }],
    ["alpine:3.20", { registry: "docker.io", repository: "library/alpine", tag: "3.20" }],
    ["user/app", { registry: "docker.io", repository: "user/app", tag: "latest" }],
    ["user/app:1", { registry: "docker.io", repository: "user/app", tag: "1" }],
    ["docker.io/alpine", { registry: "docker.io", repository: "library/alpine", tag: "latest" }],
    ["docker.io/library/alpine:edge", { registry: "docker.io", repository: "library/alpine", tag: "edge" }],
    ["index.docker.io/library/alpine", { registry: "docker.io", repository: "library/alpine", tag: "latest" }],
    ["index.docker.io/user/app:v2", { registry: "docker.io", repository: "user/app", tag: "v2" }],
    ["localhost/x", { registry: "localhost", repository: "x", tag: "latest" }],
    ["localhost:5000/x", { registry: "localhost:5000", repository: "x", tag: "latest" }],
    ["localhost:5000/x:y", { registry: "localhost:5000", repository: "x", tag: "y" }],
    ["127.0.0.1:5000/a/b:t", { registry: "127.0.0.1:5000", repository: "a/b", tag: "t" }],
    ["[::1]:5000/a:t", { registry: "[::1]:5000", repository: "a", tag: "t" }],
    ["reg.example.com/a", { registry: "reg.example.com", repository: "a", tag: "latest" }],
    ["reg.example.com/a/b/c/d:1.2.3", { registry: "reg.example.com", repository: "a/b/c/d", tag: "1.2.3" }],
    [`reg.example.com/a@${DIGEST}`, { registry: "reg.example.com", repository: "a", digest: DIGEST }],
    [`name:tag@${DIGEST}`, { registry: "docker.io", repository: "library/name", tag: "tag", digest: DIGEST }],
    [`alpine@${DIGEST}`, { registry: "docker.io", repository: "library/alpine", digest: DIGEST }],
    ["a.b-c/d_e__f/g--h.i", { registry: "a.b-c", repository: "d_e__f/g--h.i", tag: "latest" }],
    ["my-reg:443/ns/img:Tag_1.x-Y", { registry: "my-reg:443", repository: "ns/img", tag: "Tag_1.x-Y" }],
    ["Reg.Example.COM/app", { registry: "Reg.Example.COM", repository: "app", tag: "latest" }],
    // An uppercase first component is a host, as in Docker.
    ["Registry/app", { registry: "Registry", repository: "app", tag: "latest" }],
    [`x@sha512:${"b".repeat(128)}`, { registry: "docker.io", repository: "library/x", digest: `sha512:${"b".repeat(128)}` }],
    ["a/b/c", { registry: "docker.io", repository: "a/b/c", tag: "latest" }],
    [`app:${"t".repeat(128)}`, { registry: "docker.io", repository: "library/app", tag: "t".repeat(128) }],
  ];
  it.each(valid)("%s", (text, expected) => {
    expect(parseReference(text)).toEqual(expected);
  });

  const invalid: [string, RegExp][] = [
    ["", /empty/],
    ["Alpine", /must be lowercase/],
    ["docker.io/User/app", /must be lowercase/],
    ["reg.example.com/App:1", /must be lowercase/],
    ["alpine:", /tag "" is not valid/],
    ["alpine:-x", /tag "-x" is not valid/],
    ["alpine:.x", /tag ".x" is not valid/],
    [`alpine:${"t".repeat(129)}`, /tag .* is not valid/],
    ["alpine:a+b", /tag "a\+b" is not valid/],
    ["alpine@sha256:abc", /digest "sha256:abc" is not valid/],
    [`alpine@sha256:${"A".repeat(64)}`, /is not valid/],
    [`alpine@md5:${"a".repeat(32)}`, /algorithm "md5" is not supported/],
    ["alpine@", /digest "" is not valid/],
    ["alpine@latest", /digest "latest" is not valid/],
    ["a b", /white space/],
    ["reg.example.com/", /repository name is missing/],
    ["reg.example.com//x", /empty path component/],
    ["/alpine", /empty path component|registry/],
    ["a/-b", /path component "-b"/],
    ["a/b_", /path component "b_"/],
    ["a/b...c", /path component "b...c"/],
    ["-reg.com/x", /registry "-reg.com"/],
    ["re_g.com/x", /registry "re_g.com" is not a valid host/],
    [":tag", /name is missing/],
    ["a".repeat(64).replace(/a/g, "f"), /image ID/],
    [`reg.example.com/${"a".repeat(260)}`, /longer than 255/],
  ];
  it.each(invalid)("rejects %j", (text, problem) => {
    let error: unknown;
    try {
      parseReference(text);
    } catch (caught) {
      error = caught;
    }
    expect(error).toBeInstanceOf(RegistryError);
    const registryError = error as RegistryError;
    expect(registryError.code).toBe("INVALID_REFERENCE");
    expect(registryError.message).toContain(JSON.stringify(text));
    expect(registryError.message).toMatch(problem);
    expect(registryError.hint).toMatch(/NAME\[:TAG\]/);
  });
});

describe("formatReference", () => {
  const cases: [string, string, string][] = [
    ["alpine", "docker.io/library/alpine:latest", "alpine:latest"],
    ["user/app:1", "docker.io/user/app:1", "user/app:1"],
    ["docker.io/library/a/b", "docker.io/library/a/b:latest", "library/a/b:latest"],
    ["localhost:5000/x", "localhost:5000/x:latest", "localhost:5000/x:latest"],
    [`reg.example.com/a@${DIGEST}`, `reg.example.com/a@${DIGEST}`, `reg.example.com/a@${DIGEST}`],
    [`name:tag@${DIGEST}`, `docker.io/library/name:tag@${DIGEST}`, `name:tag@${DIGEST}`],
  ];
  it.each(cases)("%s", (text, full, familiar) => {
    const ref = parseReference(text);
    expect(formatReference(ref)).toBe(full);
    expect(formatReference(ref, { familiar: true })).toBe(familiar);
    // Both forms parse back to the same reference.
    expect(parseReference(full)).toEqual(ref);
    expect(parseReference(familiar)).toEqual(ref);
  });
});
