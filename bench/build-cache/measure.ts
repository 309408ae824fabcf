/** The scenarios and the timing loop. */
import { rm } from "node:fs/promises";
import { join } from "node:path";
import type { Builder } from "./builders.ts";
import { compareTrees, type Comparison } from "./compare.ts";
import { editSourceFile, type GeneratedContext } from "./context.ts";
import { runChecked } from "./run.ts";

export interface Scenario {
  name: string;
  description: string;
  rounds: number;
  /** The spec's ceiling for tsbuild's time as a fraction of BuildKit's, where it sets one. */
  target?: number;
  /** Empty every builder's cache before each of its runs. */
  cold?: boolean;
  /** Untimed, once per round before any builder runs. */
  beforeRound?(context: GeneratedContext, round: number): Promise<void>;
}

export function scenarios(rounds: { cold: number; warm: number; incremental: number }): Scenario[] {
  return [
    { name: "cold", description: "empty cache (fresh tsbuild root; docker builder prune -af)", rounds: rounds.cold, cold: true },
    { name: "warm", description: "rebuild, nothing changed", rounds: rounds.warm, target: 0.8 },
    {
      name: "incremental",
      description: "rebuild after one source file's content changed",
      rounds: rounds.incremental,
      target: 0.8,
      beforeRound: (context, round) => editSourceFile(context, round),
    },
  ];
}

export interface ScenarioResult {
  scenario: Scenario;
  /** Builder id → wall-clock milliseconds of each run. */
  runsMs: Map<string, number[]>;
  /** Builder id → the output of its last run (progress lines, for the report). */
  lastOutput: Map<string, string>;
  /** Builder id → how its export compares with tsbuild's, after the last round. */
  comparisons: Map<string, Comparison>;
}

export interface MeasureOptions {
  builders: Builder[];
  context: GeneratedContext;
  /** Where builders export to (one directory each), or undefined to export nothing. */
  outDir: string | undefined;
  log: (line: string) => void;
  /** Called when a builder other than tsbuild fails: it is left out from then on. */
  onDropped: (builder: Builder, reason: string) => void;
}

export async function measureScenario(scenario: Scenario, options: MeasureOptions): Promise<ScenarioResult> {
  const result: ScenarioResult = { scenario, runsMs: new Map(), lastOutput: new Map(), comparisons: new Map() };
  for (let round = 0; round < scenario.rounds; round++) {
    await scenario.beforeRound?.(options.context, round);
    // Alternate who goes first, so neither builder always inherits the other's disk and cache state.
    for (const builder of rotate(options.builders, round)) {
      try {
        const { ms, output } = await timedBuild(builder, scenario, options);
        result.runsMs.set(builder.id, [...(result.runsMs.get(builder.id) ?? []), ms]);
        result.lastOutput.set(builder.id, output);
      } catch (error) {
        if (builder.id === "tsbuild") throw error;
        drop(builder, options, `${scenario.name} build failed: ${(error as Error).message}`);
      }
    }
    options.log(`  ${scenario.name} ${round + 1}/${scenario.rounds}: ${formatRound(result, round)}`);
  }
  if (options.outDir !== undefined) await compareOutputs(result, options.outDir, options.builders);
  return result;
}

async function timedBuild(builder: Builder, scenario: Scenario, options: MeasureOptions): Promise<{ ms: number; output: string }> {
  if (scenario.cold === true) await builder.resetCache();
  const dest = options.outDir === undefined ? undefined : join(options.outDir, builder.id);
  if (dest !== undefined) await rm(dest, { recursive: true, force: true });
  // Flush the previous run's writes so they do not slow this one down.
  await runChecked({ cmd: "sync", args: [] });
  return runChecked(builder.buildCommand(options.context.dir, dest));
}

async function compareOutputs(result: ScenarioResult, outDir: string, builders: Builder[]): Promise<void> {
  for (const builder of builders) {
    if (builder.id === "tsbuild") continue;
    result.comparisons.set(builder.id, await compareTrees(join(outDir, "tsbuild"), join(outDir, builder.id)));
  }
}

function drop(builder: Builder, options: MeasureOptions, reason: string): void {
  const index = options.builders.indexOf(builder);
  if (index >= 0) options.builders.splice(index, 1);
  options.onDropped(builder, reason);
}

function rotate<T>(items: readonly T[], by: number): T[] {
  const shift = items.length === 0 ? 0 : by % items.length;
  return [...items.slice(shift), ...items.slice(0, shift)];
}

function formatRound(result: ScenarioResult, round: number): string {
  return [...result.runsMs].map(([id, runs]) => `${id} ${runs.length === round + 1 ? (runs[round] as number).toFixed(0) : "-"} ms`).join(", ");
}
