import { resolve } from "node:path";
import { UserError } from "../user-error.ts";
import { parseAnnotationFlags } from "../exporter/index.ts";
import type { Compression } from "../images/index.ts";
import { parseReference } from "../registry/reference.ts";

/** How image outputs write their layers. */
export interface LayerOptions {
  compression: Compression;
  level?: number;
  /** Recompress base layers that have another compression too. */
  force: boolean;
}

export type OutputSpec =
  | { type: "local"; dest: string }
  | { type: "tar"; dest: string }
  | { type: "oci" | "oci-layout" | "docker"; dest: string; names: string[]; layers: LayerOptions; annotations: string[] }
  | { type: "image"; names: string[]; push: boolean; store: boolean; insecure: boolean; layers: LayerOptions; annotations: string[] };

export interface OutputDefaults {
  /** -t values: the names of image outputs that give none. */
  tags: readonly string[];
  /** --push: also push (adds an image output if there is none). */
  push: boolean;
  /** --load: also store the image (adds an image output). */
  load: boolean;
}

const IMAGE_KEYS = ["name", "compression", "compression-level", "force-compression", "oci-mediatypes", "annotation.*", "annotation-TYPE.*"];
const KEYS: Record<string, readonly string[]> = {
  local: ["dest"],
  tar: ["dest"],
  oci: ["dest", "tar", ...IMAGE_KEYS],
  "oci-layout": ["dest", ...IMAGE_KEYS],
  docker: ["dest", ...IMAGE_KEYS],
  image: ["push", "store", "registry.insecure", "unpack", ...IMAGE_KEYS],
  registry: ["push", "store", "registry.insecure", "unpack", ...IMAGE_KEYS],
};

/**
 * `-o` values as `docker buildx build` takes them (CSV: `type=image,name="a:1,a:2",push=true`),
 * plus the defaults: with no -o, `-t` stores the image and `--push` pushes it.
 */
export function parseOutputs(values: readonly string[], defaults: OutputDefaults = { tags: [], push: false, load: false }): OutputSpec[] {
  const outputs = values.map((value) => parseOutput(value, defaults));
  const hasImage = outputs.some((output) => output.type === "image");
  if (defaults.push) {
    for (const output of outputs) if (output.type === "image") output.push = true;
    if (!hasImage) outputs.push(imageOutput(new Map(), defaults, true));
  } else if (defaults.load && !hasImage) {
    outputs.push(imageOutput(new Map(), defaults, false));
  } else if (values.length === 0 && defaults.tags.length > 0) {
    outputs.push(imageOutput(new Map(), defaults, false));
  }
  return outputs;
}

function parseOutput(value: string, defaults: OutputDefaults): OutputSpec {
  if (!value.includes("=")) return value === "-" ? { type: "tar", dest: "-" } : { type: "local", dest: resolve(value) };
  const fields = new Map<string, string>();
  for (const field of splitCsv(value)) {
    const equals = field.indexOf("=");
    fields.set(equals < 0 ? field : field.slice(0, equals), equals < 0 ? "" : field.slice(equals + 1));
  }
  const type = fields.get("type") ?? "local";
  fields.delete("type");
  const allowed = KEYS[type];
  if (allowed === undefined) {
    throw new UserError(`-o "${value}": unknown output type "${type}"`, `use one of: ${Object.keys(KEYS).join(", ")}`);
  }
  for (const key of fields.keys()) {
    if (!allowed.includes(key) && !(ANNOTATION_KEY.test(key) && allowed.includes("annotation.*"))) {
      throw new UserError(`-o "${value}": type=${type} has no option "${key}"`, `its options: ${allowed.join(", ")}`);
    }
  }
  if (type === "image" || type === "registry") {
    const push = type === "registry" || booleanField(fields, "push", value, false);
    return imageOutput(fields, defaults, push, value);
  }
  const dest = fields.get("dest");
  if (!dest) throw new UserError(`-o "${value}": dest is missing`, `e.g. -o type=${type},dest=${type === "oci" || type === "docker" || type === "tar" ? "image.tar" : "out"}`);
  const target = dest === "-" && type !== "local" && type !== "oci-layout" ? "-" : resolve(dest);
  if (type === "local" || type === "tar") return { type, dest: target };
  const ociTar = type === "oci" ? booleanField(fields, "tar", value, true) : true;
  return {
    type: type === "oci" && !ociTar ? "oci-layout" : (type as "oci" | "oci-layout" | "docker"),
    dest: target,
    names: type === "docker" ? checkImageNames(namesOf(fields, defaults)) : namesOf(fields, defaults),
    layers: layerOptions(fields, value),
    annotations: annotationsOf(fields),
  };
}

function imageOutput(fields: Map<string, string>, defaults: OutputDefaults, push: boolean, value = "--push"): OutputSpec {
  const names = checkImageNames(namesOf(fields, defaults));
  if (names.length === 0) {
    throw new UserError(`${value === "--push" ? "--push/--load" : `-o "${value}"`}: the image needs a name`, "give one with -t NAME[:TAG] (or name=NAME in the -o value)");
  }
  return {
    type: "image",
    names,
    push,
    store: booleanField(fields, "store", value, true),
    insecure: booleanField(fields, "registry.insecure", value, false),
    layers: layerOptions(fields, value),
    annotations: annotationsOf(fields),
  };
}

function namesOf(fields: Map<string, string>, defaults: OutputDefaults): string[] {
  const name = fields.get("name");
  if (name === undefined || name === "") return [...defaults.tags];
  return name.split(",").map((entry) => entry.trim()).filter((entry) => entry !== "");
}

/** Image names are checked before the build runs, not after it (an OCI layout also takes bare ref names such as "latest"). */
function checkImageNames(names: readonly string[]): string[] {
  for (const name of names) {
    if (parseReference(name).digest !== undefined) throw new UserError(`image name "${name}" contains a digest`, "name the image with a tag, e.g. app:1");
  }
  return [...names];
}

const COMPRESSIONS = ["gzip", "zstd", "uncompressed"] as const;

function layerOptions(fields: Map<string, string>, value: string): LayerOptions {
  const compression = fields.get("compression") ?? "gzip";
  if (!(COMPRESSIONS as readonly string[]).includes(compression)) {
    throw new UserError(`-o "${value}": compression=${compression} is not known`, `use ${COMPRESSIONS.join(", ")}`);
  }
  const options: LayerOptions = { compression: compression as LayerOptions["compression"], force: booleanField(fields, "force-compression", value, false) };
  const level = fields.get("compression-level");
  if (level !== undefined) {
    const max = compression === "zstd" ? 22 : 9;
    if (!/^\d+$/.test(level) || Number(level) > max) throw new UserError(`-o "${value}": compression-level=${level} is out of range`, `use 0-${max} for ${compression}`);
    options.level = Number(level);
  }
  const oci = fields.get("oci-mediatypes");
  if (oci !== undefined && booleanField(fields, "oci-mediatypes", value, true) === false) {
    throw new UserError(`-o "${value}": oci-mediatypes=false is not supported`, "tsbuild writes OCI media types, which every current registry and runtime accepts");
  }
  return options;
}

/** `annotation.KEY`, `annotation-manifest.KEY`, `annotation-index-descriptor.KEY`, … (BuildKit's exporter attributes), optionally with `[os/arch]`. */
const ANNOTATION_KEY = /^annotation(?:-(manifest|index|manifest-descriptor|index-descriptor))?(\[[^\]]+\])?\.(.+)$/;

/** The output's annotations in `--annotation` form (TYPE[platform]:KEY=VALUE), checked now so a mistake stops the build before it starts. */
function annotationsOf(fields: Map<string, string>): string[] {
  const annotations: string[] = [];
  for (const [key, value] of fields) {
    const match = ANNOTATION_KEY.exec(key);
    if (match) annotations.push(`${match[1] ?? "manifest"}${match[2] ?? ""}:${match[3]}=${value}`);
  }
  parseAnnotationFlags(annotations);
  return annotations;
}

function booleanField(fields: Map<string, string>, key: string, value: string, fallback: boolean): boolean {
  const text = fields.get(key);
  if (text === undefined) return fallback;
  if (text === "" || text === "true" || text === "1") return true;
  if (text === "false" || text === "0") return false;
  throw new UserError(`-o "${value}": ${key}=${text} is not true or false`);
}

/** Splits on commas outside double quotes, dropping the quotes (Go's encoding/csv, as buildx reads -o). */
function splitCsv(value: string): string[] {
  const fields: string[] = [];
  let current = "";
  let quoted = false;
  for (const char of value) {
    if (char === '"') quoted = !quoted;
    else if (char === "," && !quoted) {
      fields.push(current);
      current = "";
    } else current += char;
  }
  if (quoted) throw new UserError(`-o "${value}": a double quote is not closed`);
  fields.push(current);
  return fields.map((field) => field.trim()).filter((field) => field !== "");
}
