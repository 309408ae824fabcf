/** The results: a table on the terminal and a JSON document. */
import { cpus, loadavg, release, totalmem } from "node:os";
import type { Builder } from "./builders.ts";
import type { GeneratedContext } from "./context.ts";
import type { ScenarioResult } from "./measure.ts";
import { median } from "./run.ts";

export interface BuilderInfo {
  id: string;
  name: string;
  version: string;
  note?: string;
}

export interface ReportInput {
  context: GeneratedContext;
  seed: number;
  dockerfile: string;
  output: "local" | "none";
  builders: BuilderInfo[];
  unavailable: Map<string, string>;
  results: ScenarioResult[];
  /** 1-minute load average when the measurements started: other work on the machine adds noise. */
  loadAtStart: number;
}

export function describeBuilder(builder: Builder, note?: string): BuilderInfo {
  return { id: builder.id, name: builder.name, version: builder.version, ...(note === undefined ? {} : { note }) };
}

/** The machine a benchmark ran on, with the load at its start and end (other work skews every figure). */
export function describeMachine(loadAtStart: number, loadAtEnd: number): object {
  return {
    cpus: cpus().length,
    cpuModel: cpus()[0]?.model,
    memoryGiB: Math.round(totalmem() / 2 ** 30),
    kernel: release(),
    node: process.version,
    loadAverage1m: { atStart: round1(loadAtStart), atEnd: round1(loadAtEnd) },
  };
}

/** The JSON written to bench/results/build-cache.json. */
export function toJson(input: ReportInput): object {
  return {
    benchmark: "build-cache",
    date: new Date().toISOString(),
    machine: describeMachine(input.loadAtStart, loadavg()[0] as number),
    context: { files: input.context.files, bytes: input.context.bytes, seed: input.seed, dockerfile: input.dockerfile },
    output: input.output === "local" ? "type=local,dest=DIR for every builder (a fresh directory per run)" : "none requested (docker build stores the image in dockerd's image store)",
    builders: Object.fromEntries(input.builders.map(({ id, ...rest }) => [id, rest])),
    unavailable: Object.fromEntries(input.unavailable),
    scenarios: input.results.map((result) => {
      const medians = medianMs(result);
      const ratio = ratioToBuildKit(medians);
      const target = result.scenario.target ?? null;
      return {
        name: result.scenario.name,
        description: result.scenario.description,
        rounds: result.scenario.rounds,
        medianMs: Object.fromEntries([...medians].map(([id, ms]) => [id, round1(ms)])),
        runsMs: Object.fromEntries([...result.runsMs].map(([id, runs]) => [id, runs.map(round1)])),
        ratioToBuildKit: ratio === undefined ? null : Number(ratio.toFixed(3)),
        target,
        meetsTarget: target === null || ratio === undefined ? null : ratio <= target,
        outputsIdentical: Object.fromEntries([...result.comparisons].map(([id, comparison]) => [id, comparison.identical])),
      };
    }),
  };
}

/** The summary table, plus every run and the output checks. */
export function printReport(input: ReportInput, print: (line: string) => void): void {
  const others = input.builders.filter((builder) => builder.id !== "tsbuild" && builder.id !== "buildkit");
  const header = ["scenario", "runs", "tsbuild ms", "BuildKit ms", "ratio", "target", "met", ...others.map((b) => `${b.name} ms`)];
  const rows = input.results.map((result) => {
    const medians = medianMs(result);
    const ratio = ratioToBuildKit(medians);
    const target = result.scenario.target;
    return [
      result.scenario.name,
      String(result.scenario.rounds),
      ms(medians.get("tsbuild")),
      ms(medians.get("buildkit")),
      ratio === undefined ? "n/a" : `${ratio.toFixed(2)}×`,
      target === undefined ? "—" : `≤ ${target.toFixed(2)}×`,
      target === undefined || ratio === undefined ? "—" : ratio <= target ? "yes" : "NO",
      ...others.map((builder) => ms(medians.get(builder.id))),
    ];
  });
  print("");
  for (const line of table([header, ...rows])) print(line);
  print("");
  print("ratio = tsbuild / BuildKit (medians); every time is the wall clock of the whole CLI command.");
  print(`load average (1 min) on ${cpus().length} cores: ${input.loadAtStart.toFixed(1)} at the start, ${(loadavg()[0] as number).toFixed(1)} at the end`);
  for (const result of input.results) {
    for (const [id, runs] of result.runsMs) print(`  ${result.scenario.name.padEnd(12)} ${id.padEnd(9)} ${runs.map((run) => run.toFixed(0)).join(", ")} ms`);
  }
  printComparisons(input, print);
  for (const [id, reason] of input.unavailable) print(`${id}: not measured: ${reason}`);
}

function printComparisons(input: ReportInput, print: (line: string) => void): void {
  for (const result of input.results) {
    for (const [id, comparison] of result.comparisons) {
      const size = `${comparison.files} files, ${(comparison.bytes / 2 ** 20).toFixed(1)} MiB`;
      if (comparison.identical) print(`output check (${result.scenario.name}): ${id} exported the same tree as tsbuild (${size})`);
      else print(`output check (${result.scenario.name}): ${id} differs from tsbuild:\n    ${comparison.differences.join("\n    ")}`);
    }
  }
}

/**
 * The steps tsbuild executed (not CACHED) with their times, from its plain progress
 * (`#N [stage i/n] INSTRUCTION` … `#N DONE 0.4s`).
 */
export function executedSteps(plainProgress: string): string[] {
  const names = new Map<string, string>();
  const steps: string[] = [];
  for (const line of plainProgress.split("\n")) {
    const named = /^#(\d+) (\[.*)$/.exec(line);
    if (named !== null && !names.has(named[1] as string)) names.set(named[1] as string, named[2] as string);
    const done = /^#(\d+) DONE (\S+)/.exec(line);
    if (done !== null) steps.push(`${(done[2] as string).padStart(6)}  ${names.get(done[1] as string) ?? `#${done[1]}`}`);
  }
  return steps;
}

function medianMs(result: ScenarioResult): Map<string, number> {
  return new Map([...result.runsMs].filter(([, runs]) => runs.length > 0).map(([id, runs]) => [id, median(runs)]));
}

function ratioToBuildKit(medians: Map<string, number>): number | undefined {
  const ours = medians.get("tsbuild");
  const theirs = medians.get("buildkit");
  return ours === undefined || theirs === undefined ? undefined : ours / theirs;
}

function ms(value: number | undefined): string {
  return value === undefined ? "n/a" : value.toFixed(0);
}

function round1(value: number): number {
  return Math.round(value * 10) / 10;
}

/** Left-aligned first column, right-aligned numbers. */
function table(rows: string[][]): string[] {
  const widths = (rows[0] ?? []).map((_, column) => Math.max(...rows.map((row) => [...(row[column] ?? "")].length)));
  return rows.map((row) =>
    row.map((cell, column) => (column === 0 ? cell.padEnd(widths[column] as number) : cell.padStart(widths[column] as number))).join("  "),
  );
}
