import { describe, expect, it } from "vitest";
import {
  applySourceDateEpoch,
  buildImageIndex,
  epochTimestamp,
  familiarTag,
  MEDIA_TYPES,
  parseAnnotationFlags,
  qualifiedTag,
  type ImageConfig,
  type OciIndex,
} from "../../src/exporter/index.ts";
import { sha256 } from "./helpers.ts";

describe("parseAnnotationFlags", () => {
  it("parses BuildKit's [type[,type][platform]:]key=value forms, manifest by default", () => {
    expect(
      parseAnnotationFlags([
        "org.opencontainers.image.title=App",
        "index,manifest:org.opencontainers.image.vendor=Example",
        "manifest-descriptor:com.example.desc=d",
        "index-descriptor:com.example.top=t",
        "manifest[linux/arm64]:org.opencontainers.image.url=https://example.com/arm64",
        "[linux/aarch64/v8]:com.example.same=arm",
        "manifest-descriptor[linux/amd64]:com.example.d=amd",
        "com.example:colon=in the key",
        "empty=",
        "org.opencontainers.image.source=https://git.example/x.git?a=b",
        "org.opencontainers.image.title=Replaced",
      ]),
    ).toEqual({
      manifest: {
        "org.opencontainers.image.title": "Replaced",
        "org.opencontainers.image.vendor": "Example",
        "com.example:colon": "in the key",
        empty: "",
        "org.opencontainers.image.source": "https://git.example/x.git?a=b",
      },
      index: { "org.opencontainers.image.vendor": "Example" },
      manifestDescriptor: { "com.example.desc": "d" },
      indexDescriptor: { "com.example.top": "t" },
      platforms: {
        "linux/arm64": { manifest: { "org.opencontainers.image.url": "https://example.com/arm64", "com.example.same": "arm" } },
        "linux/amd64": { manifestDescriptor: { "com.example.d": "amd" } },
      },
    });
    expect(parseAnnotationFlags([])).toEqual({});
  });

  it("refuses malformed values with a message naming the value and a hint", () => {
    const cases: [string, RegExp][] = [
      ["no-equals", /"no-equals": it has no '='/],
      ["=value", /the key is empty/],
      ["manifest:=value", /the key is empty/],
      ["manfest:key=value", /unknown annotation type "manfest"/],
      ["index,bogus:key=value", /unknown annotation type "bogus"/],
      ["manifest[linux/amd64/v1/x]:key=value", /"linux\/amd64\/v1\/x" is not a platform/],
      ["index[linux/amd64]:key=value", /index annotations belong to the whole image, not to one platform/],
      ["index-descriptor[linux/amd64]:key=value", /index-descriptor annotations belong to the whole image/],
      ["bad key=value", /the key has white space/],
    ];
    for (const [value, message] of cases) {
      let error: unknown;
      try {
        parseAnnotationFlags([value]);
      } catch (caught) {
        error = caught;
      }
      expect(error, value).toMatchObject({ code: "ERR_ANNOTATION", message: expect.stringMatching(message) as unknown });
      expect((error as { hint?: string }).hint).toMatch(/--annotation \[TYPE\[,TYPE\]\[PLATFORM\]:\]KEY=VALUE/);
    }
  });
});

describe("applySourceDateEpoch", () => {
  const config: ImageConfig = {
    created: "2024-06-01T12:00:00.123456789Z",
    architecture: "amd64",
    os: "linux",
    rootfs: { type: "layers", diff_ids: [] },
    history: [
      { created: "2020-01-01T00:00:00Z", created_by: "base layer, older than the epoch" },
      { created: "2024-06-01T12:00:00Z", created_by: "newer" },
      { created_by: "no time" },
      { created: "2023-01-01T02:00:00+03:00", created_by: "2022-12-31T23:00:00Z: before" },
      { created: "2023-01-01T00:00:00.5Z", created_by: "half a second after the epoch" },
    ],
  };
  const epoch = 1_672_531_200; // 2023-01-01T00:00:00Z

  it("clamps created times to the epoch (later or missing → the epoch, earlier kept), as BuildKit", () => {
    const result = applySourceDateEpoch(config, epoch);
    expect(result.created).toBe("2023-01-01T00:00:00Z");
    expect(result.history?.map((entry) => entry.created)).toEqual([
      "2020-01-01T00:00:00Z",
      "2023-01-01T00:00:00Z",
      "2023-01-01T00:00:00Z",
      "2023-01-01T02:00:00+03:00",
      "2023-01-01T00:00:00Z",
    ]);
    expect(result.history?.map((entry) => entry.created_by)).toEqual(config.history?.map((entry) => entry.created_by));
    // Pure: the argument is unchanged.
    expect(config.created).toBe("2024-06-01T12:00:00.123456789Z");
    expect(config.history?.[2]?.created).toBeUndefined();
    // A config without created gets the epoch; one already at the epoch stays the same.
    expect(applySourceDateEpoch({ architecture: "amd64", os: "linux" }, 0)).toEqual({ architecture: "amd64", os: "linux", created: "1970-01-01T00:00:00Z" });
    expect(applySourceDateEpoch(result, epoch)).toEqual(result);
  });

  it("refuses bad epochs and times that are not RFC 3339", () => {
    expect(epochTimestamp(1_700_000_000)).toBe("2023-11-14T22:13:20Z");
    expect(() => applySourceDateEpoch(config, -1)).toThrow(/SOURCE_DATE_EPOCH -1 is not a number of seconds/);
    expect(() => applySourceDateEpoch(config, Number.NaN)).toThrow(/SOURCE_DATE_EPOCH NaN/);
    expect(() => applySourceDateEpoch({ ...config, created: "yesterday" }, epoch)).toThrow(/the image config's created time "yesterday" is not an RFC 3339 time/);
    expect(() => applySourceDateEpoch({ ...config, history: [{ created: "2023-13-45" }] }, epoch)).toThrow(/history entry 0's created time/);
  });
});

describe("buildImageIndex", () => {
  const descriptor = (n: number) => ({ mediaType: MEDIA_TYPES.ociManifest, digest: sha256(`manifest ${n}`), size: 100 + n });

  it("lists one descriptor per platform with its platform and annotations, as canonical JSON", () => {
    const bytes = buildImageIndex(
      [
        { descriptor: descriptor(1), platform: { os: "linux", architecture: "amd64" } },
        { descriptor: { ...descriptor(2), annotations: { "com.example.own": "kept" } }, platform: { os: "linux", architecture: "aarch64" } },
      ],
      {
        index: { "org.opencontainers.image.title": "multi" },
        manifestDescriptor: { "com.example.all": "both" },
        platforms: { "linux/arm64/v8": { manifestDescriptor: { "com.example.arm": "only arm" } } },
      },
    );
    const index = JSON.parse(bytes.toString()) as OciIndex;
    expect(index).toEqual({
      schemaVersion: 2,
      mediaType: MEDIA_TYPES.ociIndex,
      manifests: [
        { ...descriptor(1), annotations: { "com.example.all": "both" }, platform: { architecture: "amd64", os: "linux" } },
        {
          ...descriptor(2),
          annotations: { "com.example.own": "kept", "com.example.all": "both", "com.example.arm": "only arm" },
          platform: { architecture: "arm64", os: "linux" },
        },
      ],
      annotations: { "org.opencontainers.image.title": "multi" },
    });
    expect(bytes.toString()).toMatch(/^\{"schemaVersion":2,"mediaType":"application\/vnd\.oci\.image\.index\.v1\+json","manifests":\[/);
    // The same input gives the same bytes.
    expect(buildImageIndex([{ descriptor: descriptor(1), platform: { os: "linux", architecture: "amd64" } }])).toEqual(
      buildImageIndex([{ descriptor: descriptor(1), platform: { architecture: "amd64", os: "linux" } }]),
    );
  });

  it("refuses two images of one platform and annotations for a platform it does not have", () => {
    const amd = { descriptor: descriptor(1), platform: { os: "linux", architecture: "amd64" } };
    expect(() => buildImageIndex([amd, { ...amd, descriptor: descriptor(2), platform: { os: "linux", architecture: "x86_64" } }])).toThrow(
      /two images are given for platform linux\/amd64/,
    );
    expect(() => buildImageIndex([amd], { platforms: { "linux/s390x": { manifest: { a: "b" } } } })).toThrow(
      /annotations are given for platform linux\/s390x, but the image has linux\/amd64/,
    );
  });
});

describe("image references", () => {
  it("writes tags in the familiar and the qualified form, as docker does", () => {
    const cases: [string, string, string][] = [
      ["app", "app:latest", "docker.io/library/app:latest"],
      ["app:1", "app:1", "docker.io/library/app:1"],
      ["docker.io/library/app:1", "app:1", "docker.io/library/app:1"],
      ["index.docker.io/team/app", "team/app:latest", "docker.io/team/app:latest"],
      ["team/app:1.2", "team/app:1.2", "docker.io/team/app:1.2"],
      ["registry:5000/app:1", "registry:5000/app:1", "registry:5000/app:1"],
      ["localhost/app", "localhost/app:latest", "localhost/app:latest"],
      ["registry.example.com/a/b/c:v1_2-3", "registry.example.com/a/b/c:v1_2-3", "registry.example.com/a/b/c:v1_2-3"],
    ];
    for (const [input, familiar, qualified] of cases) {
      expect(familiarTag(input), input).toBe(familiar);
      expect(qualifiedTag(input), input).toBe(qualified);
    }
  });

  it("refuses what docker refuses, saying why", () => {
    expect(() => familiarTag("App:1")).toThrow(/invalid image reference "App:1"/);
    expect(() => familiarTag("app:")).toThrow(/invalid image reference "app:"/);
    expect(() => familiarTag("app:-x")).toThrow(/invalid image reference "app:-x"/);
    expect(() => familiarTag("app@sha256:" + "a".repeat(64))).toThrow(/names an image by digest, which cannot be a tag/);
    expect(() => familiarTag("a//b")).toThrow(/invalid image reference/);
    expect(() => familiarTag("")).toThrow(/invalid image reference ""/);
  });
});
