/** The RUN steps a build reported: tsbuild's `--progress rawjson` events, BuildKit's plain progress. */

export interface TsbuildStep {
  name: string;
  /** Epoch milliseconds of the `start` and `done` events. */
  start: number;
  done: number;
  /** The `done` event's durationMs. */
  durationMs: number;
}

/** tsbuild's RUN steps from its rawjson events (one JSON object a line; other lines are ignored). */
export function tsbuildRunSteps(output: string): TsbuildStep[] {
  const starts = new Map<string, number>();
  const steps: TsbuildStep[] = [];
  for (const line of output.split("\n")) {
    if (!line.startsWith("{")) continue;
    let event: { type?: string; vertex?: string; name?: string; time?: number; durationMs?: number };
    try {
      event = JSON.parse(line) as typeof event;
    } catch {
      continue;
    }
    if (event.vertex === undefined || event.time === undefined) continue;
    if (event.type === "start") starts.set(event.vertex, event.time);
    if (event.type === "done" && event.name !== undefined && isRunStep(event.name) && event.durationMs !== undefined) {
      steps.push({ name: event.name, start: starts.get(event.vertex) ?? event.time - event.durationMs, done: event.time, durationMs: event.durationMs });
    }
  }
  return steps;
}

/**
 * BuildKit's RUN step times from `--progress=plain` (`#5 [2/21] RUN [...]` … `#5 DONE 0.2s`), in
 * milliseconds: the client prints them to a tenth of a second only.
 */
export function buildkitRunStepsMs(output: string): number[] {
  const runs = new Set<string>();
  const times: number[] = [];
  for (const line of output.split("\n")) {
    const named = /^#(\d+) (\[.*)$/.exec(line);
    if (named !== null && isRunStep(named[2] as string)) runs.add(named[1] as string);
    const done = /^#(\d+) DONE ([\d.]+)s/.exec(line);
    if (done !== null && runs.has(done[1] as string)) times.push(Number(done[2]) * 1000);
  }
  return times;
}

function isRunStep(name: string): boolean {
  return /^\[[^\]]*\] RUN /.test(name);
}

/** Nearest-rank percentile (p in 0..100). */
export function percentile(values: readonly number[], p: number): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const rank = Math.max(1, Math.ceil((p / 100) * sorted.length));
  return sorted[rank - 1] as number;
}
