import { posix } from "node:path";
import type { ChownSpec, CopyAction, ExecMount, FileAction, GraphBuilder, Platform } from "../llb/index.ts";
import { chompHeredocContent, parseGoDuration, parseHeredocWord, parseMountSpec, type Flag, type Instruction, type Span } from "../parser/index.ts";
import type { EscapeChar } from "../parser/index.ts";
import type { BuildArgs } from "./args.ts";
import type { Converter } from "./convert.ts";
import { expandIn, expandWordsIn } from "./expand.ts";
import { cloneImageConfig, getEnv, setEnv, type HealthConfig, type HistoryEntry, type ImageConfig } from "./image-config.ts";

/** A vertex whose result adds layers to the image, and the history entry that describes it (-1: the base image's own). */
export interface LayerStep {
  vertex: string;
  history: number;
  /** For a base image: how many layers its vertex holds. */
  baseLayers?: number;
}

export interface StageState {
  root: string | null;
  image: ImageConfig;
  platform: Platform;
  layers: LayerStep[];
}

export interface StageBuilderOptions {
  converter: Converter;
  graph: GraphBuilder;
  stageIndex: number;
  stageName: string | undefined;
  stageCount: number;
  instructionCount: number;
  base: StageState;
  platform: Platform;
  escape: EscapeChar;
  file: string;
  globalArgs: ReadonlyMap<string, string>;
  buildArgs: BuildArgs;
  created: string;
  noCache: boolean;
  buildPlatform: Platform;
  targetPlatform: Platform;
}

export const CONTEXT_SOURCE = "local://context";
const DEFAULT_SHELL = ["/bin/sh", "-c"];

/** Applies one stage's instructions to its filesystem vertex and image config. */
export class StageBuilder {
  private root: string | null;
  private readonly image: ImageConfig;
  private readonly layers: LayerStep[];
  /** ARGs this stage declared, with their values. */
  private readonly args = new Map<string, string>();
  private cmdSetHere = false;
  private step = 1;

  constructor(private readonly options: StageBuilderOptions) {
    this.root = options.base.root;
    this.image = cloneImageConfig(options.base.image);
    this.image.architecture = options.platform.architecture;
    this.image.os = options.platform.os;
    if (options.platform.variant) this.image.variant = options.platform.variant;
    else delete this.image.variant;
    this.layers = [...options.base.layers];
  }

  state(): StageState {
    return { root: this.root, image: this.image, platform: this.options.platform, layers: this.layers };
  }

  /** Runs the base image's ONBUILD triggers, then forgets them (they fire once). */
  async runTriggers(parse: (trigger: string) => Instruction): Promise<void> {
    const triggers = this.image.config.OnBuild ?? [];
    delete this.image.config.OnBuild;
    for (const trigger of triggers) await this.dispatch(parse(trigger));
  }

  async dispatch(instruction: Instruction): Promise<void> {
    this.step++;
    switch (instruction.keyword) {
      case "env":
        return this.env(instruction);
      case "arg":
        return this.arg(instruction);
      case "label":
        return this.label(instruction);
      case "maintainer":
        this.image.author = instruction.args[0] ?? "";
        return this.history(`MAINTAINER ${this.image.author}`);
      case "workdir":
        return this.workdir(instruction);
      case "user":
        this.image.config.User = this.expand(instruction.args[0] ?? "", instruction.span);
        return this.history(`USER ${this.image.config.User}`);
      case "cmd":
        this.image.config.Cmd = this.commandLine(instruction);
        this.cmdSetHere = true;
        return this.history(`CMD ${JSON.stringify(this.image.config.Cmd)}`);
      case "entrypoint": {
        const entrypoint = this.commandLine(instruction);
        this.image.config.Entrypoint = entrypoint.length === 0 ? null : entrypoint;
        // A new ENTRYPOINT makes an inherited CMD meaningless.
        if (!this.cmdSetHere) this.image.config.Cmd = null;
        return this.history(`ENTRYPOINT ${JSON.stringify(this.image.config.Entrypoint)}`);
      }
      case "shell":
        this.image.config.Shell = [...instruction.args];
        return this.history(`SHELL ${JSON.stringify(instruction.args)}`);
      case "expose":
        return this.expose(instruction);
      case "volume":
        return this.volume(instruction);
      case "stopsignal":
        this.image.config.StopSignal = this.expand(instruction.args[0] ?? "", instruction.span);
        return this.history(`STOPSIGNAL ${this.image.config.StopSignal}`);
      case "healthcheck":
        return this.healthcheck(instruction);
      case "onbuild":
        this.image.config.OnBuild = [...(this.image.config.OnBuild ?? []), onbuildExpression(instruction)];
        return this.history(`ONBUILD ${onbuildExpression(instruction)}`);
      case "copy":
      case "add":
        return this.copy(instruction);
      case "run":
        return await this.run(instruction);
      case "from":
        return;
    }
  }

  // --- metadata ----------------------------------------------------------

  private env(instruction: Instruction): void {
    const variables = this.variables();
    const assignments = (instruction.pairs ?? []).map((pair) => [
      this.expandWith(pair.key, variables, instruction.span),
      this.expandWith(pair.value ?? "", variables, instruction.span),
    ] as const);
    this.image.config.Env ??= [];
    for (const [key, value] of assignments) setEnv(this.image.config.Env, key, value);
    this.history(`ENV ${assignments.map(([key, value]) => `${key}=${value}`).join(" ")}`);
  }

  private arg(instruction: Instruction): void {
    const declared: string[] = [];
    for (const pair of instruction.pairs ?? []) {
      const key = this.expand(pair.key, instruction.span);
      const defaultValue = pair.value === undefined ? undefined : this.expand(pair.value, instruction.span);
      const value = this.options.buildArgs.declare(key, defaultValue, this.options.globalArgs.get(key));
      if (value !== undefined) this.args.set(key, value);
      declared.push(value === undefined ? key : `${key}=${value}`);
    }
    this.history(`ARG ${declared.join(" ")}`);
  }

  private label(instruction: Instruction): void {
    const variables = this.variables();
    this.image.config.Labels ??= {};
    const written: string[] = [];
    for (const pair of instruction.pairs ?? []) {
      const key = this.expandWith(pair.key, variables, instruction.span);
      const value = this.expandWith(pair.value ?? "", variables, instruction.span);
      this.image.config.Labels[key] = value;
      written.push(`${key}=${value}`);
    }
    this.history(`LABEL ${written.join(" ")}`);
  }

  private workdir(instruction: Instruction): void {
    const path = this.expand(instruction.args[0] ?? "", instruction.span);
    const previous = this.image.config.WorkingDir || "/";
    const resolved = cleanPath(path.startsWith("/") ? path : posix.join(previous, path));
    this.image.config.WorkingDir = resolved;
    this.addFileOp([{ action: "mkdir", path: resolved, mode: 0o755, makeParents: true }], [], `WORKDIR ${resolved}`, instruction);
  }

  private expose(instruction: Instruction): void {
    this.image.config.ExposedPorts ??= {};
    const ports: string[] = [];
    const variables = this.variables();
    // EXPOSE expands to several words: `EXPOSE $PORTS` with PORTS="80 443" exposes two ports.
    const specs = instruction.args.flatMap((spec) => expandWordsIn(spec, variables, this.options.escape, (message) => this.options.converter.fail(message, instruction.span)));
    for (const spec of specs) {
      for (const port of expandPorts(spec)) {
        this.image.config.ExposedPorts[port] = {};
        ports.push(port);
      }
    }
    this.history(`EXPOSE ${ports.join(" ")}`);
  }

  private volume(instruction: Instruction): void {
    this.image.config.Volumes ??= {};
    const paths = instruction.args.map((path) => this.expand(path, instruction.span));
    for (const path of paths) this.image.config.Volumes[path] = {};
    this.history(`VOLUME ${JSON.stringify(paths)}`);
  }

  private healthcheck(instruction: Instruction): void {
    const [type = "", ...command] = instruction.args;
    if (type.toUpperCase() === "NONE") {
      this.image.config.Healthcheck = { Test: ["NONE"] };
      return this.history("HEALTHCHECK NONE");
    }
    const health: HealthConfig = {
      Test: instruction.json ? ["CMD", ...command] : ["CMD-SHELL", command.join(" ")],
    };
    const duration = (name: string) => parseGoDuration(flagValue(instruction, name) ?? "") || undefined;
    const interval = duration("interval");
    const timeout = duration("timeout");
    const startPeriod = duration("start-period");
    const startInterval = duration("start-interval");
    const retries = flagValue(instruction, "retries");
    if (interval) health.Interval = interval;
    if (timeout) health.Timeout = timeout;
    if (startPeriod) health.StartPeriod = startPeriod;
    if (startInterval) health.StartInterval = startInterval;
    if (retries) health.Retries = Number(retries);
    this.image.config.Healthcheck = health;
    this.history(`HEALTHCHECK ${JSON.stringify(health.Test)}`);
  }

  private commandLine(instruction: Instruction): string[] {
    if (instruction.json) return [...instruction.args];
    if (instruction.args.length === 0) return [];
    return [...(this.image.config.Shell ?? DEFAULT_SHELL), instruction.args[0] as string];
  }

  // --- filesystem --------------------------------------------------------

  private async copy(instruction: Instruction): Promise<void> {
    const isAdd = instruction.keyword === "add";
    const variables = this.variables();
    const expand = (word: string, span: Span = instruction.span) => this.expandWith(word, variables, span);
    const flag = (name: string) => instruction.flags.find((candidate) => candidate.name === name);
    const args = instruction.args;
    const destWritten = args[args.length - 1] as string;
    const dest = this.destination(expand(destWritten));
    const inputs: (string | null)[] = [];
    const actions: FileAction[] = [];
    const chown = optionalFlag(flag("chown"), expand, parseChown);
    const chmod = optionalFlag(flag("chmod"), expand, (value) => value);
    const excludes = instruction.flags.filter((candidate) => candidate.name === "exclude").map((candidate) => expand(candidate.value ?? "", candidate.span));
    const parents = isTrue(flag("parents"));
    const fromFlag = flag("from");
    const checksum = flag("checksum");

    const sourceWords = args.slice(0, -1);
    const heredocs = new Map(instruction.heredocs.map((heredoc) => [heredoc.name, heredoc]));
    const paths: string[] = [];
    for (const word of sourceWords) {
      const heredocWord = instruction.json ? undefined : parseHeredocWord(word);
      const heredoc = heredocWord ? heredocs.get(heredocWord.name) : undefined;
      if (heredoc) {
        let content = heredoc.chomp ? chompHeredocContent(heredoc.content) : heredoc.content;
        if (heredoc.expand) content = expand(content);
        const name = posix.basename(heredoc.name);
        const file = this.options.graph.add({ type: "file", actions: [{ action: "mkfile", path: `/${name}`, mode: 0o644, data: content }] }, [null], {
          name: `${this.prefix()} heredoc ${heredoc.name}`,
        });
        actions.push(copyAction(this.inputIndex(inputs, file), [`/${name}`], dest, { chown, chmod }));
        continue;
      }
      const source = expand(word);
      if (isAdd && /^https?:\/\//i.test(source)) {
        const url = this.options.graph.add(
          { type: "source", identifier: source, ...(checksum?.value ? { attrs: { checksum: expand(checksum.value, checksum.span) } } : {}) },
          [],
          { name: `${this.prefix()} ADD ${source}` },
        );
        actions.push(copyAction(this.inputIndex(inputs, url), ["/*"], dest, { chown, chmod }));
        continue;
      }
      if (isAdd && isGitSource(source)) {
        const keepGitDir = isTrue(flag("keep-git-dir"));
        const git = this.options.graph.add({ type: "source", identifier: `git://${source}`, attrs: { keepGitDir: String(keepGitDir) } }, [], {
          name: `${this.prefix()} ADD ${source}`,
        });
        actions.push(copyAction(this.inputIndex(inputs, git), ["/"], dest.endsWith("/") ? dest : `${dest}/`, { chown, chmod }));
        continue;
      }
      paths.push(source);
    }
    if (checksum && paths.length > 0) {
      this.options.converter.fail("--checksum applies to https:// sources only", checksum.span, "remove --checksum, or ADD the file by URL");
    }
    if (paths.length > 0) {
      const sourceRoot = fromFlag ? await this.fromReference(expand(fromFlag.value ?? "", fromFlag.span), fromFlag.span) : this.context();
      const action: CopyAction = copyAction(this.inputIndex(inputs, sourceRoot), paths, dest, { chown, chmod });
      if (excludes.length > 0) action.excludes = excludes;
      if (parents) action.parents = true;
      if (isAdd && !fromFlag) action.unpackArchives = true;
      actions.push(action);
    }
    const description = `${instruction.keyword.toUpperCase()} ${instruction.source.replace(/^\S+\s+/, "")}`;
    if (isTrue(flag("link"))) this.addLinkedFileOp(actions, inputs, description, instruction);
    else this.addFileOp(actions, inputs, description, instruction);
  }

  /** The source filesystem a --from names: a stage, a named context, or an image. */
  private async fromReference(reference: string, span: Span): Promise<string | null> {
    const converter = this.options.converter;
    if (reference === "") converter.fail("--from is empty", span, "name a stage, a stage index, a --build-context or an image");
    const stage = converter.findStage(reference, this.options.stageIndex);
    if (stage !== undefined) return (await converter.dependOnStage(stage, span)).root;
    const resolved = await converter.resolveImage(reference, converter.isNamedContext(reference), this.options.platform, span);
    return resolved.root;
  }

  private context(): string {
    return this.options.graph.add({ type: "source", identifier: CONTEXT_SOURCE }, [], { name: "load build context" });
  }

  private inputIndex(inputs: (string | null)[], vertex: string | null): number {
    const existing = inputs.indexOf(vertex);
    if (existing >= 0) return existing + 1;
    inputs.push(vertex);
    return inputs.length;
  }

  private destination(dest: string): string {
    const directory = dest.endsWith("/") || dest === "." || dest.endsWith("/.");
    const absolute = dest.startsWith("/") ? dest : posix.join(this.image.config.WorkingDir || "/", dest);
    const cleaned = cleanPath(absolute);
    return directory && cleaned !== "/" ? `${cleaned}/` : cleaned;
  }

  private addFileOp(actions: FileAction[], inputs: (string | null)[], description: string, instruction: Instruction): void {
    const vertex = this.options.graph.add({ type: "file", actions }, [this.root, ...inputs], this.meta(description, instruction));
    this.root = vertex;
    this.layerHistory(vertex, description);
  }

  /** COPY --link: the files go to a layer of their own (on scratch), stacked on the stage without depending on it. */
  private addLinkedFileOp(actions: FileAction[], inputs: (string | null)[], description: string, instruction: Instruction): void {
    const layer = this.options.graph.add({ type: "file", actions }, [null, ...inputs], this.meta(description, instruction));
    this.root = this.root === null ? layer : this.options.graph.add({ type: "merge" }, [this.root, layer], this.meta(description, instruction));
    this.layerHistory(layer, description);
  }

  private async run(instruction: Instruction): Promise<void> {
    const variables = this.variables();
    const args = this.runArgs(instruction);
    const env = this.runEnv();
    const inputs: (string | null)[] = [this.root];
    const mounts: ExecMount[] = [];
    for (const flag of instruction.flags) {
      if (flag.name !== "mount") continue;
      const { mount, from } = this.mount(flag, variables);
      if (from !== undefined) {
        const vertex = from === "context" ? this.context() : (await this.options.converter.dependOnStage(from, flag.span)).root;
        mount.input = inputs.length;
        inputs.push(vertex);
      }
      mounts.push(mount);
    }
    const network = (flagValue(instruction, "network") ?? "default") as "default" | "none" | "host";
    const security = (flagValue(instruction, "security") ?? "sandbox") as "sandbox" | "insecure";
    const heredocScript = this.heredocScript(instruction);
    const devices = instruction.flags.filter((flag) => flag.name === "device").map((flag) => this.expandWith(flag.value ?? "", variables, flag.span));
    const vertex = this.options.graph.add(
      {
        type: "exec",
        args: heredocScript ? [heredocScript.path] : args,
        env,
        cwd: this.image.config.WorkingDir || "/",
        user: this.image.config.User || "root",
        network,
        security,
        mounts,
        ...(heredocScript ? { files: [heredocScript] } : {}),
        ...(devices.length > 0 ? { devices } : {}),
        platform: this.options.platform,
      },
      inputs,
      this.meta(`RUN ${instruction.source.replace(/^\S+\s+/, "")}`, instruction),
    );
    this.root = vertex;
    this.layerHistory(vertex, `RUN ${args.join(" ")} # buildkit`);
  }

  private runArgs(instruction: Instruction): string[] {
    if (instruction.json) return [...instruction.args];
    const shell = this.image.config.Shell ?? DEFAULT_SHELL;
    let command = instruction.args[0] ?? "";
    // A heredoc used as standard input goes to the shell as the heredoc it is.
    for (const heredoc of instruction.heredocs) command += `\n${heredoc.content}${heredoc.name}`;
    const only = instruction.heredocs.length === 1 && parseHeredocWord((instruction.args[0] ?? "").trim());
    if (only && instruction.heredocs[0]) {
      const heredoc = instruction.heredocs[0];
      return [...shell, heredoc.chomp ? chompHeredocContent(heredoc.content) : heredoc.content];
    }
    return [...shell, command];
  }

  /** `RUN <<EOF` whose body starts with `#!`: the body is written as a file and executed. */
  private heredocScript(instruction: Instruction): { path: string; data: string; mode: number } | undefined {
    if (instruction.json || instruction.heredocs.length !== 1) return undefined;
    const heredoc = instruction.heredocs[0];
    if (!heredoc || !parseHeredocWord((instruction.args[0] ?? "").trim()) || !heredoc.content.startsWith("#!")) return undefined;
    return { path: `/dev/pipes/${posix.basename(heredoc.name)}`, data: heredoc.chomp ? chompHeredocContent(heredoc.content) : heredoc.content, mode: 0o755 };
  }

  /** RUN sees the image's ENV, the stage's ARGs (ENV wins), and proxy build args. */
  private runEnv(): string[] {
    const env = [...(this.image.config.Env ?? [])];
    for (const [name, value] of this.args) if (getEnv(env, name) === undefined) env.push(`${name}=${value}`);
    for (const [name, value] of this.options.buildArgs.proxies()) if (getEnv(env, name) === undefined) env.push(`${name}=${value}`);
    return env;
  }

  /** A `--mount` spec, expanded; `from` says which filesystem it takes (the context or a stage), if any. */
  private mount(flag: Flag, variables: ReadonlyMap<string, string>): { mount: ExecMount; from?: "context" | number } {
    const spec = parseMountSpec(flag.value ?? "");
    const field = (...keys: string[]) => {
      const found = spec.fields.find((candidate) => keys.includes(candidate.key));
      return found?.value === undefined ? (found ? "true" : undefined) : this.expandWith(found.value, variables, flag.span);
    };
    const mount: ExecMount = { type: spec.type, target: field("target", "dst", "destination") ?? "" };
    const source = field("source", "src");
    if (source !== undefined) mount.source = source;
    const id = field("id");
    if (id !== undefined) mount.id = id;
    const readonly = field("readonly", "ro");
    const readwrite = field("readwrite", "rw");
    if (readonly !== undefined) mount.readonly = isGoTrue(readonly);
    if (readwrite !== undefined) mount.readonly = !isGoTrue(readwrite);
    const sharing = field("sharing");
    if (sharing) mount.sharing = sharing.toLowerCase() as ExecMount["sharing"];
    const mode = field("mode");
    if (mode) mount.mode = Number.parseInt(mode, 8);
    const uid = field("uid");
    if (uid) mount.uid = Number(uid);
    const gid = field("gid");
    if (gid) mount.gid = Number(gid);
    const required = field("required");
    if (required !== undefined) mount.required = isGoTrue(required);
    const env = field("env");
    if (env !== undefined) mount.env = env;
    if (spec.type === "secret" && !mount.target && id) mount.target = `/run/secrets/${id}`;
    if (spec.type === "ssh" && !mount.target) mount.target = `/run/buildkit/ssh_agent.${id ?? "default"}`;
    if (spec.type === "cache" && !mount.id) mount.id = mount.target;
    const from = field("from");
    if (from === undefined) return spec.type === "bind" ? { mount, from: "context" } : { mount };
    const stage = this.options.converter.findStage(from, this.options.stageIndex);
    if (stage === undefined) this.options.converter.fail(`--mount from=${from}: no stage has that name`, flag.span, "name a stage or a stage index");
    return { mount, from: stage };
  }

  // --- bookkeeping -------------------------------------------------------

  private meta(description: string, instruction: Instruction) {
    return {
      name: `${this.prefix()} ${description}`,
      location: { file: this.options.file, line: instruction.span.start.line },
      ...(this.options.noCache ? { ignoreCache: true } : {}),
    };
  }

  private prefix(): string {
    const name = this.options.stageName ?? `stage-${this.options.stageIndex}`;
    return `[${name} ${this.step}/${this.options.instructionCount}]`;
  }

  private history(createdBy: string): void {
    this.image.history.push(this.historyEntry(createdBy, true));
  }

  private layerHistory(vertex: string, createdBy: string): void {
    this.image.history.push(this.historyEntry(createdBy.endsWith("# buildkit") ? createdBy : `${createdBy} # buildkit`, false));
    this.layers.push({ vertex, history: this.image.history.length - 1 });
  }

  private historyEntry(createdBy: string, empty: boolean): HistoryEntry {
    return {
      ...(this.options.created ? { created: this.options.created } : {}),
      created_by: createdBy,
      comment: "buildkit.dockerfile.v0",
      ...(empty ? { empty_layer: true } : {}),
    };
  }

  /** The variables an instruction expands with: the stage's ARGs, overridden by ENV. */
  private variables(): Map<string, string> {
    const variables = new Map(this.args);
    for (const entry of this.image.config.Env ?? []) {
      const equals = entry.indexOf("=");
      if (equals > 0) variables.set(entry.slice(0, equals), entry.slice(equals + 1));
    }
    return variables;
  }

  private expand(word: string, span: Span): string {
    return this.expandWith(word, this.variables(), span);
  }

  private expandWith(word: string, variables: ReadonlyMap<string, string>, span: Span): string {
    return expandIn(word, variables, this.options.escape, (message) => this.options.converter.fail(message, span));
  }
}

function copyAction(sourceInput: number, sources: string[], dest: string, options: { chown: ChownSpec | undefined; chmod: string | undefined }): CopyAction {
  return { action: "copy", sourceInput, sources, dest, ...(options.chown ? { chown: options.chown } : {}), ...(options.chmod ? { chmod: options.chmod } : {}) };
}

function optionalFlag<T>(flag: Flag | undefined, expand: (word: string, span: Span) => string, parse: (value: string) => T): T | undefined {
  if (flag?.value === undefined) return undefined;
  const value = expand(flag.value, flag.span);
  return value === "" ? undefined : parse(value);
}

function parseChown(value: string): ChownSpec {
  const [user = "", group] = value.split(":", 2);
  return group === undefined || group === "" ? { user } : { user, group };
}

function flagValue(instruction: Instruction, name: string): string | undefined {
  return instruction.flags.find((flag) => flag.name === name)?.value;
}

function isTrue(flag: Flag | undefined): boolean {
  return flag !== undefined && (flag.value === undefined || flag.value.toLowerCase() === "true");
}

function isGoTrue(value: string): boolean {
  return ["1", "t", "true"].includes(value.toLowerCase());
}

function isGitSource(source: string): boolean {
  return /^git@|^git:\/\//.test(source) || (/^https?:\/\//.test(source) && /\.git(#.*)?$/.test(source));
}

function onbuildExpression(instruction: Instruction): string {
  let expression = instruction.args[0] ?? "";
  for (const heredoc of instruction.trigger?.heredocs ?? []) expression += `\n${heredoc.content}${heredoc.name}`;
  return expression;
}

/** `path.Clean` for absolute paths: no trailing slash, no `.`/`..` segments. */
export function cleanPath(path: string): string {
  const normalized = posix.normalize(path.startsWith("/") ? path : `/${path}`);
  return normalized.length > 1 && normalized.endsWith("/") ? normalized.slice(0, -1) : normalized;
}

/** `8000-8002/udp` → three ports; a port without protocol is /tcp. */
export function expandPorts(spec: string): string[] {
  const [portPart = "", protocol = "tcp"] = spec.split("/");
  const port = portPart.slice(portPart.lastIndexOf(":") + 1);
  const [low = "", high] = port.split("-");
  const start = Number(low);
  const end = high === undefined ? start : Number(high);
  const ports: string[] = [];
  for (let value = start; value <= end; value++) ports.push(`${value}/${protocol.toLowerCase()}`);
  return ports;
}
