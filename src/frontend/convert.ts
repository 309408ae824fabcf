import { GraphBuilder, type Platform } from "../llb/index.ts";
import { DockerfileSyntaxError, parseDockerfile, type Dockerfile, type Instruction, type Span, type Stage } from "../parser/index.ts";
import { BuildArgs } from "./args.ts";
import { emptyImageConfig, type ImageConfig } from "./image-config.ts";
import { formatPlatform, parsePlatform, platformArgs } from "./platform.ts";
import { StageBuilder, type LayerStep, type StageState } from "./stage-builder.ts";
import { expandIn } from "./expand.ts";
import { UserError } from "../user-error.ts";

/** An image that a FROM or COPY --from names, as the resolver found it. */
export interface ResolvedImage {
  /** The vertex of the image's filesystem (null for an empty one). */
  root: string | null;
  config: ImageConfig;
  /** How many layers the image has (its history's non-empty entries match them). */
  layerCount: number;
}

export interface ConvertOptions {
  dockerfile: Dockerfile;
  /** The Dockerfile's text, to show the offending line in errors. */
  sourceText: string;
  target?: string;
  buildArgs: ReadonlyMap<string, string>;
  targetPlatform: Platform;
  buildPlatform: Platform;
  /** Names given with --build-context; they win over images of the same name. */
  namedContexts: ReadonlySet<string>;
  /**
   * Turns a base reference into a filesystem vertex and config: `scratch` never
   * reaches it; named contexts and image references do. `graph` is where the
   * resolver adds its source vertex.
   */
  resolveImage: (reference: { name: string; isNamedContext: boolean; platform: Platform }, graph: GraphBuilder) => Promise<ResolvedImage>;
  /** Stage names whose steps must not use the cache (--no-cache-filter). */
  noCacheStages?: ReadonlySet<string>;
  /** The time recorded in history entries (ISO 8601); "" records none. */
  created: string;
}

export interface BuildDefinition {
  graph: GraphBuilder;
  /** The target stage's filesystem. */
  root: string | null;
  image: ImageConfig;
  platform: Platform;
  /** The vertices whose results are the image's layers, bottom to top, with the history entry each belongs to. */
  layers: LayerStep[];
  /** Stages that were converted (the target and what it needs), by index. */
  stagesUsed: number[];
  warnings: string[];
}

/** Converts a parsed Dockerfile to a build graph for one target stage. */
export async function convertDockerfile(options: ConvertOptions): Promise<BuildDefinition> {
  const converter = new Converter(options);
  return converter.run();
}

class Converter {
  private readonly graph = new GraphBuilder();
  private readonly buildArgs: BuildArgs;
  private readonly globalArgs = new Map<string, string>();
  private readonly converted = new Map<number, Promise<StageState>>();
  private readonly inProgress = new Set<number>();
  private readonly warnings: string[] = [];

  constructor(private readonly options: ConvertOptions) {
    this.buildArgs = new BuildArgs(options.buildArgs);
  }

  async run(): Promise<BuildDefinition> {
    const { dockerfile } = this.options;
    this.declareGlobalArgs();
    const targetIndex = this.targetStageIndex();
    const state = await this.stage(targetIndex);
    const unused = this.buildArgs.unused();
    if (unused.length > 0) this.warnings.push(`one or more build args were not consumed: ${unused.join(", ")}`);
    if (this.options.created) state.image.created = this.options.created;
    return {
      graph: this.graph,
      root: state.root,
      image: state.image,
      platform: state.platform,
      layers: state.layers,
      stagesUsed: [...this.converted.keys()].sort((a, b) => a - b),
      warnings: [...this.warnings, ...dockerfile.warnings.map((warning) => `${dockerfile.file}:${warning.span.start.line}: ${warning.message}`)],
    };
  }

  /** Global ARGs (before the first FROM), usable in FROM lines together with the platform args. */
  private declareGlobalArgs(): void {
    const { dockerfile } = this.options;
    for (const [name, value] of platformArgs(this.options.buildPlatform, this.options.targetPlatform)) this.globalArgs.set(name, value);
    const firstFrom = dockerfile.stages[0]?.from ?? dockerfile.instructions.length;
    for (const instruction of dockerfile.instructions.slice(0, firstFrom)) {
      for (const pair of instruction.pairs ?? []) {
        const key = this.expand(pair.key, this.globalArgs, instruction.span);
        const defaultValue = pair.value === undefined ? undefined : this.expand(pair.value, this.globalArgs, instruction.span);
        const value = this.buildArgs.declare(key, defaultValue);
        if (value !== undefined) this.globalArgs.set(key, value);
        else this.globalArgs.delete(key);
      }
    }
  }

  private targetStageIndex(): number {
    const { dockerfile, target } = this.options;
    if (target === undefined) return dockerfile.stages.length - 1;
    const index = dockerfile.stages.findIndex((stage) => stage.name === target.toLowerCase());
    if (index < 0) {
      const names = dockerfile.stages.map((stage) => stage.name).filter(Boolean);
      throw new TargetNotFoundError(target, names as string[]);
    }
    return index;
  }

  /** Converts a stage once, however many stages depend on it. */
  stage(index: number): Promise<StageState> {
    let state = this.converted.get(index);
    if (!state) {
      this.inProgress.add(index);
      state = this.convertStage(index).finally(() => this.inProgress.delete(index));
      this.converted.set(index, state);
    }
    return state;
  }

  /** The stage a name or index refers to, if any ("" when not a stage). */
  findStage(reference: string, fromStage: number): number | undefined {
    const { stages } = this.options.dockerfile;
    const byName = stages.findIndex((stage) => stage.name !== undefined && stage.name === reference.toLowerCase());
    if (byName >= 0) return byName;
    if (/^\d+$/.test(reference)) {
      const index = Number(reference);
      if (index < stages.length && index !== fromStage) return index;
    }
    return undefined;
  }

  /** A stage another stage needs (FROM, COPY --from, RUN --mount from=); a stage in the chain being converted is a cycle. */
  dependOnStage(index: number, span: Span): Promise<StageState> {
    if (this.inProgress.has(index)) {
      const name = this.options.dockerfile.stages[index]?.name ?? String(index);
      this.fail(`circular dependency: stage "${name}" needs itself`, span, "a stage can only use stages that do not use it");
    }
    return this.stage(index);
  }

  private async convertStage(index: number): Promise<StageState> {
    const { dockerfile } = this.options;
    const stage = dockerfile.stages[index] as Stage;
    const from = dockerfile.instructions[stage.from] as Instruction;
    const platform = this.stagePlatform(from);
    const baseName = this.expand(stage.base, this.globalArgs, from.span);
    if (baseName === "") this.fail(`the base image name of this stage is empty (${stage.base} expands to "")`, from.span, "set it with --build-arg or give the ARG a default");
    const base = await this.resolveBase(baseName, index, platform, from);
    const builder = new StageBuilder({
      converter: this,
      graph: this.graph,
      stageIndex: index,
      stageName: stage.name,
      stageCount: dockerfile.stages.length,
      instructionCount: stage.end - stage.from,
      base,
      platform,
      escape: dockerfile.escape,
      file: dockerfile.file,
      globalArgs: this.globalArgs,
      buildArgs: this.buildArgs,
      created: this.options.created,
      noCache: stage.name !== undefined && (this.options.noCacheStages?.has(stage.name) ?? false),
      buildPlatform: this.options.buildPlatform,
      targetPlatform: this.options.targetPlatform,
    });
    await builder.runTriggers((trigger) => this.parseTrigger(trigger, from.span));
    for (const instruction of dockerfile.instructions.slice(stage.from + 1, stage.end)) {
      await builder.dispatch(instruction);
    }
    return builder.state();
  }

  private stagePlatform(from: Instruction): Platform {
    const flag = from.flags.find((candidate) => candidate.name === "platform");
    if (flag?.value === undefined) return this.options.targetPlatform;
    const text = this.expand(flag.value, this.globalArgs, flag.span);
    const platform = parsePlatform(text);
    if (!platform) this.fail(`invalid platform "${text}"`, flag.span, "write os/arch[/variant], e.g. linux/arm64 or $BUILDPLATFORM");
    return platform;
  }

  /** FROM's base: an earlier stage, a named context, scratch, or an image. */
  async resolveBase(name: string, stageIndex: number, platform: Platform, from: Instruction): Promise<StageState> {
    const stageRef = this.options.dockerfile.stages.findIndex((stage, index) => index < stageIndex && stage.name === name.toLowerCase());
    if (stageRef >= 0) return this.dependOnStage(stageRef, from.span);
    const isNamedContext = this.options.namedContexts.has(name);
    if (!isNamedContext && name.toLowerCase() === "scratch") {
      return { root: null, image: emptyImageConfig(platform), platform, layers: [] };
    }
    const resolved = await this.resolveImage(name, isNamedContext, platform, from.span);
    const layers: LayerStep[] = resolved.layerCount > 0 ? [{ vertex: resolved.root as string, history: -1, baseLayers: resolved.layerCount }] : [];
    return { root: resolved.root, image: resolved.config, platform, layers };
  }

  async resolveImage(name: string, isNamedContext: boolean, platform: Platform, span: Span): Promise<ResolvedImage> {
    try {
      return await this.options.resolveImage({ name, isNamedContext, platform }, this.graph);
    } catch (error) {
      if (error instanceof UserError) this.fail(error.message, span, error.hint);
      throw error;
    }
  }

  private parseTrigger(trigger: string, span: Span): Instruction {
    let parsed: Dockerfile;
    try {
      parsed = parseDockerfile(`FROM scratch\n${trigger}\n`, { file: "ONBUILD trigger" });
    } catch (error) {
      if (error instanceof DockerfileSyntaxError) this.fail(`the base image's ONBUILD trigger "${trigger}" is invalid: ${error.message}`, span);
      throw error;
    }
    return parsed.instructions[1] as Instruction;
  }

  expand(word: string, variables: ReadonlyMap<string, string>, span: Span): string {
    return expandIn(word, variables, this.options.dockerfile.escape, (message) => this.fail(message, span));
  }

  fail(message: string, span: Span, hint?: string): never {
    const lines = this.options.sourceText.replace(/^\ufeff/, "").split("\n");
    const sourceLine = (lines[span.start.line - 1] ?? "").replace(/\r$/, "");
    throw new DockerfileSyntaxError({ message, file: this.options.dockerfile.file, span, sourceLine, hint });
  }

  isNamedContext(name: string): boolean {
    return this.options.namedContexts.has(name);
  }

  warn(message: string): void {
    this.warnings.push(message);
  }

  platformText(platform: Platform): string {
    return formatPlatform(platform);
  }
}

export type { Converter };

export class TargetNotFoundError extends UserError {
  constructor(target: string, names: string[]) {
    super(
      `target stage "${target}" could not be found`,
      names.length > 0 ? `stages are: ${names.join(", ")}` : "no stage is named: name one with FROM <image> AS <name>",
    );
  }
}
