import { checkAnnotations, nonEmpty, platformAnnotations, type AnnotationMap, type ImageAnnotations } from "./annotations.ts";
import { sha256Digest } from "./digest.ts";
import { applySourceDateEpoch } from "./epoch.ts";
import { ExporterError } from "./errors.ts";
import { MEDIA_TYPES } from "./media-types.ts";
import { configPlatform, normalizePlatform, platformKey, type Platform } from "../llb/index.ts";

/** An empty JSON object, the value type of ExposedPorts and Volumes. */
export type EmptyObject = Record<string, never>;

export interface HealthConfig {
  /** ["NONE"], ["CMD", ...] or ["CMD-SHELL", "..."]. */
  Test?: string[];
  /** Nanoseconds. */
  Interval?: number;
  Timeout?: number;
  StartPeriod?: number;
  StartInterval?: number;
  Retries?: number;
}

/** The runtime defaults of an image (`config` of the OCI image config; Healthcheck, Shell, OnBuild are Docker's). */
export interface ContainerConfig {
  User?: string;
  ExposedPorts?: Record<string, EmptyObject>;
  Env?: string[];
  Entrypoint?: string[] | null;
  Cmd?: string[] | null;
  Volumes?: Record<string, EmptyObject>;
  WorkingDir?: string;
  Labels?: Record<string, string>;
  StopSignal?: string;
  ArgsEscaped?: boolean;
  Healthcheck?: HealthConfig;
  Shell?: string[];
  OnBuild?: string[] | null;
}

export interface HistoryEntry {
  /** RFC 3339 time. */
  created?: string;
  created_by?: string;
  author?: string;
  comment?: string;
  /** True for steps that made no layer (ENV, CMD...). */
  empty_layer?: boolean;
}

/** The OCI image config (application/vnd.oci.image.config.v1+json). */
export interface ImageConfig {
  created?: string;
  author?: string;
  architecture: string;
  os: string;
  variant?: string;
  "os.version"?: string;
  "os.features"?: string[];
  config?: ContainerConfig;
  rootfs: { type: "layers"; diff_ids: string[] };
  history?: HistoryEntry[];
}

/** An image config as given to the writers: rootfs may be left out (it is filled from the layers). */
export type ImageConfigInput = Omit<ImageConfig, "rootfs"> & { rootfs?: ImageConfig["rootfs"] };

export interface Descriptor {
  mediaType: string;
  digest: string;
  size: number;
  urls?: string[];
  annotations?: Record<string, string>;
  platform?: Platform;
  artifactType?: string;
}

export type { Platform } from "../llb/index.ts";

export interface OciManifest {
  schemaVersion: 2;
  mediaType: string;
  artifactType?: string;
  config: Descriptor;
  layers: Descriptor[];
  subject?: Descriptor;
  annotations?: Record<string, string>;
}

export interface OciIndex {
  schemaVersion: 2;
  mediaType?: string;
  manifests: Descriptor[];
  annotations?: Record<string, string>;
}

/** Field orders of the documents (those of the Go structs BuildKit serializes); unknown fields follow, sorted. */
const ORDER: Record<string, readonly string[]> = {
  image: ["created", "author", "architecture", "variant", "os", "os.version", "os.features", "config", "rootfs", "history"],
  config: [
    "User",
    "ExposedPorts",
    "Env",
    "Entrypoint",
    "Cmd",
    "Volumes",
    "WorkingDir",
    "Labels",
    "StopSignal",
    "ArgsEscaped",
    "Healthcheck",
    "Shell",
    "OnBuild",
  ],
  healthcheck: ["Test", "Interval", "Timeout", "StartPeriod", "StartInterval", "Retries"],
  rootfs: ["type", "diff_ids"],
  history: ["created", "created_by", "author", "comment", "empty_layer"],
  manifest: ["schemaVersion", "mediaType", "artifactType", "config", "layers", "subject", "annotations"],
  index: ["schemaVersion", "mediaType", "artifactType", "manifests", "subject", "annotations"],
  descriptor: ["mediaType", "digest", "size", "urls", "annotations", "data", "platform", "artifactType"],
  platform: ["architecture", "os", "os.version", "os.features", "variant"],
  /** Maps: keys sorted. */
  map: [],
};

/** Which order applies to the value under `key` of an object in order `kind`. */
function childKind(kind: string, key: string): string {
  switch (kind) {
    case "image":
      return key === "config" ? "config" : key === "rootfs" ? "rootfs" : key === "history" ? "history" : "map";
    case "config":
      return key === "Healthcheck" ? "healthcheck" : "map";
    case "manifest":
    case "index":
      if (key === "config" || key === "subject" || key === "layers" || key === "manifests") return "descriptor";
      return "map";
    case "descriptor":
      return key === "platform" ? "platform" : "map";
    default:
      return "map";
  }
}

/**
 * Compact JSON with a fixed key order: the same document always gives the same bytes, so
 * the same digest, whatever order its object was built in. Undefined fields are left out.
 */
export function canonicalJson(value: unknown, kind: keyof typeof ORDER): string {
  return encode(value, kind);
}

function encode(value: unknown, kind: string): string {
  if (Array.isArray(value)) return `[${value.map((item) => encode(item, kind)).join(",")}]`;
  if (value === null || typeof value !== "object") {
    if (typeof value === "number" && !Number.isFinite(value)) throw new TypeError(`cannot serialize ${value} as JSON`);
    return JSON.stringify(value);
  }
  const record = value as Record<string, unknown>;
  const order = ORDER[kind] ?? [];
  const known = order.filter((key) => record[key] !== undefined);
  const rest = Object.keys(record)
    .filter((key) => record[key] !== undefined && !order.includes(key))
    .sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b)));
  const fields = [...known, ...rest].map((key) => `${JSON.stringify(key)}:${encode(record[key], childKind(kind, key))}`);
  return `{${fields.join(",")}}`;
}

/** The config with rootfs set to the layers' diff ids (checked against it if it was given). */
export function completeConfig(config: ImageConfigInput, diffIds: readonly string[]): ImageConfig {
  if (typeof config.architecture !== "string" || config.architecture === "" || typeof config.os !== "string" || config.os === "") {
    throw new ExporterError("ERR_IMAGE_CONFIG", "the image config needs an architecture and an os (e.g. amd64 and linux)");
  }
  const given = config.rootfs?.diff_ids;
  if (given !== undefined && given.length > 0) {
    const same = given.length === diffIds.length && given.every((id, i) => id === diffIds[i]);
    if (!same) {
      throw new ExporterError(
        "ERR_IMAGE_CONFIG",
        `the image config lists ${given.length} diff ids that do not match the ${diffIds.length} layers given ` +
          "(rootfs.diff_ids must be the layers' diffIds, bottom first; leave rootfs out to have it filled in)",
      );
    }
  }
  return { ...config, rootfs: { type: "layers", diff_ids: [...diffIds] }, ...(config.history ? { history: alignHistory(config.history, diffIds.length) } : {}) };
}

/**
 * Makes the history agree with the layers, as BuildKit does: one entry without empty_layer
 * per layer. Missing entries are added at the start (older layers); surplus ones, oldest
 * first, are marked empty_layer.
 */
export function alignHistory(history: readonly HistoryEntry[], layerCount: number): HistoryEntry[] {
  const entries = history.map((entry) => ({ ...entry }));
  let withLayer = entries.filter((entry) => entry.empty_layer !== true).length;
  for (const entry of entries) {
    if (withLayer <= layerCount) break;
    if (entry.empty_layer === true) continue;
    entry.empty_layer = true;
    withLayer--;
  }
  const missing = Array.from({ length: layerCount - withLayer }, () => ({ created_by: "", comment: "layer without a history entry" }));
  return [...missing, ...entries];
}

export interface LayerDescriptorSource {
  digest: string;
  size: number;
  mediaType: string;
}

export interface ImageDocuments {
  config: ImageConfig;
  configJson: Buffer;
  configDescriptor: Descriptor;
  manifest: OciManifest;
  manifestJson: Buffer;
  manifestDescriptor: Descriptor;
}

/**
 * Builds the config and manifest documents of a single-platform image (manifest annotations
 * as given). Kept for callers of this signature: buildImageManifest takes the other options.
 */
export function buildImageDocuments(
  layers: readonly (LayerDescriptorSource & { diffId: string })[],
  config: ImageConfigInput,
  annotations: Record<string, string> | undefined,
  digestOf: (data: Buffer) => string = sha256Digest,
): ImageDocuments {
  return buildImageManifest(layers, config, { ...(annotations ? { annotations } : {}), digestOf });
}

export interface ManifestOptions {
  /** Annotations of the manifest itself. */
  annotations?: AnnotationMap;
  /** Annotations of the descriptor that points at the manifest (manifest-descriptor). */
  descriptorAnnotations?: AnnotationMap;
  /** The descriptor's platform (default: the config's); it must agree with the config. */
  platform?: Platform;
  /** SOURCE_DATE_EPOCH: clamps the config's and its history's `created` (see applySourceDateEpoch). */
  sourceDateEpoch?: number;
  digestOf?: (data: Buffer) => string;
}

/**
 * Builds the config and manifest documents of a single-platform image. The config may be
 * given as an object (rootfs filled from the layers, serialized canonically) or as the bytes
 * of a config blob, used as they are (their rootfs must list the layers' diffIds; an epoch
 * cannot be applied to them).
 */
export function buildImageManifest(
  layers: readonly (LayerDescriptorSource & { diffId: string })[],
  config: ImageConfigInput | Uint8Array,
  options: ManifestOptions = {},
): ImageDocuments {
  const digestOf = options.digestOf ?? sha256Digest;
  const diffIds = layers.map((layer) => layer.diffId);
  let full: ImageConfig;
  let configJson: Buffer;
  if (config instanceof Uint8Array) {
    if (options.sourceDateEpoch !== undefined) {
      throw new ExporterError("ERR_BAD_OPTION", "SOURCE_DATE_EPOCH cannot be applied to an image config given as bytes", {
        hint: "pass the config as an object, or apply applySourceDateEpoch before serializing it",
      });
    }
    configJson = Buffer.from(config);
    full = parseConfigBytes(configJson, diffIds);
  } else {
    const completed = completeConfig(config, diffIds);
    full = options.sourceDateEpoch === undefined ? completed : applySourceDateEpoch(completed, options.sourceDateEpoch);
    configJson = Buffer.from(canonicalJson(full, "image"));
  }
  const configDescriptor: Descriptor = { mediaType: MEDIA_TYPES.ociConfig, digest: digestOf(configJson), size: configJson.length };
  const manifest: OciManifest = {
    schemaVersion: 2,
    mediaType: MEDIA_TYPES.ociManifest,
    config: configDescriptor,
    layers: layers.map((layer) => ({ mediaType: layer.mediaType, digest: layer.digest, size: layer.size })),
  };
  const annotations = nonEmpty(options.annotations);
  if (annotations) manifest.annotations = annotations;
  const manifestJson = Buffer.from(canonicalJson(manifest, "manifest"));
  const own = configPlatform(full);
  if (options.platform && platformKey({ ...options.platform, variant: undefined }) !== platformKey({ ...own, variant: undefined })) {
    throw new ExporterError(
      "ERR_IMAGE_CONFIG",
      `the image for platform ${platformKey(options.platform)} has a config for ${platformKey(own)}: each platform needs its own config`,
    );
  }
  const manifestDescriptor: Descriptor = { mediaType: MEDIA_TYPES.ociManifest, digest: digestOf(manifestJson), size: manifestJson.length };
  const descriptorAnnotations = nonEmpty(options.descriptorAnnotations);
  if (descriptorAnnotations) manifestDescriptor.annotations = descriptorAnnotations;
  manifestDescriptor.platform = options.platform ? normalizePlatform(options.platform) : own;
  return { config: full, configJson, configDescriptor, manifest, manifestJson, manifestDescriptor };
}

/** A config blob given as bytes: JSON with an os, an architecture and the layers' diffIds. */
function parseConfigBytes(data: Buffer, diffIds: readonly string[]): ImageConfig {
  let config: ImageConfig;
  try {
    config = JSON.parse(data.toString("utf8")) as ImageConfig;
  } catch (error) {
    throw new ExporterError("ERR_IMAGE_CONFIG", `the image config bytes are not JSON: ${(error as Error).message}`, { cause: error });
  }
  if (typeof config !== "object" || config === null || typeof config.architecture !== "string" || typeof config.os !== "string") {
    throw new ExporterError("ERR_IMAGE_CONFIG", "the image config bytes are not an image config (it needs an architecture and an os)");
  }
  const given = config.rootfs?.diff_ids;
  if (!Array.isArray(given) || given.length !== diffIds.length || given.some((id, i) => id !== diffIds[i])) {
    throw new ExporterError(
      "ERR_IMAGE_CONFIG",
      `the image config lists ${Array.isArray(given) ? given.length : "no"} diff ids that do not match the ${diffIds.length} layers given ` +
        "(rootfs.diff_ids must be the layers' diffIds, bottom first)",
    );
  }
  return config;
}

/** One manifest of an image index: its descriptor and the platform it is for. */
export interface IndexManifest {
  descriptor: Descriptor;
  platform: Platform;
}

export interface ImageIndexDocument {
  index: OciIndex;
  json: Buffer;
  descriptor: Descriptor;
}

/**
 * The image index of a multi-platform image, as the JSON bytes to store or push: one
 * descriptor per platform (in the order given) with its `platform`, plus index and
 * manifest-descriptor annotations (platform-specific ones on their platform's descriptor).
 */
export function buildImageIndex(manifests: readonly IndexManifest[], annotations?: ImageAnnotations): Buffer {
  return buildImageIndexDocument(manifests, annotations).json;
}

/** buildImageIndex, with the parsed index and the descriptor that points at it. */
export function buildImageIndexDocument(manifests: readonly IndexManifest[], annotations?: ImageAnnotations): ImageIndexDocument {
  const seen = new Set<string>();
  for (const { platform } of manifests) {
    const key = platformKey(platform);
    if (seen.has(key)) throw new ExporterError("ERR_IMAGE_CONFIG", `two images are given for platform ${key}: an image index holds one per platform`);
    seen.add(key);
  }
  checkAnnotations(annotations, manifests.map((m) => m.platform), true);
  const index: OciIndex = {
    schemaVersion: 2,
    mediaType: MEDIA_TYPES.ociIndex,
    manifests: manifests.map(({ descriptor, platform }) => {
      const entry: Descriptor = { mediaType: descriptor.mediaType, digest: descriptor.digest, size: descriptor.size };
      const merged = nonEmpty({ ...descriptor.annotations, ...platformAnnotations(annotations, platform).manifestDescriptor });
      if (merged) entry.annotations = merged;
      entry.platform = normalizePlatform(platform);
      return entry;
    }),
  };
  const indexAnnotations = nonEmpty(annotations?.index);
  if (indexAnnotations) index.annotations = indexAnnotations;
  const json = Buffer.from(canonicalJson(index, "index"));
  return { index, json, descriptor: { mediaType: MEDIA_TYPES.ociIndex, digest: sha256Digest(json), size: json.length } };
}

export const REF_NAME_ANNOTATION = "org.opencontainers.image.ref.name";
export const CONTAINERD_NAME_ANNOTATION = "io.containerd.image.name";

/**
 * How a tag is recorded in index.json. A bare name ("latest", "v1.2": no '/' or ':') is the
 * ref name itself. An image reference ("registry.example.com/app:1.2", "app:1.2") is recorded
 * as BuildKit's OCI exporter does: ref name = its tag ("latest" if it has none), and the full
 * reference in io.containerd.image.name.
 */
export function tagAnnotations(tag: string): Record<string, string> {
  if (tag === "" || /\s/.test(tag)) throw new ExporterError("ERR_IMAGE_CONFIG", `invalid tag ${JSON.stringify(tag)}`);
  if (!tag.includes("/") && !tag.includes(":")) return { [REF_NAME_ANNOTATION]: tag };
  if (tag.includes("@")) {
    throw new ExporterError("ERR_IMAGE_CONFIG", `tag ${JSON.stringify(tag)} has a digest: name the image with a tag instead`);
  }
  const slash = tag.lastIndexOf("/");
  const colon = tag.lastIndexOf(":");
  const hasTag = colon > slash;
  const name = hasTag ? tag.slice(0, colon) : tag;
  const refName = hasTag ? tag.slice(colon + 1) : "latest";
  if (name === "" || refName === "") throw new ExporterError("ERR_IMAGE_CONFIG", `invalid tag ${JSON.stringify(tag)}: expected NAME[:TAG] or a bare tag`);
  return { [CONTAINERD_NAME_ANNOTATION]: hasTag ? tag : `${tag}:latest`, [REF_NAME_ANNOTATION]: refName };
}

/**
 * index.json entries for the tags (one without tag annotations when there are no tags): the
 * descriptor with its own annotations (manifest-descriptor or index-descriptor ones) plus the
 * tag's. Each ref name appears once: tools such as umoci refuse a ref name listed twice, so of
 * "a:1" and "b:1" only the first is recorded.
 */
export function indexEntries(descriptor: Descriptor, tags: readonly string[]): Descriptor[] {
  if (tags.length === 0) return [{ ...descriptor }];
  const seen = new Set<string>();
  const entries: Descriptor[] = [];
  for (const tag of tags) {
    const annotations = { ...descriptor.annotations, ...tagAnnotations(tag) };
    const key = entryKey(annotations);
    if (seen.has(key)) continue;
    seen.add(key);
    entries.push({ mediaType: descriptor.mediaType, digest: descriptor.digest, size: descriptor.size, annotations, ...(descriptor.platform ? { platform: descriptor.platform } : {}) });
  }
  return entries;
}

/** What makes two index.json entries name the same thing (a new one replaces an old one): the ref name. */
export function entryKey(annotations: Record<string, string> | undefined): string {
  return annotations?.[REF_NAME_ANNOTATION] ?? "";
}
