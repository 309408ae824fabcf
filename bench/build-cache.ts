/**
 * Build cache: tsbuild against BuildKit (dockerd) in the same run, on a generated multi-stage
 * project of 3,000 files + 64 MiB of blobs. Times the whole CLI command, cold, warm and after
 * a one-file change, and prints medians with the ratio tsbuild/BuildKit (target: warm and
 * incremental at most 0.8×). buildah is measured too when it is installed.
 *
 * Run: npm run bench:build [-- --output local|none] [--rounds N] [--buildah auto|yes|no] [--no-buildkit]
 * Results: bench/results/build-cache.json. docs/benchmarks.md explains the set-up.
 */
import { mkdir, writeFile } from "node:fs/promises";
import { loadavg } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { createBuildah, createTsbuild, type Builder } from "./build-cache/builders.ts";
import { createBuildKit } from "./build-cache/buildkit.ts";
import { DOCKERFILE, generateContext, type ContextShape } from "./build-cache/context.ts";
import { measureScenario, scenarios, type ScenarioResult } from "./build-cache/measure.ts";
import { describeBuilder, executedSteps, printReport, toJson, type BuilderInfo } from "./build-cache/report.ts";
import { aptInstall, run, succeeds } from "./build-cache/run.ts";
import { runBench } from "./build-cache/session.ts";

/** 15 files of manifests, Dockerfile and blobs + 2,985 sources = 3,000 files; 4 × 16 MiB of blobs. */
const SHAPE: ContextShape = { seed: 20_240_601, sourceFiles: 2_985, packages: 8, blobs: 4, blobBytes: 16 * 2 ** 20 };
const RESULTS_FILE = new URL("./results/build-cache.json", import.meta.url);

interface Options {
  output: "local" | "none";
  rounds: { cold: number; warm: number; incremental: number };
  buildah: "auto" | "yes" | "no";
  buildkit: boolean;
}

const log = (line: string) => console.log(line);

function parseOptions(): Options {
  const { values } = parseArgs({
    options: {
      output: { type: "string", default: "local" },
      rounds: { type: "string" },
      buildah: { type: "string", default: "auto" },
      "no-buildkit": { type: "boolean", default: false },
    },
  });
  if (values.output !== "local" && values.output !== "none") throw new Error("--output must be local or none");
  if (!["auto", "yes", "no"].includes(values.buildah)) throw new Error("--buildah must be auto, yes or no");
  const rounds = values.rounds === undefined ? undefined : Number(values.rounds);
  if (rounds !== undefined && !(Number.isInteger(rounds) && rounds > 0)) throw new Error("--rounds must be a positive integer");
  return {
    output: values.output,
    rounds: { cold: rounds ?? 3, warm: rounds ?? 5, incremental: rounds ?? 5 },
    buildah: values.buildah as Options["buildah"],
    buildkit: !values["no-buildkit"],
  };
}

/** Sets up the builders that can run here; the others are listed with the reason. */
async function setUpBuilders(options: Options, workDir: string, unavailable: Map<string, string>): Promise<{ builders: Builder[]; info: BuilderInfo[] }> {
  const tsbuild = await createTsbuild(workDir);
  const builders: Builder[] = [tsbuild];
  const info: BuilderInfo[] = [describeBuilder(tsbuild)];
  if (options.buildkit) {
    try {
      const { builder, daemon } = await createBuildKit(workDir, log);
      builders.push(builder);
      info.push(describeBuilder(builder, daemon));
    } catch (error) {
      unavailable.set("buildkit", (error as Error).message);
    }
  } else {
    unavailable.set("buildkit", "skipped (--no-buildkit)");
  }
  if (options.buildah !== "no") {
    try {
      if (options.buildah === "yes" && !(await succeeds({ cmd: "buildah", args: ["--version"] }))) await aptInstall("buildah");
      const buildah = await createBuildah(workDir);
      builders.push(buildah);
      info.push(describeBuilder(buildah, "vfs storage driver, bud --layers"));
    } catch (error) {
      if (options.buildah === "yes") unavailable.set("buildah", (error as Error).message);
    }
  }
  return { builders, info };
}

/** One untimed build of a one-file project per builder: a daemon's first build pays for set-up the others do not. */
async function warmUp(builders: Builder[], workDir: string): Promise<void> {
  const dir = join(workDir, "warm-up");
  await mkdir(dir, { recursive: true });
  await writeFile(join(dir, "Dockerfile"), "FROM scratch\nCOPY hello.txt /\n");
  await writeFile(join(dir, "hello.txt"), "hello\n");
  for (const builder of builders) await run(builder.buildCommand(dir, undefined));
}

runBench("build-cache", log, async ({ workDir, track }) => {
  const options = parseOptions();
  const unavailable = new Map<string, string>();
  const results: ScenarioResult[] = [];
  log(`build-cache: generating the context in ${workDir}`);
  const context = await generateContext(join(workDir, "context"), SHAPE);
  log(`build-cache: ${context.files} files, ${(context.bytes / 2 ** 20).toFixed(1)} MiB; output: ${options.output === "local" ? "type=local,dest=DIR" : "none"}`);
  const setUp = await setUpBuilders(options, workDir, unavailable);
  const builders = setUp.builders;
  track(...builders);
  for (const builder of setUp.info) log(`  ${builder.name}: ${builder.version}${builder.note === undefined ? "" : ` — ${builder.note}`}`);
  for (const [id, reason] of unavailable) log(`  ${id}: not measured: ${reason}`);
  await warmUp(builders, workDir);
  const loadAtStart = loadavg()[0] as number;

  const measured = [...builders];
  const outDir = options.output === "local" ? join(workDir, "out") : undefined;
  for (const scenario of scenarios(options.rounds)) {
    log(`${scenario.name}: ${scenario.description}`);
    results.push(await measureScenario(scenario, { builders: measured, context, outDir, log, onDropped: (builder, reason) => unavailable.set(builder.id, reason) }));
  }

  const report = { context, seed: SHAPE.seed, dockerfile: DOCKERFILE, output: options.output, builders: setUp.info, unavailable, results, loadAtStart };
  printReport(report, log);
  printTsbuildSteps(results);
  await mkdir(new URL(".", RESULTS_FILE), { recursive: true });
  await writeFile(RESULTS_FILE, `${JSON.stringify(toJson(report), null, 2)}\n`);
  log(`results: bench/results/build-cache.json`);
});

/** Where tsbuild's time went in its last incremental build: the steps it executed. */
function printTsbuildSteps(results: ScenarioResult[]): void {
  const output = results.find((result) => result.scenario.name === "incremental")?.lastOutput.get("tsbuild");
  if (output === undefined) return;
  log("tsbuild steps executed in its last incremental build (from --progress plain):");
  for (const step of executedSteps(output)) log(`  ${step}`);
}

