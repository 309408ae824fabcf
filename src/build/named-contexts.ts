import { stat } from "node:fs/promises";
import { resolve } from "node:path";
import { UserError } from "../user-error.ts";
import { emptyImageConfig, type ImageConfig, type ResolvedImage } from "../frontend/index.ts";
import type { GraphBuilder, Platform, SourceOp } from "../llb/index.ts";
import { extractLayer, readOciLayout } from "../exporter/index.ts";
import type { LayerInfo, StateRoot } from "../solver/store/index.ts";
import { loadRemoteSource, type RemoteSourceOptions } from "../solver/sources/index.ts";
import { loadImageSource, resolveRegistryImage, type BaseImageOptions } from "./base-images.ts";

/** `--build-context NAME=VALUE`: a directory, an OCI image layout, or an image (stored or in a registry). */
export type NamedContext = { kind: "dir"; path: string } | { kind: "oci-layout"; path: string; tag?: string } | { kind: "image"; reference: string };

export function parseNamedContexts(values: readonly string[]): Map<string, NamedContext> {
  const contexts = new Map<string, NamedContext>();
  for (const value of values) {
    const equals = value.indexOf("=");
    if (equals <= 0) throw new UserError(`--build-context "${value}": expected NAME=VALUE`, "e.g. --build-context base=oci-layout://./base:latest");
    const name = value.slice(0, equals);
    const target = value.slice(equals + 1);
    if (target.startsWith("docker-image://")) {
      const reference = target.slice("docker-image://".length);
      if (reference === "") throw new UserError(`--build-context ${name}: the image reference is missing`, "e.g. --build-context base=docker-image://alpine:3.20");
      contexts.set(name, { kind: "image", reference });
      continue;
    }
    if (target.startsWith("oci-layout://")) {
      const rest = target.slice("oci-layout://".length);
      const colon = rest.lastIndexOf(":");
      const slash = rest.lastIndexOf("/");
      const hasTag = colon > slash;
      contexts.set(name, { kind: "oci-layout", path: resolve(hasTag ? rest.slice(0, colon) : rest), ...(hasTag ? { tag: rest.slice(colon + 1) } : {}) });
      continue;
    }
    if (/^[a-z]+:\/\//.test(target)) throw new UserError(`--build-context ${name}: "${target}" is not supported`, "use a directory, oci-layout://DIR[:TAG] or docker-image://REF");
    contexts.set(name, { kind: "dir", path: resolve(target) });
  }
  return contexts;
}

/** FROM / COPY --from of something that is not a stage: a named context, or an image (stored, else pulled). */
export async function resolveBaseImage(
  reference: { name: string; isNamedContext: boolean; platform: Platform },
  graph: GraphBuilder,
  namedContexts: ReadonlyMap<string, NamedContext>,
  images: BaseImageOptions,
): Promise<ResolvedImage> {
  const context = namedContexts.get(reference.name);
  if (!context || context.kind === "image") {
    const name = context?.kind === "image" ? context.reference : reference.name;
    const { identifier, image } = await resolveRegistryImage(name, reference.platform, images);
    const layerCount = image.manifest.layers.length;
    const root = layerCount > 0 ? graph.add({ type: "source", identifier }, [], { name: `load ${name}` }) : null;
    return { root, config: normalizeConfig(image.config as unknown as ImageConfig, reference.platform), layerCount };
  }
  if (context.kind === "dir") {
    await requireDirectory(context.path, reference.name);
    const source = graph.add({ type: "source", identifier: `local://${reference.name}` }, [], { name: `load context ${reference.name}` });
    const root = graph.add({ type: "file", actions: [{ action: "copy", sourceInput: 1, sources: ["/"], dest: "/" }] }, [null, source], {
      name: `[context ${reference.name}] copy to a layer`,
    });
    const config = emptyImageConfig(reference.platform);
    config.history = [{ created_by: `context ${reference.name}`, comment: "tsbuild named context" }];
    return { root, config, layerCount: 1 };
  }
  const layout = await readLayout(context, reference.name);
  const op: SourceOp = { type: "source", identifier: `oci-layout://${context.path}@${layout.manifestDigest}`, ...(context.tag ? { attrs: { tag: context.tag } } : {}) };
  const root = layout.layers.length > 0 ? graph.add(op, [], { name: `load ${reference.name} from ${context.path}` }) : null;
  return { root, config: normalizeConfig(layout.config as unknown as ImageConfig, reference.platform), layerCount: layout.layers.length };
}

/** Loads an `oci-layout://` source's layers into the layer store (once per layer: ids are diff ids); `https://…` and `git://…` sources (ADD) are downloaded. */
export async function loadSource(op: SourceOp, store: StateRoot, options: RemoteSourceOptions = {}): Promise<{ layers: LayerInfo[]; cacheKey: string } | undefined> {
  const remote = await loadRemoteSource(op, store, options);
  if (remote) return remote;
  const image = await loadImageSource(op.identifier, store);
  if (image) return image;
  const match = /^oci-layout:\/\/(.+)@(sha256:[0-9a-f]{64})$/.exec(op.identifier);
  if (!match) return undefined;
  const [, path = "", digest = ""] = match;
  const tag = op.attrs?.tag;
  const layout = await readLayout({ kind: "oci-layout", path, ...(tag ? { tag } : {}) }, path);
  if (layout.manifestDigest !== digest) throw new UserError(`the OCI layout at ${path} changed during the build`, "run the build again");
  const layers: LayerInfo[] = [];
  for (const layer of layout.layers) {
    const id = layer.diffId.replace(/^sha256:/, "");
    layers.push(
      (await store.hasLayer(id))
        ? await store.layerInfo(id)
        : await store.createLayer(id, async (dir) => extractLayer(layer.path, layer.mediaType, dir)),
    );
  }
  return { layers, cacheKey: digest };
}

async function readLayout(context: { kind: "oci-layout"; path: string; tag?: string }, name: string) {
  try {
    const layout = await readOciLayout(context.path, context.tag);
    return { ...layout, manifestDigest: layout.manifestDigest };
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error);
    throw new UserError(`cannot read the OCI layout of context "${name}" (${context.path}${context.tag ? `:${context.tag}` : ""}): ${message}`, "check the path and tag");
  }
}

async function requireDirectory(path: string, name: string): Promise<void> {
  const info = await stat(path).catch(() => undefined);
  if (!info?.isDirectory()) throw new UserError(`--build-context ${name}=${path}: not a directory`);
}

function normalizeConfig(config: ImageConfig, platform: Platform): ImageConfig {
  return { ...emptyImageConfig(platform), ...config, config: { ...(config.config ?? {}) }, history: [...(config.history ?? [])] };
}
