import { mkdir, readdir, rm } from "node:fs/promises";
import { join, resolve } from "node:path";
import pLimit from "p-limit";
import { UserError } from "../user-error.ts";
import { exportLocal, writeLayerBlob, writeOciLayout, writeOciTar, type LayerBlob } from "../exporter/index.ts";
import type { BuildDefinition, HistoryEntry, ImageConfig } from "../frontend/index.ts";
import type { SolveResult, Solver } from "../solver/solver.ts";
import { runCommand } from "../solver/ops/command.ts";
import { mountOverlay, unmount } from "../solver/ops/overlay.ts";
import type { LayerInfo, StateRoot } from "../solver/store/index.ts";

export type OutputSpec = { type: "local"; dest: string } | { type: "oci"; dest: string } | { type: "oci-layout"; dest: string };

const NOT_YET = new Set(["image", "docker", "registry", "tar", "cacheonly"]);

/** Parses `-o` values: `type=local,dest=DIR`, `type=oci,dest=FILE`, `type=oci-layout,dest=DIR`, or a bare DIR (local). */
export function parseOutputs(values: readonly string[]): OutputSpec[] {
  return values.map((value) => {
    if (!value.includes("=")) return { type: "local", dest: resolve(value) };
    const fields = new Map(
      value.split(",").map((field) => {
        const equals = field.indexOf("=");
        return equals < 0 ? [field, ""] : [field.slice(0, equals), field.slice(equals + 1)];
      }),
    );
    const type = fields.get("type") ?? "local";
    const dest = fields.get("dest");
    if (NOT_YET.has(type)) throw new UserError(`-o type=${type} is not supported yet`, "use type=local, type=oci or type=oci-layout");
    if (type !== "local" && type !== "oci" && type !== "oci-layout") {
      throw new UserError(`-o "${value}": unknown output type "${type}"`, "use type=local,dest=DIR, type=oci,dest=FILE.tar or type=oci-layout,dest=DIR");
    }
    if (!dest) throw new UserError(`-o "${value}": dest is missing`, `e.g. -o type=${type},dest=${type === "oci" ? "image.tar" : "out"}`);
    return { type, dest: resolve(dest) };
  });
}

export interface ExportRequest {
  outputs: readonly OutputSpec[];
  definition: BuildDefinition;
  result: SolveResult & { kind: "layers" };
  store: StateRoot;
  tags: readonly string[];
  solver: Solver;
  signal: AbortSignal;
}

/** Writes every requested output; returns summary lines for the user. */
export async function exportOutputs(request: ExportRequest): Promise<string[]> {
  const summary: string[] = [];
  const imageOutputs = request.outputs.filter((output) => output.type !== "local");
  for (const output of request.outputs) {
    if (output.type === "local") {
      await exportFilesystem(request, output.dest);
      summary.push(`exported the filesystem to ${output.dest}`);
    }
  }
  if (imageOutputs.length === 0) return summary;
  const image = await imageLayers(request);
  const workDir = request.store.tempPath("export");
  const limit = pLimit(2);
  const blobs = await Promise.all(image.layers.map((layer) => limit(() => writeLayerBlob(layer, workDir, { compression: "gzip", ...sourceDateEpoch() }))));
  for (const output of imageOutputs) {
    const written =
      output.type === "oci"
        ? await writeOciTar(output.dest, { layers: blobs, config: image.config, tags: [...request.tags] })
        : await writeOciLayout(output.dest, { layers: blobs, config: image.config, tags: [...request.tags] });
    summary.push(`exported ${output.type === "oci" ? "an OCI archive" : "an OCI layout"} to ${output.dest}: manifest ${written.manifestDigest}`);
  }
  return summary;
}

function sourceDateEpoch(): { sourceDateEpoch?: number } {
  const epoch = process.env.SOURCE_DATE_EPOCH;
  return epoch && /^\d+$/.test(epoch) ? { sourceDateEpoch: Number(epoch) } : {};
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

export type { LayerBlob };

/**
 * `-o type=local`: as root, the kernel merges the layers (a read-only overlay)
 * and cp copies the tree in one process, far faster than a call per file from
 * Node, when DEST is new or empty; otherwise the exporter walks the layers
 * itself. Either way files in DEST are replaced, never written through, and
 * owners are not kept (as BuildKit's local exporter).
 */
async function exportFilesystem(request: ExportRequest, dest: string): Promise<void> {
  const layers = request.result.layers;
  // cp follows a symlink it finds in an existing destination; only an empty destination is safe for it.
  const destEntries = await readdir(dest).catch(() => [] as string[]);
  if (process.getuid?.() !== 0 || layers.length === 0 || destEntries.length > 0) return exportLocal(layers, dest);
  const work = request.store.tempPath("export-local");
  const view = join(work, "view");
  await mountOverlay({ lower: layers, target: view, emptyDir: join(work, "empty") });
  try {
    await mkdir(dest, { recursive: true });
    await runCommand("cp", ["-R", "--no-dereference", "--preserve=mode,timestamps,links", "--remove-destination", `${view}/.`, `${dest}/`]);
  } finally {
    await unmount(view);
    await rm(work, { recursive: true, force: true });
  }
}
