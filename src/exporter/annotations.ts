import { ExporterError } from "./errors.ts";
import type { Platform } from "./image.ts";
import { parsePlatform, platformKey } from "../llb/index.ts";

export type AnnotationMap = Record<string, string>;

/**
 * Where OCI annotations go, as BuildKit's `--annotation [type[,type][platform]:]key=value`:
 * - `manifest`: each image manifest (the default type);
 * - `manifestDescriptor`: the descriptors of the manifests (in the image index; for a
 *   single-platform image, its entries in an OCI layout's index.json);
 * - `index`: the image index of a multi-platform image;
 * - `indexDescriptor`: the OCI layout's index.json entries that point at that index.
 */
export interface ImageAnnotations {
  manifest?: AnnotationMap;
  index?: AnnotationMap;
  manifestDescriptor?: AnnotationMap;
  indexDescriptor?: AnnotationMap;
  /**
   * Manifest and manifest-descriptor annotations for one platform's image only, keyed by
   * "os/arch[/variant]" (normalized: "linux/arm64", "linux/arm/v7"); they win over the general ones.
   */
  platforms?: Record<string, { manifest?: AnnotationMap; manifestDescriptor?: AnnotationMap }>;
}

const TYPES = {
  manifest: "manifest",
  "manifest-descriptor": "manifestDescriptor",
  index: "index",
  "index-descriptor": "indexDescriptor",
} as const;

const PREFIX = /^([a-z-]+(?:,[a-z-]+)*)?(?:\[([^\]]*)\])?$/;
const HINT = "write --annotation [TYPE[,TYPE][PLATFORM]:]KEY=VALUE with TYPE manifest (the default), manifest-descriptor, index or index-descriptor, e.g. index,manifest:org.opencontainers.image.title=App";

/**
 * Parses `--annotation` values: `KEY=VALUE`, `TYPE:KEY=VALUE`, `TYPE,TYPE:KEY=VALUE`,
 * `TYPE[os/arch]:KEY=VALUE` or `[os/arch]:KEY=VALUE`. The text before the first ":" is a
 * prefix only when it looks like one (so "com.example:key=v" is a key); a later value for
 * the same type, platform and key wins.
 */
export function parseAnnotationFlags(values: readonly string[]): ImageAnnotations {
  const result: ImageAnnotations = {};
  for (const value of values) {
    const equals = value.indexOf("=");
    if (equals < 0) throw bad(value, "it has no '='");
    const spec = value.slice(0, equals);
    const text = value.slice(equals + 1);
    const colon = spec.indexOf(":");
    const prefix = colon < 0 ? undefined : PREFIX.exec(spec.slice(0, colon));
    const key = prefix ? spec.slice(colon + 1) : spec;
    if (key === "" || /\s/.test(key)) throw bad(value, key === "" ? "the key is empty" : "the key has white space");

    const typeNames = prefix?.[1]?.split(",") ?? ["manifest"];
    const platformText = prefix?.[2];
    let platform: string | undefined;
    if (platformText !== undefined) {
      const parsed = parsePlatform(platformText);
      if (!parsed) throw bad(value, `${JSON.stringify(platformText)} is not a platform (os/arch[/variant], e.g. linux/arm64)`);
      platform = platformKey(parsed);
    }
    for (const name of typeNames) {
      const type = TYPES[name as keyof typeof TYPES];
      if (type === undefined) throw bad(value, `unknown annotation type ${JSON.stringify(name)}`);
      if (platform === undefined) {
        (result[type] ??= {})[key] = text;
        continue;
      }
      if (type !== "manifest" && type !== "manifestDescriptor") {
        throw bad(value, `${name} annotations belong to the whole image, not to one platform`);
      }
      const forPlatform = ((result.platforms ??= {})[platform] ??= {});
      (forPlatform[type] ??= {})[key] = text;
    }
  }
  return result;
}

function bad(value: string, reason: string): ExporterError {
  return new ExporterError("ERR_ANNOTATION", `--annotation ${JSON.stringify(value)}: ${reason}`, { hint: HINT });
}

/** The manifest and manifest-descriptor annotations of one platform's image: general ones, then its own. */
export function platformAnnotations(annotations: ImageAnnotations | undefined, platform: Platform): { manifest: AnnotationMap; manifestDescriptor: AnnotationMap } {
  const key = platformKey(platform);
  const own = Object.entries(annotations?.platforms ?? {}).find(([name]) => {
    const parsed = parsePlatform(name);
    return parsed !== undefined && platformKey(parsed) === key;
  })?.[1];
  return {
    manifest: { ...annotations?.manifest, ...own?.manifest },
    manifestDescriptor: { ...annotations?.manifestDescriptor, ...own?.manifestDescriptor },
  };
}

/**
 * Checks annotations against what is written: platform-specific ones must name a platform of
 * the image, and index ones need an index (a single-platform image has none; BuildKit refuses
 * them there too, rather than dropping them silently).
 */
export function checkAnnotations(annotations: ImageAnnotations | undefined, platforms: readonly Platform[], hasIndex: boolean): void {
  if (!annotations) return;
  const keys = new Set(platforms.map(platformKey));
  for (const key of Object.keys(annotations.platforms ?? {})) {
    const parsed = parsePlatform(key);
    if (!parsed || !keys.has(platformKey(parsed))) {
      throw new ExporterError("ERR_ANNOTATION", `annotations are given for platform ${key}, but the image has ${[...keys].join(", ") || "no platform"}`, {
        hint: "annotate one of the image's platforms, or drop the [platform] part to annotate them all",
      });
    }
  }
  for (const [type, map] of [["index", annotations.index], ["index-descriptor", annotations.indexDescriptor]] as const) {
    if (!hasIndex && map && Object.keys(map).length > 0) {
      throw new ExporterError("ERR_ANNOTATION", `${type} annotations need a multi-platform image, and this one has a single platform (no image index)`, {
        hint: "use manifest or manifest-descriptor annotations, or build for several platforms",
      });
    }
  }
}

/** The map, or undefined when it is empty (so no empty "annotations" object is written). */
export function nonEmpty(map: AnnotationMap | undefined): AnnotationMap | undefined {
  return map && Object.keys(map).length > 0 ? { ...map } : undefined;
}
