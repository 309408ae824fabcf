import { resolve } from "node:path";
import { describe, expect, it } from "vitest";
import { parseOutputs } from "../../src/build/output-spec.ts";
import { UserError } from "../../src/user-error.ts";

const noDefaults = { tags: [], push: false, load: false };
const gzip = { compression: "gzip", force: false };

describe("parseOutputs", () => {
  it("reads each type with its options", () => {
    expect(parseOutputs(["out"], noDefaults)).toEqual([{ type: "local", dest: resolve("out") }]);
    expect(parseOutputs(["-"], noDefaults)).toEqual([{ type: "tar", dest: "-" }]);
    expect(parseOutputs(["type=tar,dest=fs.tar"], noDefaults)).toEqual([{ type: "tar", dest: resolve("fs.tar") }]);
    expect(parseOutputs(["type=oci,dest=-"], { ...noDefaults, tags: ["app:1"] })).toEqual([{ type: "oci", dest: "-", names: ["app:1"], layers: gzip, annotations: [] }]);
    expect(parseOutputs(["type=oci,dest=dir,tar=false"], noDefaults)).toEqual([{ type: "oci-layout", dest: resolve("dir"), names: [], layers: gzip, annotations: [] }]);
    expect(parseOutputs(["type=docker,dest=a.tar,name=x:1,compression=zstd,compression-level=19,force-compression=true"], noDefaults)).toEqual([
      { type: "docker", dest: resolve("a.tar"), names: ["x:1"], layers: { compression: "zstd", level: 19, force: true }, annotations: [] },
    ]);
  });

  it("reads image and registry outputs, with quoted name lists and annotations", () => {
    expect(parseOutputs(['type=image,"name=a:1,b:2",push=true,annotation.org.example=yes'], noDefaults)).toEqual([
      { type: "image", names: ["a:1", "b:2"], push: true, store: true, insecure: false, layers: gzip, annotations: ["manifest:org.example=yes"] },
    ]);
    expect(parseOutputs(["type=registry,registry.insecure=true"], { ...noDefaults, tags: ["r:5000/a"] })).toEqual([
      { type: "image", names: ["r:5000/a"], push: true, store: true, insecure: true, layers: gzip, annotations: [] },
    ]);
  });

  it("stores a tagged image when no output is given, and --push / --load add image outputs", () => {
    expect(parseOutputs([], { tags: ["app"], push: false, load: false })).toMatchObject([{ type: "image", names: ["app"], push: false }]);
    expect(parseOutputs([], noDefaults)).toEqual([]);
    expect(parseOutputs(["type=local,dest=out"], { tags: ["app"], push: true, load: false })).toMatchObject([{ type: "local" }, { type: "image", push: true }]);
    expect(parseOutputs(["type=image"], { tags: ["app"], push: true, load: false })).toMatchObject([{ type: "image", push: true }]);
    expect(parseOutputs(["type=oci,dest=x.tar"], { tags: ["app"], push: false, load: true })).toMatchObject([{ type: "oci" }, { type: "image", push: false }]);
  });

  it.each([
    ["type=nope,dest=x", /unknown output type "nope"/],
    ["type=local", /dest is missing/],
    ["type=local,dest=x,compression=gzip", /type=local has no option "compression"/],
    ["type=oci,dest=x,compression=lz4", /compression=lz4 is not known/],
    ["type=oci,dest=x,compression-level=10", /compression-level=10 is out of range/],
    ["type=oci,dest=x,compression=zstd,compression-level=23", /out of range/],
    ["type=image,push=maybe", /push=maybe is not true or false/],
    ["type=image", /the image needs a name/],
    ["type=oci,dest=x,oci-mediatypes=false", /oci-mediatypes=false is not supported/],
    ['type=image,name="a', /double quote is not closed/],
    ["type=image,name=a,annotation-nope.k=v", /has no option "annotation-nope.k"/],
  ])("refuses %s", (value, message) => {
    expect(() => parseOutputs([value], noDefaults)).toThrow(UserError);
    expect(() => parseOutputs([value], noDefaults)).toThrow(message);
  });

  it("checks image names before the build", () => {
    expect(() => parseOutputs([], { tags: ["Bad/Name"], push: false, load: false })).toThrow(/invalid image reference "Bad\/Name"/);
    expect(() => parseOutputs(["type=docker,dest=x.tar"], { tags: [`app@sha256:${"a".repeat(64)}`], push: false, load: false })).toThrow(/contains a digest/);
    expect(parseOutputs(["type=oci,dest=x.tar"], { tags: ["latest"], push: false, load: false })).toMatchObject([{ names: ["latest"] }]);
  });

  it("asks for a name when --push has none", () => {
    expect(() => parseOutputs([], { tags: [], push: true, load: false })).toThrow(/needs a name/);
  });
});
