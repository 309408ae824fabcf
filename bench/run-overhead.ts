/**
 * The cost of an empty RUN step, tsbuild against BuildKit (dockerd) in the same run. Builds a
 * `FROM scratch` + static busybox context with N distinct exec-form `RUN ["/bin/busybox",
 * "true", "<i>"]` steps and with none, cache disabled, and reports per builder
 * (median with N steps − median with 0 steps) / N. Target: at most 50 ms a step and no more
 * than BuildKit's. With the default network and with --network=none; tsbuild's own step times
 * come from --progress rawjson, and one build under perf record shows where a step's time goes.
 *
 * Run: npm run bench:run [-- --steps N] [--rounds N] [--network default|none|both] [--trace auto|yes|no] [--no-buildkit]
 * Results: bench/results/run-overhead.json. docs/benchmarks.md explains the set-up.
 */
import { mkdir, rm, writeFile } from "node:fs/promises";
import { cpus, loadavg } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { createTsbuild, type BuildFlags, type Builder } from "./build-cache/builders.ts";
import { createBuildKit } from "./build-cache/buildkit.ts";
import { compareTrees, type Comparison } from "./build-cache/compare.ts";
import { describeBuilder, describeMachine, type BuilderInfo } from "./build-cache/report.ts";
import { aptInstall, median, run, runChecked, tail } from "./build-cache/run.ts";
import { runBench } from "./build-cache/session.ts";
import { ensureStaticBusybox, writeContext, type OverheadContext } from "./run-overhead/context.ts";
import { buildkitRunStepsMs, percentile, tsbuildRunSteps } from "./run-overhead/steps.ts";
import { KIND_NOTES, KINDS, perfAvailable, SEGMENTS, traceBuild, type TraceResult } from "./run-overhead/trace.ts";

const RESULTS_FILE = new URL("./results/run-overhead.json", import.meta.url);
/** The spec's ceiling for one empty RUN step, in milliseconds, and as a fraction of BuildKit's. */
const TARGET_MS = 50;
const TARGET_RATIO = 1.0;

type Network = "default" | "none";

interface Options {
  steps: number;
  rounds: number;
  networks: Network[];
  trace: "auto" | "yes" | "no";
  buildkit: boolean;
}

const log = (line: string) => console.log(line);

function parseOptions(): Options {
  const { values } = parseArgs({
    options: {
      steps: { type: "string", default: "20" },
      rounds: { type: "string", default: "5" },
      network: { type: "string", default: "both" },
      trace: { type: "string", default: "auto" },
      "no-buildkit": { type: "boolean", default: false },
    },
  });
  const steps = Number(values.steps);
  const rounds = Number(values.rounds);
  if (!(Number.isInteger(steps) && steps > 0)) throw new Error("--steps must be a positive integer");
  if (!(Number.isInteger(rounds) && rounds > 0)) throw new Error("--rounds must be a positive integer");
  if (!["default", "none", "both"].includes(values.network)) throw new Error("--network must be default, none or both");
  if (!["auto", "yes", "no"].includes(values.trace)) throw new Error("--trace must be auto, yes or no");
  return {
    steps,
    rounds,
    networks: values.network === "both" ? ["default", "none"] : [values.network as Network],
    trace: values.trace as Options["trace"],
    buildkit: !values["no-buildkit"],
  };
}

/** One network setting: what each builder builds, and how. */
interface Variant {
  network: Network;
  description: string;
  /** What tsbuild's RUN steps carry between RUN and the command. */
  tsbuildRunFlags: string;
  tsbuildDockerfile: string;
  /** The contexts a builder builds with N and with 0 RUN steps, and its flags. */
  plan(builder: Builder): { withSteps: OverheadContext; withoutSteps: OverheadContext; flags: BuildFlags };
}

interface VariantResult {
  variant: Variant;
  /** Builder id → wall-clock ms of its builds with N steps and with 0. */
  runsMs: Map<string, { withSteps: number[]; withoutSteps: number[] }>;
  /** tsbuild's RUN step durations (rawjson `done` durationMs) over every N-step build. */
  tsbuildStepMs: number[];
  /** tsbuild: from one RUN step's `done` to the next one's `start`. */
  tsbuildGapMs: number[];
  /** BuildKit's RUN step times from its plain progress (to 0.1 s). */
  buildkitStepMs: number[];
  comparison?: Comparison;
  trace?: TraceResult;
}

async function makeVariants(networks: Network[], steps: number, contextsDir: string): Promise<Variant[]> {
  const withoutSteps = await writeContext(join(contextsDir, "zero"), 0);
  const plain = await writeContext(join(contextsDir, `default-${steps}`), steps);
  const variants: Variant[] = [];
  if (networks.includes("default")) {
    variants.push({
      network: "default",
      description: "the default network (tsbuild: CNI bridge; BuildKit: dockerd's bridge network)",
      tsbuildRunFlags: "",
      tsbuildDockerfile: plain.dockerfile,
      plan: () => ({ withSteps: plain, withoutSteps, flags: {} }),
    });
  }
  if (networks.includes("none")) {
    // dockerd 20.10's Dockerfile frontend does not know RUN --network, and tsbuild has no --network option.
    const noNetwork = await writeContext(join(contextsDir, `none-${steps}`), steps, "--network=none");
    variants.push({
      network: "none",
      description: "no network (tsbuild: RUN --network=none; BuildKit: docker build --network=none)",
      tsbuildRunFlags: "--network=none",
      tsbuildDockerfile: noNetwork.dockerfile,
      plan: (builder) =>
        builder.id === "tsbuild" ? { withSteps: noNetwork, withoutSteps, flags: {} } : { withSteps: plain, withoutSteps, flags: { network: "none" } },
    });
  }
  return variants;
}

async function measureVariant(variant: Variant, builders: Builder[], options: Options, outDir: string, dropped: Map<string, string>): Promise<VariantResult> {
  const result: VariantResult = { variant, runsMs: new Map(), tsbuildStepMs: [], tsbuildGapMs: [], buildkitStepMs: [] };
  for (let round = 0; round < options.rounds; round++) {
    // Alternate who goes first, and whether the N-step or the empty build does.
    for (const builder of rotate(builders, round)) {
      const plan = variant.plan(builder);
      for (const context of rotate([plan.withSteps, plan.withoutSteps], round)) {
        const dest = join(outDir, `${builder.id}-${context.steps}`);
        await builder.resetCache(); // tsbuild: a fresh --root; BuildKit: docker builder prune -af
        await rm(dest, { recursive: true, force: true });
        await runChecked({ cmd: "sync", args: [] });
        const run1 = await run(builder.buildCommand(context.dir, dest, { ...plan.flags, noCache: true, progress: "rawjson" }));
        if (run1.code !== 0) {
          const why = `${variant.network}: the build with ${context.steps} steps failed (exit code ${run1.code}):\n${tail(run1.output, 10)}`;
          if (builder.id === "tsbuild") throw new Error(why);
          dropped.set(builder.id, why);
          builders.splice(builders.indexOf(builder), 1);
          break;
        }
        const runs = result.runsMs.get(builder.id) ?? { withSteps: [], withoutSteps: [] };
        result.runsMs.set(builder.id, runs);
        (context.steps === 0 ? runs.withoutSteps : runs.withSteps).push(run1.ms);
        if (context.steps === 0) continue;
        if (builder.id === "tsbuild") {
          const steps = tsbuildRunSteps(run1.output);
          if (steps.length !== context.steps) throw new Error(`tsbuild reported ${steps.length} RUN steps, not ${context.steps}`);
          result.tsbuildStepMs.push(...steps.map((step) => step.durationMs));
          for (let index = 1; index < steps.length; index++) result.tsbuildGapMs.push((steps[index] as { start: number }).start - (steps[index - 1] as { done: number }).done);
        } else if (builder.id === "buildkit") {
          result.buildkitStepMs.push(...buildkitRunStepsMs(run1.output));
        }
      }
    }
    log(`  ${variant.network} ${round + 1}/${options.rounds}: ${formatRound(result, round)}`);
  }
  if (builders.some((builder) => builder.id === "buildkit")) {
    result.comparison = await compareTrees(join(outDir, `tsbuild-${options.steps}`), join(outDir, `buildkit-${options.steps}`));
  }
  return result;
}

function perStepMs(result: VariantResult, id: string, steps: number): number | undefined {
  const runs = result.runsMs.get(id);
  if (runs === undefined || runs.withSteps.length === 0 || runs.withoutSteps.length === 0) return undefined;
  return (median(runs.withSteps) - median(runs.withoutSteps)) / steps;
}

runBench("run-overhead", log, async ({ workDir, track }) => {
  const options = parseOptions();
  const dropped = new Map<string, string>();
  const busybox = await ensureStaticBusybox(log);
  const variants = await makeVariants(options.networks, options.steps, join(workDir, "contexts"));
  const tsbuild = await createTsbuild(workDir);
  const builders: Builder[] = [tsbuild];
  track(tsbuild);
  const info: BuilderInfo[] = [describeBuilder(tsbuild)];
  if (options.buildkit) {
    try {
      // RUN steps on the default network need a bridge: BuildKit fails them on a daemon without one.
      const { builder, daemon } = await createBuildKit(workDir, log, { network: "bridge" });
      builders.push(builder);
      track(builder);
      info.push(describeBuilder(builder, daemon));
    } catch (error) {
      dropped.set("buildkit", (error as Error).message);
    }
  } else {
    dropped.set("buildkit", "skipped (--no-buildkit)");
  }
  const perfData = join(workDir, "perf.data");
  let trace = options.trace !== "no" && (await perfAvailable(perfData));
  if (!trace && options.trace === "yes") {
    await aptInstall("linux-perf");
    trace = await perfAvailable(perfData);
    if (!trace) throw new Error("perf record cannot record the sched tracepoints here (root and tracefs are needed)");
  }
  log(`run-overhead: ${options.steps} RUN steps against a build without any, ${options.rounds} rounds, cache disabled; busybox-static ${busybox}`);
  for (const builder of info) log(`  ${builder.name}: ${builder.version}${builder.note === undefined ? "" : ` — ${builder.note}`}`);
  for (const [id, reason] of dropped) log(`  ${id}: not measured: ${reason}`);
  if (!trace) log(`  no breakdown of the steps: ${options.trace === "no" ? "--trace no" : "perf cannot record here (--trace yes installs linux-perf)"}`);

  const loadAtStart = loadavg()[0] as number;
  const results: VariantResult[] = [];
  for (const variant of variants) {
    log(`${variant.network}: ${variant.description}`);
    await warmUp(variant, builders, join(workDir, "warm-up"));
    const measured = [...builders];
    const result = await measureVariant(variant, measured, options, join(workDir, "out", variant.network), dropped);
    if (trace) {
      log(`  ${variant.network}: one more tsbuild build under perf record`);
      await tsbuild.resetCache();
      const plan = variant.plan(tsbuild);
      result.trace = await traceBuild(tsbuild.buildCommand(plan.withSteps.dir, undefined, { noCache: true, progress: "rawjson" }), perfData);
    }
    results.push(result);
  }

  const report = { options, busybox, info, dropped, results, loadAtStart, loadAtEnd: loadavg()[0] as number };
  printReport(report);
  await mkdir(new URL(".", RESULTS_FILE), { recursive: true });
  await writeFile(RESULTS_FILE, `${JSON.stringify(toJson(report), null, 2)}\n`);
  log("results: bench/results/run-overhead.json");
});

/** One untimed 2-step build per builder: a daemon's first build, and tsbuild's first network attach, pay for set-up. */
async function warmUp(variant: Variant, builders: Builder[], dir: string): Promise<void> {
  for (const builder of builders) {
    const plan = variant.plan(builder);
    const small = await writeContext(join(dir, builder.id), 2, builder.id === "tsbuild" ? variant.tsbuildRunFlags : "");
    await builder.resetCache();
    await run(builder.buildCommand(small.dir, undefined, { ...plan.flags, noCache: true }));
  }
}

interface Report {
  options: Options;
  busybox: string;
  info: BuilderInfo[];
  dropped: Map<string, string>;
  results: VariantResult[];
  loadAtStart: number;
  loadAtEnd: number;
}

function verdict(tsbuildMs: number | undefined, buildkitMs: number | undefined): { ratio?: number; met?: boolean } {
  if (tsbuildMs === undefined) return {};
  const ratio = buildkitMs === undefined || buildkitMs <= 0 ? undefined : tsbuildMs / buildkitMs;
  return { ...(ratio === undefined ? {} : { ratio }), met: tsbuildMs <= TARGET_MS && (ratio === undefined || ratio <= TARGET_RATIO) };
}

function printReport(report: Report): void {
  const { steps } = report.options;
  const header = ["network", "steps", "tsbuild ms/step", "BuildKit ms/step", "ratio", "target", "met"];
  const rows = report.results.map((result) => {
    const ours = perStepMs(result, "tsbuild", steps);
    const theirs = perStepMs(result, "buildkit", steps);
    const { ratio, met } = verdict(ours, theirs);
    return [
      result.variant.network,
      String(steps),
      fixed(ours),
      fixed(theirs),
      ratio === undefined ? "n/a" : `${ratio.toFixed(2)}×`,
      `≤ ${TARGET_MS} ms, ≤ ${TARGET_RATIO.toFixed(2)}×`,
      met === undefined ? "—" : met ? "yes" : "NO",
    ];
  });
  log("");
  for (const line of table([header, ...rows])) log(line);
  log("");
  log(`ms/step = (median build time with ${steps} RUN steps − median with none) / ${steps}; whole CLI commands, wall clock; ratio = tsbuild / BuildKit.`);
  const networkCost = networkCostMs(report);
  if (networkCost.size > 0) log(`the default network's share (ms/step with it − without): ${[...networkCost].map(([id, ms]) => `${id} ${ms.toFixed(1)}`).join(", ")}`);
  log(`load average (1 min) on ${cpus().length} cores: ${report.loadAtStart.toFixed(1)} at the start, ${report.loadAtEnd.toFixed(1)} at the end`);
  for (const result of report.results) {
    const net = result.variant.network;
    for (const [id, runs] of result.runsMs) {
      log(`  ${net.padEnd(8)} ${id.padEnd(9)} ${steps} steps: median ${median(runs.withSteps).toFixed(0)} ms (${runs.withSteps.map((ms) => ms.toFixed(0)).join(", ")})`);
      log(`  ${net.padEnd(8)} ${id.padEnd(9)}  0 steps: median ${median(runs.withoutSteps).toFixed(0)} ms (${runs.withoutSteps.map((ms) => ms.toFixed(0)).join(", ")})`);
    }
    if (result.tsbuildStepMs.length > 0) {
      log(
        `  ${net.padEnd(8)} tsbuild's RUN steps (rawjson done durationMs, ${result.tsbuildStepMs.length} steps): median ${median(result.tsbuildStepMs).toFixed(0)} ms, ` +
          `p90 ${percentile(result.tsbuildStepMs, 90).toFixed(0)} ms; between steps: median ${median(result.tsbuildGapMs).toFixed(0)} ms`,
      );
    }
    if (result.buildkitStepMs.length > 0) {
      log(`  ${net.padEnd(8)} BuildKit's RUN steps (its plain progress, to 0.1 s): median ${median(result.buildkitStepMs).toFixed(0)} ms, p90 ${percentile(result.buildkitStepMs, 90).toFixed(0)} ms`);
    }
    if (result.comparison !== undefined) {
      const c = result.comparison;
      log(c.identical ? `  ${net.padEnd(8)} output check: BuildKit exported the same tree as tsbuild (${c.files} files)` : `  ${net.padEnd(8)} output check: BuildKit's export differs: ${c.differences.join("; ")}`);
    }
  }
  for (const result of report.results) if (result.trace !== undefined) printTrace(result.variant.network, result.trace);
  for (const [id, reason] of report.dropped) log(`${id}: not measured: ${reason}`);
}

/** Builder id → per-step ms with the default network minus without: what the network costs a step. */
function networkCostMs(report: Report): Map<string, number> {
  const withNetwork = report.results.find((result) => result.variant.network === "default");
  const without = report.results.find((result) => result.variant.network === "none");
  const costs = new Map<string, number>();
  if (withNetwork === undefined || without === undefined) return costs;
  for (const id of withNetwork.runsMs.keys()) {
    const a = perStepMs(withNetwork, id, report.options.steps);
    const b = perStepMs(without, id, report.options.steps);
    if (a !== undefined && b !== undefined) costs.set(id, a - b);
  }
  return costs;
}

function printTrace(network: Network, trace: TraceResult): void {
  log("");
  log(`where a tsbuild RUN step's time goes, ${network} network (one ${trace.steps.length}-step build under perf record, ${trace.buildMs.toFixed(0)} ms; medians per step):`);
  const rows = [["  segment", "ms", "programs running meanwhile, and fsync (ms; they may overlap)", "tsbuild alone"]];
  for (const segment of SEGMENTS) {
    const breakdown = trace.median[segment];
    const programs = KINDS.filter((kind) => breakdown.programsMs[kind] >= 0.05).map((kind) => `${kind} ${breakdown.programsMs[kind].toFixed(1)}`);
    rows.push([`  ${segment}`, breakdown.ms.toFixed(1), segment === "sandbox" ? "tsbuild-sandbox, the command" : programs.join(", ") || "—", segment === "sandbox" ? "" : breakdown.aloneMs.toFixed(1)]);
  }
  rows.push(["  step (rawjson durationMs)", trace.medianStepMs.toFixed(1), "", ""]);
  for (const line of table(rows, [0, 2])) log(line);
  log(`  programs started per step: ${Object.entries(trace.programsPerStep).map(([name, count]) => `${name} ${count}`).join(", ")}`);
  for (const kind of KINDS.filter((kind) => SEGMENTS.some((segment) => trace.median[segment].programsMs[kind] >= 0.05))) log(`    ${kind}: ${KIND_NOTES[kind]}`);
}

function toJson(report: Report): object {
  const { steps } = report.options;
  return {
    benchmark: "run-overhead",
    date: new Date().toISOString(),
    machine: describeMachine(report.loadAtStart, report.loadAtEnd),
    method: `(median wall clock of the build with ${steps} RUN steps − median with none) / ${steps}; cache disabled (tsbuild --no-cache with a fresh --root, docker build --no-cache after docker builder prune -af); both export to a fresh local directory`,
    steps,
    rounds: report.options.rounds,
    busyboxStatic: report.busybox,
    target: { maxMsPerStep: TARGET_MS, maxRatioToBuildKit: TARGET_RATIO },
    builders: Object.fromEntries(report.info.map(({ id, ...rest }) => [id, rest])),
    unavailable: Object.fromEntries(report.dropped),
    defaultNetworkMsPerStep: Object.fromEntries([...networkCostMs(report)].map(([id, ms]) => [id, round1(ms)])),
    variants: report.results.map((result) => {
      const ours = perStepMs(result, "tsbuild", steps);
      const theirs = perStepMs(result, "buildkit", steps);
      const { ratio, met } = verdict(ours, theirs);
      return {
        network: result.variant.network,
        description: result.variant.description,
        tsbuildDockerfile: result.variant.tsbuildDockerfile,
        msPerStep: { tsbuild: round1(ours), buildkit: round1(theirs) },
        ratioToBuildKit: ratio === undefined ? null : Number(ratio.toFixed(3)),
        meetsTarget: met ?? null,
        runsMs: Object.fromEntries(
          [...result.runsMs].map(([id, runs]) => [
            id,
            { withSteps: runs.withSteps.map(round1), withoutSteps: runs.withoutSteps.map(round1), medianWithSteps: round1(median(runs.withSteps)), medianWithoutSteps: round1(median(runs.withoutSteps)) },
          ]),
        ),
        tsbuildRunSteps: {
          source: "--progress rawjson, done events' durationMs",
          count: result.tsbuildStepMs.length,
          medianMs: round1(median(result.tsbuildStepMs)),
          p90Ms: round1(percentile(result.tsbuildStepMs, 90)),
          betweenStepsMedianMs: round1(median(result.tsbuildGapMs)),
          all: result.tsbuildStepMs,
        },
        buildkitRunSteps:
          result.buildkitStepMs.length === 0
            ? null
            : { source: "--progress=plain DONE times (0.1 s resolution)", medianMs: median(result.buildkitStepMs), p90Ms: percentile(result.buildkitStepMs, 90) },
        outputsIdentical: result.comparison?.identical ?? null,
        outputDifferences: result.comparison?.identical === false ? result.comparison.differences : undefined,
        trace:
          result.trace === undefined
            ? null
            : {
                method: "one tsbuild build under perf record -e sched:sched_process_{fork,exec,exit}; the lifetimes of the programs tsbuild ran, set against the steps' rawjson times, before/while/after the sandbox helper ran",
                buildMs: round1(result.trace.buildMs),
                medianStepMs: round1(result.trace.medianStepMs),
                median: roundDeep(result.trace.median),
                programsPerStep: result.trace.programsPerStep,
                steps: result.trace.steps.map((step) => ({ durationMs: step.durationMs, segments: roundDeep(step.segments) })),
              },
      };
    }),
  };
}

function formatRound(result: VariantResult, round: number): string {
  return [...result.runsMs]
    .map(([id, runs]) => `${id} ${fixed(runs.withSteps[round], 0)} / ${fixed(runs.withoutSteps[round], 0)} ms`)
    .join(", ");
}

function rotate<T>(items: readonly T[], by: number): T[] {
  const shift = items.length === 0 ? 0 : by % items.length;
  return [...items.slice(shift), ...items.slice(0, shift)];
}

function fixed(value: number | undefined, digits = 1): string {
  return value === undefined || Number.isNaN(value) ? "n/a" : value.toFixed(digits);
}

function round1<T extends number | undefined>(value: T): T | null {
  return value === undefined || Number.isNaN(value) ? null : ((Math.round(value * 10) / 10) as T);
}

/** Every number in a plain object tree rounded to 0.1. */
function roundDeep<T>(value: T): T {
  if (typeof value === "number") return round1(value) as T;
  if (value === null || typeof value !== "object") return value;
  return Object.fromEntries(Object.entries(value).map(([key, inner]) => [key, roundDeep(inner)])) as T;
}

/** Numbers right-aligned, the `leftAligned` columns left-aligned. */
function table(rows: string[][], leftAligned: number[] = [0]): string[] {
  const widths = (rows[0] ?? []).map((_, column) => Math.max(...rows.map((row) => [...(row[column] ?? "")].length)));
  return rows.map((row) =>
    row
      .map((cell, column) => (leftAligned.includes(column) ? cell.padEnd(widths[column] as number) : cell.padStart(widths[column] as number)))
      .join("  ")
      .trimEnd(),
  );
}

