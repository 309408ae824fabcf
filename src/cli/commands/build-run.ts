import { createHash } from "node:crypto";
import { readFile, rm, stat } from "node:fs/promises";
import { join, relative, resolve } from "node:path";
import { LocalContext } from "../../context/index.ts";
import { convertDockerfile, hostPlatform, parsePlatform, type BuildDefinition } from "../../frontend/index.ts";
import { canonicalJson, toDot } from "../../llb/index.ts";
import { parseDockerfile } from "../../parser/index.ts";
import { BuildCancelledError } from "../../solver/errors.ts";
import { Solver } from "../../solver/solver.ts";
import { networkReleases } from "../../solver/ops/network-releases.ts";
import { unmountStale } from "../../solver/ops/overlay.ts";
import { StateRoot } from "../../solver/store/index.ts";
import { EXIT, UserError } from "../errors.ts";
import { createProgress } from "../progress/index.ts";
import { readTextInput } from "../read-input.ts";
import { stateRootDir } from "../state-root.ts";
import { SshAgents } from "../build-ssh.ts";
import type { BuildArgs } from "./build.ts";
import { exportOutputs, parseOutputs, type OutputSpec } from "../../build/outputs.ts";
import { registryOptions } from "../registry-options.ts";
import { parseAnnotationFlags } from "../../exporter/index.ts";
import { loadSource, parseNamedContexts, resolveBaseImage } from "../../build/named-contexts.ts";
import { isRemoteContext, materializeContext } from "../../context/remote.ts";

/** `tsbuild build`: parse, convert, solve, export. Returns the exit code. */
export async function runBuild(args: BuildArgs): Promise<number> {
  // yargs hands a lone "-" positional over as "" (it parses "-" as an option without a name).
  if (args.context === "" || isRemoteContext(args.context)) return runWithRemoteContext({ ...args, context: args.context || "-" });
  const contextDir = resolve(args.context);
  await requireDirectory(contextDir);
  const dockerfilePath = args.file === undefined ? join(contextDir, "Dockerfile") : args.file === "-" ? "-" : resolve(args.file);
  const dockerfileName = args.file ?? join(args.context, "Dockerfile");
  const text = await readTextInput(dockerfilePath, "Dockerfile");
  const dockerfile = parseDockerfile(text, { file: dockerfileName === "-" ? "<stdin>" : dockerfileName });
  const outputs = parseOutputs(args.output, { tags: args.tag, push: args.push, load: args.load });
  addAnnotations(outputs, args.annotation);
  const labels = keyValues(args.label, "--label");
  const namedContexts = parseNamedContexts(args.buildContext);
  const targetPlatform = platformOption(args.platform);

  const progress = args.dryRun ? undefined : createProgress(args.progress);
  const note = (line: string) => (progress ? progress.note(line) : process.stderr.write(`${line}\n`));
  const rootDir = stateRootDir(args.root);
  // Overlays of a build that was killed stay mounted; take them down before the store clears its temp area.
  if (!args.dryRun) await unmountStale(join(rootDir, "tmp"));
  const store = await StateRoot.open(rootDir);
  const lease = await store.acquireLease();
  const controller = new AbortController();
  const onSignal = () => controller.abort();
  process.once("SIGINT", onSignal);
  process.once("SIGTERM", onSignal);
  const registry = await registryOptions(args, controller.signal);
  let definition: BuildDefinition;
  try {
    definition = await convertDockerfile({
      dockerfile,
      sourceText: text,
      target: args.target,
      buildArgs: buildArgsOption(args.buildArg),
      targetPlatform,
      buildPlatform: hostPlatform(),
      namedContexts: new Set(namedContexts.keys()),
      resolveImage: (reference, graph) => resolveBaseImage(reference, graph, namedContexts, { store, registry, pull: args.pull, note }),
      noCacheStages: new Set(args.noCacheFilter.map((name) => name.toLowerCase())),
      // A dry run prints the graph only: no timestamps, so the same input prints the same text.
      created: args.dryRun ? "" : creationTime(),
    });
    requireEntitlements(definition, args.allow);
  } catch (error) {
    progress?.finish();
    process.off("SIGINT", onSignal);
    process.off("SIGTERM", onSignal);
    await lease.release();
    throw error;
  }
  if (args.dryRun || progress === undefined) {
    process.off("SIGINT", onSignal);
    process.off("SIGTERM", onSignal);
    await lease.release();
    process.stdout.write(args.format === "dot" ? toDot(definition.graph.ancestry(definition.root), definition.root) : graphJson(definition));
    return EXIT.ok;
  }

  for (const warning of definition.warnings) progress.note(`warning: ${warning}`);
  const contexts = new Map<string, LocalContext>();
  let ssh: SshAgents | undefined;
  try {
    ssh = await SshAgents.start(args.ssh);
    contexts.set("local://context", await openContext(store, contextDir, dockerfilePath));
    for (const [name, value] of namedContexts) {
      if (value.kind === "dir") contexts.set(`local://${name}`, await openContext(store, value.path, join(value.path, "Dockerfile")));
    }
    const solver = new Solver({
      vertices: definition.graph.vertices,
      store,
      localContexts: contexts,
      loadSource: (op, root) => loadSource(op, root, { signal: controller.signal, noCache: args.noCache }),
      noCache: args.noCache,
      secret: secretProvider(args.secret),
      ssh: (id) => ssh?.socket(id),
      freshCacheMounts: args.noCache && !args.keepCacheMounts,
      runtime: args.runtime,
      concurrency: 4,
      signal: controller.signal,
      listener: (event) => progress.event(event),
    });
    const result = await solver.solve(definition.root).finally(() => solver.close());
    if (result.kind !== "layers") throw new UserError("the build produced no filesystem");
    const summary = await exportOutputs({ outputs, definition, result, store, solver, registry, labels, note, signal: controller.signal });
    // Through the renderer: rawjson stays JSON, quiet stays quiet, tty draws them last.
    for (const line of summary) progress.note(line);
    if (outputs.length === 0) progress.note("note: no output requested: the result is only in the build cache (name it with -t NAME, or use -o type=oci,dest=FILE.tar or -o type=local,dest=DIR)");
    progress.finish();
    return EXIT.ok;
  } catch (error) {
    progress.finish();
    if (error instanceof BuildCancelledError || controller.signal.aborted) {
      process.stderr.write("build cancelled\n");
      return EXIT.interrupted;
    }
    throw error;
  } finally {
    process.off("SIGINT", onSignal);
    process.off("SIGTERM", onSignal);
    await Promise.all([...contexts.values()].map((context) => context.close()));
    await ssh?.stop();
    await networkReleases();
    await lease.release();
  }
}

// --- remote build contexts ---------------------------------------------------

/**
 * CONTEXT is `-` (a tar archive on standard input), an http(s) URL of a tarball or a git
 * URL: it is materialized under the state root's tmp/ for this build, then removed.
 * `-f` names a file inside it, as with docker build.
 */
async function runWithRemoteContext(args: BuildArgs): Promise<number> {
  if (args.context === "-" && args.file === "-") {
    throw new UserError("the build context and the Dockerfile cannot both come from standard input", "give the Dockerfile's path inside the archive with -f PATH");
  }
  const store = await StateRoot.open(stateRootDir(args.root));
  const tmpDir = store.tempPath("context");
  const controller = new AbortController();
  const onSignal = () => controller.abort();
  process.once("SIGINT", onSignal);
  process.once("SIGTERM", onSignal);
  let dir: string;
  try {
    const fileInContext = args.file !== undefined && args.file !== "-" ? args.file : undefined;
    ({ dir } = await materializeContext(args.context, tmpDir, controller.signal, fileInContext !== undefined ? { dockerfileName: fileInContext } : {}));
  } catch (error) {
    await rm(tmpDir, { recursive: true, force: true });
    if (!controller.signal.aborted) throw error;
    process.stderr.write("build cancelled\n");
    return EXIT.interrupted;
  } finally {
    process.off("SIGINT", onSignal);
    process.off("SIGTERM", onSignal);
  }
  try {
    const file = args.file === undefined || args.file === "-" ? args.file : resolve(dir, args.file.replace(/^\/+/, ""));
    if (file !== undefined && file !== "-" && /^\.\.(\/|$)/.test(relative(dir, file))) throw new UserError(`-f ${args.file}: the Dockerfile must be inside the build context`);
    return await runBuild({ ...args, context: dir, ...(file !== undefined ? { file } : {}) });
  } finally {
    await rm(tmpDir, { recursive: true, force: true });
    // The checksum cache of a directory that no longer exists (see openContext).
    await rm(join(store.dir, "context-checksums", `${createHash("sha256").update(dir).digest("hex").slice(0, 32)}.json`), { force: true });
  }
}

async function requireDirectory(dir: string): Promise<void> {
  const info = await stat(dir).catch(() => undefined);
  if (!info) throw new UserError(`build context "${dir}" does not exist`, "pass the directory with your sources, e.g. tsbuild build .");
  if (!info.isDirectory()) throw new UserError(`build context "${dir}" is not a directory`, "pass a directory, - (a tar archive on standard input), an http(s) URL of a tarball, or a git URL");
}

async function openContext(store: StateRoot, dir: string, dockerfilePath: string): Promise<LocalContext> {
  const id = createHash("sha256").update(dir).digest("hex").slice(0, 32);
  return LocalContext.open({ dir, dockerfilePath: dockerfilePath === "-" ? join(dir, "Dockerfile") : dockerfilePath, checksumCachePath: join(store.dir, "context-checksums", `${id}.json`) });
}

function platformOption(text: string | undefined) {
  if (text === undefined) return hostPlatform();
  if (text.includes(",")) throw new UserError(`--platform ${text}: building several platforms at once is not supported yet`, "build one platform per command");
  const platform = parsePlatform(text);
  if (!platform) throw new UserError(`--platform ${text}: not a platform`, "write os/arch[/variant], e.g. linux/arm64");
  return platform;
}

function buildArgsOption(values: readonly string[]): Map<string, string> {
  const args = new Map<string, string>();
  for (const value of values) {
    const equals = value.indexOf("=");
    if (equals === 0) throw new UserError(`--build-arg "${value}": the name is empty`, "write --build-arg NAME=VALUE");
    if (equals > 0) args.set(value.slice(0, equals), value.slice(equals + 1));
    else if (process.env[value] !== undefined) args.set(value, process.env[value] as string);
  }
  return args;
}

/** History timestamps: SOURCE_DATE_EPOCH when set (reproducible builds), else now. */
function creationTime(): string {
  const epoch = process.env.SOURCE_DATE_EPOCH;
  if (epoch && /^\d+$/.test(epoch)) return new Date(Number(epoch) * 1000).toISOString();
  return new Date().toISOString();
}

function graphJson(definition: BuildDefinition): string {
  const vertices = definition.graph.ancestry(definition.root).map((vertex) => ({
    digest: vertex.digest,
    name: vertex.name,
    op: JSON.parse(canonicalJson(vertex.op)) as unknown,
    inputs: vertex.inputs,
    ...(vertex.location ? { location: vertex.location } : {}),
  }));
  return JSON.stringify({ root: definition.root, platform: definition.platform, vertices, image: definition.image }, null, 2) + "\n";
}

/** `--secret id=x,src=FILE` or `id=x,env=VAR` (src= may be written file=; a bare id reads the env var of that name). */
function secretProvider(values: readonly string[]): (id: string) => Promise<Buffer | undefined> {
  const sources = new Map<string, { file?: string; env?: string }>();
  for (const value of values) {
    const fields = new Map(value.split(",").map((field) => {
      const equals = field.indexOf("=");
      return equals < 0 ? [field, ""] : [field.slice(0, equals), field.slice(equals + 1)];
    }));
    const id = fields.get("id");
    if (!id) throw new UserError(`--secret "${value}": the id is missing`, "write --secret id=NAME,src=FILE or --secret id=NAME,env=VAR");
    const file = fields.get("src") ?? fields.get("source") ?? fields.get("file");
    const env = fields.get("env");
    sources.set(id, file ? { file: resolve(file) } : { env: env ?? id });
  }
  return async (id) => {
    const source = sources.get(id);
    if (!source) return undefined;
    if (source.file) {
      try {
        return await readFile(source.file);
      } catch {
        throw new UserError(`--secret id=${id}: cannot read ${source.file}`, "check the path given with src=");
      }
    }
    const value = source.env === undefined ? undefined : process.env[source.env];
    return value === undefined ? undefined : Buffer.from(value);
  };
}

const ENTITLEMENTS = ["security.insecure", "device"];

/** RUN --security=insecure and RUN --device need the user's say-so on the command line, as with buildx's --allow. */
function requireEntitlements(definition: BuildDefinition, allowed: readonly string[]): void {
  for (const entitlement of allowed) {
    if (!ENTITLEMENTS.includes(entitlement)) throw new UserError(`--allow ${entitlement}: unknown entitlement`, `use ${ENTITLEMENTS.join(" or ")}`);
  }
  for (const vertex of definition.graph.ancestry(definition.root)) {
    if (vertex.op.type !== "exec") continue;
    const where = vertex.location ? ` (${vertex.location.file}:${vertex.location.line})` : "";
    if (vertex.op.security === "insecure" && !allowed.includes("security.insecure")) {
      throw new UserError(`${vertex.name}${where} asks for --security=insecure, which is not allowed`, "pass --allow security.insecure if you trust this Dockerfile");
    }
    if ((vertex.op.devices?.length ?? 0) > 0 && !allowed.includes("device")) {
      throw new UserError(`${vertex.name}${where} asks for --device, which is not allowed`, "pass --allow device if you trust this Dockerfile");
    }
  }
}

/** KEY=VALUE flags (--label) as a map. */
function keyValues(values: readonly string[], flag: string): Map<string, string> {
  const map = new Map<string, string>();
  for (const value of values) {
    const equals = value.indexOf("=");
    if (equals <= 0) throw new UserError(`${flag} "${value}": expected KEY=VALUE`);
    map.set(value.slice(0, equals), value.slice(equals + 1));
  }
  return map;
}

/** --annotation [TYPE[,TYPE][[os/arch]]:]KEY=VALUE: for every image output (checked before the build starts). */
function addAnnotations(outputs: OutputSpec[], values: readonly string[]): void {
  parseAnnotationFlags(values);
  for (const output of outputs) {
    if (output.type === "local" || output.type === "tar") continue;
    output.annotations.push(...values);
  }
}
