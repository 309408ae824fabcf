import { randomUUID } from "node:crypto";
import { rm } from "node:fs/promises";
import pLimit from "p-limit";
import type { LocalContext, Selection } from "../context/index.ts";
import { canonicalJson, sha256, type CopyAction, type ExecOp, type FileOp, type SourceOp, type Vertex } from "../llb/index.ts";
import { LayeredFS, type LayerInfo, type StateRoot } from "./store/index.ts";
import { UserError } from "../user-error.ts";
import { BuildCancelledError, BuildStepError } from "./errors.ts";
import type { SolveListener } from "./events.ts";
import { applyFileOp, type FileOpResult } from "./ops/file-op.ts";
import { PreviousFiles } from "./ops/link-files.ts";
import { commitUpperDir } from "./ops/commit.ts";
import type { ExecResult, MountSource } from "./ops/exec-op.ts";
import { LayerViews } from "./ops/overlay.ts";
import { StepLog } from "./step-log.ts";
import { CacheMounts } from "./cache-mounts.ts";
import { layerSelectionChecksum } from "./selection-checksum.ts";
import { ContextTree, LayerTree, type SourceTree } from "./ops/source-tree.ts";

/** What a vertex produced: a stack of layers, or a local directory that COPY reads from. */
export type SolveResult =
  | { kind: "layers"; layers: LayerInfo[]; cacheKey: string }
  | { kind: "context"; context: LocalContext; cacheKey: string };

/** Loads a filesystem from outside the graph (named contexts of images, later registries). */
export type SourceLoader = (op: SourceOp, store: StateRoot) => Promise<{ layers: LayerInfo[]; cacheKey: string } | undefined>;

export interface SolverOptions {
  vertices: ReadonlyMap<string, Vertex>;
  store: StateRoot;
  /** Local directories by source identifier (`local://context`, `local://<name>`). */
  localContexts: ReadonlyMap<string, LocalContext>;
  loadSource: SourceLoader;
  /** Ignore every cached result (--no-cache). */
  noCache: boolean;
  /** A secret's value by id (--secret), for RUN --mount=type=secret. */
  secret: (id: string) => Promise<Buffer | undefined>;
  /** The agent socket for RUN --mount=type=ssh,id=ID (--ssh), if one was given. */
  ssh?: (id: string) => string | undefined;
  /** Start cache mounts empty (--no-cache unless --keep-cache-mounts). */
  freshCacheMounts?: boolean;
  /** Run RUN steps with our sandbox (default) or hand the same spec to runc/crun. */
  runtime?: "tsbuild" | "runc" | "crun";
  /** How many ops run at once. */
  concurrency: number;
  signal: AbortSignal;
  listener: SolveListener;
}

const EMPTY: SolveResult = { kind: "layers", layers: [], cacheKey: sha256("scratch") };

/**
 * Runs the graph: each vertex once however many users it has, inputs before
 * users, independent vertices in parallel. A vertex whose cache key is in the
 * index is not run: its recorded layers are reused.
 */
export class Solver {
  private readonly results = new Map<string, Promise<SolveResult>>();
  private readonly limit: ReturnType<typeof pLimit>;
  /** Vertices that ran (not cached), for tests and the summary. */
  readonly executed: string[] = [];

  private readonly cacheMounts: CacheMounts;
  /** Checksums of what `COPY --from` steps select, started as soon as their source stage is ready. */
  private readonly selectionChecksums = new Map<string, Promise<string>>();
  /** Read-only overlays of layer stacks that COPY --from reads, mounted on first use, unmounted by close(). */
  private readonly views: LayerViews;
  /** One tree per layer stack, so the checksum of a selection and the copy share one walk. */
  private readonly layerTrees = new Map<string, LayerTree>();

  constructor(private readonly options: SolverOptions) {
    this.limit = pLimit(Math.max(1, options.concurrency));
    this.cacheMounts = new CacheMounts(options.store.dir, options.freshCacheMounts ?? false);
    this.views = new LayerViews((label) => options.store.tempPath(label));
  }

  /** Unmounts what the solve mounted; call once it is over (also after a failure). */
  close(): Promise<void> {
    return this.views.close();
  }

  solve(digest: string | null): Promise<SolveResult> {
    if (digest === null) return Promise.resolve(EMPTY);
    let result = this.results.get(digest);
    if (!result) {
      const vertex = this.options.vertices.get(digest);
      if (!vertex) return Promise.reject(new Error(`the build graph has no vertex ${digest}`));
      result = this.solveVertex(vertex);
      this.results.set(digest, result);
    }
    return result;
  }

  private async solveVertex(vertex: Vertex): Promise<SolveResult> {
    this.checksumSourcesEarly(vertex);
    const inputs = await Promise.all(vertex.inputs.map((input) => this.solve(input)));
    this.throwIfCancelled();
    try {
      return await this.produce(vertex, inputs);
    } catch (error) {
      if (error instanceof BuildStepError && error.step !== undefined) throw error;
      if (error instanceof UserError) {
        this.options.listener({ type: "error", vertex: vertex.digest, name: vertex.name, time: Date.now(), message: error.message });
        const hint = error.hint;
        throw new BuildStepError(error.message, { step: vertex.name, ...(vertex.location ? { location: vertex.location } : {}), ...(hint ? { hint } : {}), cause: error });
      }
      throw error;
    }
  }

  private async produce(vertex: Vertex, inputs: SolveResult[]): Promise<SolveResult> {
    const { op } = vertex;
    switch (op.type) {
      case "merge":
        return {
          kind: "layers",
          layers: inputs.flatMap((input) => (input.kind === "layers" ? input.layers : [])),
          cacheKey: sha256(canonicalJson({ merge: inputs.map((input) => input.cacheKey) })),
        };
      case "source":
        return this.source(vertex, op);
      case "exec":
        return this.execOp(vertex, op, inputs);
      case "file":
        return this.fileOp(vertex, op, inputs);
    }
  }

  private async source(vertex: Vertex, op: SourceOp): Promise<SolveResult> {
    const local = this.options.localContexts.get(op.identifier);
    if (local) return { kind: "context", context: local, cacheKey: vertex.digest };
    this.emit({ type: "start", vertex: vertex.digest, name: vertex.name });
    const started = Date.now();
    const loaded = await this.limit(() => this.options.loadSource(op, this.options.store));
    if (!loaded) {
      throw new BuildStepError(`cannot load ${op.identifier}: this source is not supported yet`, {
        hint: "base images come from the image store, a registry, or --build-context NAME=oci-layout://DIR",
      });
    }
    this.emit({ type: "done", vertex: vertex.digest, name: vertex.name, durationMs: Date.now() - started });
    return { kind: "layers", ...loaded };
  }

  private async fileOp(vertex: Vertex, op: FileOp, inputs: SolveResult[]): Promise<SolveResult> {
    const [base = EMPTY, ...sources] = inputs;
    if (base.kind !== "layers") throw new Error("a file op cannot change a local context");
    const { cacheKey, selections } = await this.fileOpCacheKey(vertex, op, inputs);
    const source = (action: CopyAction) => this.sourceTree(sources[action.sourceInput - 1], selections.get(action));
    return this.layerStep(vertex, base, cacheKey, (layerId) => this.writeFileLayer(op, layerId, base.layers, source, this.reuseKey(vertex, inputs)));
  }

  /**
   * A file op's new layer. Files that the step's previous run copied unchanged from the same
   * context are linked from its layer (link-files.ts); what this run copied is recorded for the next.
   */
  private async writeFileLayer(
    op: FileOp,
    layerId: string,
    baseLayers: LayerInfo[],
    source: (action: CopyAction) => SourceTree,
    reuseKey: string | undefined,
  ): Promise<LayerInfo> {
    const reusable = reuseKey === undefined ? undefined : await this.options.store.getReusableFiles(reuseKey);
    const previous = reusable && new PreviousFiles(reusable.layer.dir, [reusable.layer.id, ...reusable.layer.linkedFrom], reusable.files);
    let fileIdentities: FileOpResult["fileIdentities"];
    const layer = await this.options.store.createLayer(layerId, async (layerDir) => {
      const result = await applyFileOp(op, { layerDir, base: new LayeredFS(baseLayers), baseLayers, source, ...(previous ? { previous } : {}) });
      fileIdentities = result.fileIdentities;
      return { linkedFrom: result.linkedFrom, linkedBytes: result.linkedBytes };
    });
    if (reuseKey !== undefined && fileIdentities !== undefined && fileIdentities.size > 0) {
      await this.options.store.putReusableFiles(reuseKey, { layerId: layer.id, files: fileIdentities });
    }
    return layer;
  }

  private async execOp(vertex: Vertex, op: ExecOp, inputs: SolveResult[]): Promise<SolveResult> {
    const [base = EMPTY] = inputs;
    if (base.kind !== "layers") throw new Error("a RUN step cannot run on a local context");
    const cacheKey = await this.execCacheKey(vertex, op, inputs);
    return this.layerStep(vertex, base, cacheKey, async (layerId) => {
      const log = await StepLog.open(this.options.store, vertex, (stream, data) =>
        this.options.listener({ type: "log", vertex: vertex.digest, time: Date.now(), stream, data }),
      );
      let result: ExecResult | undefined;
      try {
        // The sandbox and network code load only for builds that have RUN steps.
        const { runExecOp } = await import("./ops/exec-op.ts");
        result = await runExecOp(op, {
          store: this.options.store,
          base: base.layers,
          mountSource: (index) => mountSource(index === undefined ? undefined : inputs[index]),
          secret: this.options.secret,
          ssh: this.options.ssh ?? (() => undefined),
          output: log.streams,
          signal: this.options.signal,
          tail: () => log.tail(),
          cacheMounts: this.cacheMounts,
          runtime: this.options.runtime ?? "tsbuild",
        });
        const upper = result.upperDir;
        return await this.options.store.createLayer(layerId, (layerDir) => commitUpperDir(upper, layerDir));
      } catch (error) {
        if (error instanceof BuildStepError) throw new BuildStepError(`${error.message}\nfull log: ${log.path}`, { ...(error.hint ? { hint: error.hint } : {}), cause: error });
        throw error;
      } finally {
        await log.close();
        if (result) await rm(result.workDir, { recursive: true, force: true });
      }
    });
  }

  /**
   * A step that adds one layer: reuse a recorded result, or make the layer
   * (`make` gets the layer id), record it and report progress. Bypassing the
   * cache must really run the step: a fresh layer id, and a result key of its
   * own so that the steps built on it run again too.
   */
  private async layerStep(
    vertex: Vertex,
    base: SolveResult & { kind: "layers" },
    cacheKey: string,
    make: (layerId: string) => Promise<LayerInfo>,
  ): Promise<SolveResult> {
    const reused = await this.cached(vertex, cacheKey, base);
    if (reused) return reused;
    this.emit({ type: "start", vertex: vertex.digest, name: vertex.name });
    const started = Date.now();
    const bypass = this.options.noCache || vertex.ignoreCache === true;
    const layerId = cacheKey.replace(/^sha256:/, "") + (bypass ? `-${randomUUID().slice(0, 8)}` : "");
    const layer = await this.limit(() => {
      this.throwIfCancelled();
      return make(layerId);
    });
    this.executed.push(vertex.digest);
    const layers = [...base.layers, layer];
    await this.options.store.putCacheRecord({ key: cacheKey, layers: layers.map((info) => info.id), description: vertex.name });
    this.emit({ type: "done", vertex: vertex.digest, name: vertex.name, durationMs: Date.now() - started });
    return { kind: "layers", layers, cacheKey: bypass ? sha256(`${cacheKey} ${layerId}`) : cacheKey };
  }

  /**
   * Names a step that copies from a local context across its runs: its op and the context
   * directories, not their contents nor the base it copies onto (a layer's files do not
   * depend on the base). Undefined when the cache is bypassed: then everything is copied.
   */
  private reuseKey(vertex: Vertex, inputs: SolveResult[]): string | undefined {
    if (this.options.noCache || vertex.ignoreCache === true) return undefined;
    const contexts = inputs.flatMap((input) => (input.kind === "context" ? [input.context.dir] : []));
    if (contexts.length === 0) return undefined;
    return sha256(canonicalJson({ reuse: vertex.op, contexts }));
  }

  /** The op and its inputs, plus the checksum of context directories bound into it (secrets and cache mounts never count). */
  private async execCacheKey(vertex: Vertex, op: ExecOp, inputs: SolveResult[]): Promise<string> {
    const contextChecksums: string[] = [];
    for (const mount of op.mounts) {
      const input = mount.input === undefined ? undefined : inputs[mount.input];
      if (input?.kind !== "context") continue;
      const selection = await input.context.select([mount.source ?? "."], { followLinks: true });
      contextChecksums.push(await input.context.checksum(selection, { ignoreOwner: true }));
    }
    return sha256(canonicalJson({ vertex: vertex.digest, inputs: inputs.map((input) => input.cacheKey), contextChecksums }));
  }

  /** A recorded result whose layers all still exist, unless the cache is bypassed. */
  private async cached(vertex: Vertex, cacheKey: string, base: SolveResult & { kind: "layers" }): Promise<SolveResult | undefined> {
    if (this.options.noCache || vertex.ignoreCache) return undefined;
    const record = await this.options.store.getCacheRecord(cacheKey);
    if (!record) return undefined;
    const top = record.layers[record.layers.length - 1];
    if (top === undefined || record.layers.length !== base.layers.length + 1 || !(await this.options.store.hasLayer(top))) return undefined;
    this.emit({ type: "cached", vertex: vertex.digest, name: vertex.name });
    return { kind: "layers", layers: [...base.layers, await this.options.store.layerInfo(top)], cacheKey };
  }

  /**
   * The op's digest, its inputs' keys, and for copies from a local context the
   * checksum of exactly the files they select (so an unrelated edit is a hit).
   */
  private async fileOpCacheKey(
    vertex: Vertex,
    op: FileOp,
    inputs: SolveResult[],
  ): Promise<{ cacheKey: string; selections: Map<CopyAction, Selection> }> {
    const contextChecksums: string[] = [];
    const selections = new Map<CopyAction, Selection>();
    // Sources copied from other stages or images count by what is copied, not by how it was made.
    const inputKeys: (string | null)[] = inputs.map((input) => input.cacheKey);
    for (const action of op.actions) {
      if (action.action !== "copy") continue;
      const input = inputs[action.sourceInput];
      if (input?.kind === "layers" && action.sourceInput > 0) {
        inputKeys[action.sourceInput] = null;
        contextChecksums.push(await this.selectionChecksum(input.layers, action));
        continue;
      }
      if (input?.kind !== "context") continue;
      const selection = await input.context.select(action.sources, contextSelectOptions(action, vertex));
      selections.set(action, selection);
      // Context files are written root-owned (or --chown'd): their host owner never reaches the image.
      contextChecksums.push(await input.context.checksum(selection, { ignoreMode: action.chmod !== undefined, ignoreOwner: true }));
    }
    // The op itself, not the vertex digest: that one names the input vertices, which content-based inputs replace.
    const cacheKey = sha256(canonicalJson({ op: vertex.op, inputs: inputKeys, contextChecksums }));
    return { cacheKey, selections };
  }

  /**
   * A `COPY --from` step's key needs the checksum of what it selects in its source stage,
   * which does not depend on the step's own base: it is computed as soon as the source is
   * ready, alongside the steps before it, instead of after them.
   */
  private checksumSourcesEarly(vertex: Vertex): void {
    if (vertex.op.type !== "file") return;
    for (const action of vertex.op.actions) {
      if (action.action !== "copy" || action.sourceInput === 0) continue;
      const digest = vertex.inputs[action.sourceInput];
      if (digest === undefined || digest === null) continue;
      this.solve(digest).then(
        (input) => {
          if (input.kind === "layers") this.selectionChecksum(input.layers, action).catch(() => undefined);
        },
        // The failure surfaces where the vertex awaits its inputs.
        () => undefined,
      );
    }
  }

  private selectionChecksum(layers: readonly LayerInfo[], action: CopyAction): Promise<string> {
    const key = canonicalJson({ layers: layers.map((layer) => layer.id), sources: action.sources, excludes: action.excludes ?? [] });
    let checksum = this.selectionChecksums.get(key);
    if (!checksum) {
      checksum = layerSelectionChecksum(this.options.store, this.layerTree(layers), action.sources, action.excludes ?? []);
      this.selectionChecksums.set(key, checksum);
    }
    return checksum;
  }

  private layerTree(layers: readonly LayerInfo[]): LayerTree {
    const key = layers.map((layer) => layer.id).join(":");
    let tree = this.layerTrees.get(key);
    if (!tree) {
      tree = new LayerTree(layers, this.views.lazy(layers));
      this.layerTrees.set(key, tree);
    }
    return tree;
  }

  private sourceTree(input: SolveResult | undefined, selection: Selection | undefined): SourceTree {
    if (input?.kind === "context") {
      if (!selection) throw new Error("a copy from a local context was not selected");
      return new ContextTree(selection, input.context);
    }
    const layers = input?.layers ?? [];
    return this.layerTree(layers);
  }

  private emit(event: { type: "start" | "cached"; vertex: string; name: string } | { type: "done"; vertex: string; name: string; durationMs: number }): void {
    this.options.listener({ ...event, time: Date.now() } as Parameters<SolveListener>[0]);
  }

  private throwIfCancelled(): void {
    if (this.options.signal.aborted) throw new BuildCancelledError();
  }
}

/** How COPY/ADD select from a local context: BuildKit follows a source's own symlink (inside the context) and allows empty wildcards. */
export function contextSelectOptions(action: CopyAction, vertex: Vertex) {
  return {
    excludes: action.excludes ?? [],
    followLinks: true,
    allowEmptyWildcard: true,
    instruction: /\] ADD /.test(vertex.name) ? "ADD" : "COPY",
  };
}

function mountSource(input: SolveResult | undefined): MountSource | undefined {
  if (!input) return undefined;
  return input.kind === "context" ? { kind: "directory", path: input.context.dir } : { kind: "layers", layers: input.layers };
}
