import { mkdir, readdir, rm } from "node:fs/promises";
import { join } from "node:path";
import pLimit from "p-limit";
import { exportLocal, exportTar, parseAnnotationFlags, writeDockerArchive, writeOciLayout, writeOciTar, type LayerBlob } from "../exporter/index.ts";
import { UserError } from "../user-error.ts";
import { commitImage, familiarName, readStoredImage, storedName, ensureLayerBlob } from "../images/index.ts";
import { formatReference, parseReference, pushImage, registryHosts, type ImageReference, type RegistryOptions } from "../registry/index.ts";
import type { LayerOptions, OutputSpec } from "./output-spec.ts";
import type { BuildDefinition, HistoryEntry, ImageConfig } from "../frontend/index.ts";
import type { SolveResult, Solver } from "../solver/solver.ts";
import { copyTree } from "./copy-tree.ts";
import { mountOverlay, unmount } from "../solver/ops/overlay.ts";
import type { LayerInfo, StateRoot } from "../solver/store/index.ts";

export { parseOutputs, type OutputSpec } from "./output-spec.ts";

export interface ExportRequest {
  outputs: readonly OutputSpec[];
  definition: BuildDefinition;
  result: SolveResult & { kind: "layers" };
  store: StateRoot;
  solver: Solver;
  registry: RegistryOptions;
  /** --label KEY=VALUE: added to the image config. */
  labels: ReadonlyMap<string, string>;
  /** A line for the user while outputs are written (pushes take a while). */
  note: (line: string) => void;
  signal: AbortSignal;
}

type ImageOutput = Exclude<OutputSpec, { type: "local" } | { type: "tar" }>;

/** Writes every requested output; returns summary lines for the user. */
export async function exportOutputs(request: ExportRequest): Promise<string[]> {
  const summary: string[] = [];
  const imageOutputs: ImageOutput[] = [];
  for (const output of request.outputs) {
    if (output.type === "local") {
      await exportFilesystem(request, output.dest);
      summary.push(`exported the filesystem to ${output.dest}`);
    } else if (output.type === "tar") {
      await exportFilesystemTar(request, output.dest);
      if (output.dest !== "-") summary.push(`exported the filesystem as a tar to ${output.dest}`);
    } else imageOutputs.push(output);
  }
  if (imageOutputs.length === 0) return summary;
  const image = await imageLayers(request);
  const config = withLabels(image.config, request.labels);
  const epoch = sourceDateEpoch();
  for (const output of imageOutputs) {
    const blobs = await layerBlobs(request.store, image.layers, output.layers, epoch);
    summary.push(...(await writeImageOutput(request, output, blobs, config, epoch)));
  }
  return summary;
}

const blobLimit = pLimit(2);

/** Compresses the layers (both cores), or reuses the blobs of an earlier export or pull. */
async function layerBlobs(store: StateRoot, layers: readonly LayerInfo[], options: LayerOptions, epoch: number | undefined): Promise<LayerBlob[]> {
  return Promise.all(
    layers.map((layer) =>
      blobLimit(() =>
        ensureLayerBlob(store, layer, {
          compression: options.compression,
          force: options.force,
          ...(options.level !== undefined ? { level: options.level } : {}),
          ...(epoch !== undefined ? { sourceDateEpoch: epoch } : {}),
        }),
      ),
    ),
  );
}

async function writeImageOutput(request: ExportRequest, output: ImageOutput, blobs: LayerBlob[], config: ImageConfig, epoch: number | undefined): Promise<string[]> {
  const annotations = parseAnnotationFlags(output.annotations);
  const options = { ...(output.annotations.length > 0 ? { annotations } : {}), ...(epoch !== undefined ? { sourceDateEpoch: epoch } : {}) };
  if (output.type === "oci" || output.type === "oci-layout") {
    const input = { layers: blobs, config, tags: output.names };
    const dest = output.dest === "-" ? process.stdout : output.dest;
    const written = output.type === "oci" ? await writeOciTar(dest, input, options) : await writeOciLayout(output.dest, input, options);
    return output.dest === "-" ? [] : [`exported ${output.type === "oci" ? "an OCI archive" : "an OCI layout"} to ${output.dest}: manifest ${written.manifestDigest}`];
  }
  if (output.type === "docker") {
    if (annotations.index || annotations.indexDescriptor || annotations.manifest || annotations.manifestDescriptor) {
      throw new UserError("a docker archive has no place for annotations", "use type=oci or type=image for annotated images");
    }
    await writeDockerArchive(output.dest === "-" ? process.stdout : output.dest, [{ config, layers: blobs, tags: output.names }], epoch !== undefined ? { sourceDateEpoch: epoch } : {});
    return output.dest === "-" ? [] : [`exported a docker archive to ${output.dest} (load it with: docker load -i ${output.dest})`];
  }
  if (output.type !== "image") return [];
  if (annotations.index || annotations.indexDescriptor) {
    throw new UserError("index annotations need a multi-platform image", "use manifest annotations (the default type) for a single-platform image");
  }
  const documents = await commitImage(request.store, blobs, config, {
    ...(annotations.manifest ? { annotations: annotations.manifest } : {}),
    ...(epoch !== undefined ? { sourceDateEpoch: epoch } : {}),
  });
  const target = { mediaType: documents.manifestDescriptor.mediaType, digest: documents.manifestDescriptor.digest, size: documents.manifestDescriptor.size };
  const lines: string[] = [];
  const createdAt = new Date().toISOString();
  if (output.store) {
    for (const name of output.names) await request.store.putImageRef({ name: storedName(name), target, createdAt, origin: "build" });
    lines.push(`stored ${output.names.map(familiarName).join(", ")} (manifest ${target.digest})`);
  }
  if (output.push) {
    const registry = output.insecure ? await insecureFor(request.registry, output.names) : request.registry;
    const mountFrom = await blobOrigins(request.store);
    for (const name of output.names) {
      const reference = parseReference(name);
      request.note(`pushing ${formatReference(reference)}`);
      const pushed = await pushImage(
        reference,
        { manifest: documents.manifestJson, mediaType: target.mediaType, blobs: [documents.configDescriptor, ...documents.manifest.layers] },
        request.store,
        { ...registry, mountFrom, signal: request.signal },
      );
      if (output.store) await request.store.putImageRef({ name: storedName(name), target, createdAt, origin: "build", repoDigest: pushed.digest });
      lines.push(`pushed ${formatReference(reference)}@${pushed.digest}`);
    }
  }
  return lines;
}

/** registry.insecure=true: plain http (or unverified TLS) for the output's registries. */
async function insecureFor(options: RegistryOptions, names: readonly string[]): Promise<RegistryOptions> {
  const hosts = options.hosts ?? (await registryHosts({}));
  const insecure = new Set(hosts.insecure);
  for (const name of names) insecure.add(parseReference(name).registry);
  return { ...options, hosts: { ...hosts, insecure } };
}

/** For cross-repository mounts: which pulled image each stored blob came with. */
async function blobOrigins(store: StateRoot): Promise<Map<string, ImageReference>> {
  const origins = new Map<string, ImageReference>();
  for (const ref of await store.listImageRefs()) {
    if (ref.origin !== "pull") continue;
    const manifest = await readStoredImage(store, ref.target).then((image) => image.manifest).catch(() => undefined);
    for (const layer of manifest?.layers ?? []) origins.set(layer.digest, parseReference(ref.name));
  }
  return origins;
}

function withLabels(config: ImageConfig & { history: HistoryEntry[] }, labels: ReadonlyMap<string, string>): ImageConfig & { history: HistoryEntry[] } {
  if (labels.size === 0) return config;
  return { ...config, config: { ...config.config, Labels: { ...(config.config?.Labels ?? {}), ...Object.fromEntries(labels) } } };
}

/** SOURCE_DATE_EPOCH (seconds), for reproducible layers: tar mtimes are clamped to it. */
function sourceDateEpoch(): number | undefined {
  const epoch = process.env.SOURCE_DATE_EPOCH;
  return epoch && /^\d+$/.test(epoch) ? Number(epoch) : undefined;
}

/**
 * The image's layers with their history: each step of the definition adds its
 * vertex's top layer (a base image adds all of its own). A layer with no
 * files is left out and its history entry marked empty, as BuildKit does.
 */
async function imageLayers(request: ExportRequest): Promise<{ layers: LayerInfo[]; config: ImageConfig & { history: HistoryEntry[] } }> {
  const { definition, solver } = request;
  const config = structuredClone(definition.image);
  // A base image's rootfs lists only its own layers: the exporter writes the whole list.
  delete (config as { rootfs?: unknown }).rootfs;
  const layers: LayerInfo[] = [];
  for (const step of definition.layers) {
    const result = await solver.solve(step.vertex);
    if (result.kind !== "layers") continue;
    const produced = step.baseLayers !== undefined ? result.layers.slice(-step.baseLayers) : result.layers.slice(-1);
    for (const layer of produced) {
      if (step.baseLayers === undefined && (await isEmptyLayer(layer))) {
        const entry = config.history[step.history];
        if (entry) entry.empty_layer = true;
        continue;
      }
      layers.push(layer);
    }
  }
  return { layers, config };
}

async function isEmptyLayer(layer: LayerInfo): Promise<boolean> {
  return (await readdir(layer.dir)).length === 0;
}

/**
 * `-o type=local`: as root, the kernel merges the layers (a read-only overlay)
 * and cp processes copy the tree (copy-tree.ts), far faster than a call per file
 * from Node, when DEST is new or empty; otherwise the exporter walks the layers
 * itself. Either way files in DEST are replaced, never written through, and
 * owners are not kept (as BuildKit's local exporter).
 */
async function exportFilesystem(request: ExportRequest, dest: string): Promise<void> {
  try {
    await copyFilesystem(request, dest);
  } catch (error) {
    if (error instanceof UserError) throw error;
    // A destination that cannot take the files (read-only, full, not writable) is the user's to fix, not a crash.
    throw new UserError(`cannot export the filesystem to ${dest}: ${error instanceof Error ? error.message : String(error)}`, "check that the destination can be written and has room");
  }
}

async function copyFilesystem(request: ExportRequest, dest: string): Promise<void> {
  const layers = request.result.layers;
  // cp follows a symlink it finds in an existing destination; only an empty destination is safe for it.
  const destEntries = await readdir(dest).catch(() => [] as string[]);
  if (process.getuid?.() !== 0 || layers.length === 0 || destEntries.length > 0) return exportLocal(layers, dest);
  const work = request.store.tempPath("export-local");
  const view = join(work, "view");
  await mountOverlay({ lower: layers, target: view, emptyDir: join(work, "empty") });
  try {
    await mkdir(dest, { recursive: true });
    await copyTree(view, dest);
  } finally {
    await unmount(view);
    await rm(work, { recursive: true, force: true });
  }
}

/** `-o type=tar`: the final filesystem as one tar (dest "-": standard output). */
async function exportFilesystemTar(request: ExportRequest, dest: string): Promise<void> {
  const epoch = sourceDateEpoch();
  await exportTar(request.result.layers, dest === "-" ? process.stdout : dest, epoch !== undefined ? { sourceDateEpoch: epoch } : {});
}
