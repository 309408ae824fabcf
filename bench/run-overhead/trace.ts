/**
 * Where the time of a tsbuild RUN step goes: one build under `strace -f -e trace=execve`
 * records when every helper program tsbuild starts (mount, umount, getfattr, the CNI plugins
 * and the iptables they run, the sandbox helper) begins and ends; set against the steps'
 * rawjson start/done times (the same wall clock), each step splits into those programs and the
 * rest, which is tsbuild's own process (JavaScript, file system calls, spawning, waiting).
 */
import { readFile } from "node:fs/promises";
import { basename } from "node:path";
import type { Command } from "../build-cache/run.ts";
import { run, runChecked, succeeds } from "../build-cache/run.ts";
import { median } from "../build-cache/run.ts";
import { tsbuildRunSteps, type TsbuildStep } from "./steps.ts";

/** The phases a step is split into, in the order they happen. */
export const PHASES = [
  "overlay mount",
  "network attach",
  "sandbox",
  "network release",
  "overlay unmount",
  "layer commit",
  "other programs",
  "tsbuild process",
] as const;
export type Phase = (typeof PHASES)[number];

export const PHASE_NOTES: Record<Phase, string> = {
  "overlay mount": "mount -t overlay (and setfattr for opaque directories)",
  "network attach": "netns + CNI ADD: loopback, bridge (host-local, iptables), firewall (iptables)",
  sandbox: "tsbuild-sandbox started to exited: namespaces, mounts, seccomp, the command",
  "network release": "CNI DEL in reverse, netns removed",
  "overlay unmount": "umount of the rootfs",
  "layer commit": "getfattr -R for opaque directories",
  "other programs": "any other program tsbuild ran during the step",
  "tsbuild process": "the rest: JavaScript, fs calls, spawning, the step log, the cache record",
};

export interface StepBreakdown {
  name: string;
  durationMs: number;
  phasesMs: Record<Phase, number>;
  /** Programs started during the step, nested ones included (e.g. iptables run by a CNI plugin): basename → count. */
  programs: Record<string, number>;
}

export interface TraceResult {
  /** The build's wall clock under strace (slower than untraced). */
  buildMs: number;
  steps: StepBreakdown[];
  /** Per phase: the median over the steps. */
  medianMs: Record<Phase, number>;
  /** Per program: the median number of runs per step. */
  programsPerStep: Record<string, number>;
  medianStepMs: number;
}

export async function straceAvailable(): Promise<boolean> {
  return succeeds({ cmd: "strace", args: ["-V"] });
}

/** Runs `command` under strace and breaks its RUN steps down (the command must print tsbuild rawjson progress). */
export async function traceBuild(command: Command, traceFile: string): Promise<TraceResult> {
  // --seccomp-bpf stops the tracee only at execve, not at every system call: much less distortion.
  const seccomp = (await succeeds({ cmd: "strace", args: ["-f", "--seccomp-bpf", "-e", "trace=execve", "-o", "/dev/null", "true"] })) ? ["--seccomp-bpf"] : [];
  const result = await runChecked({
    cmd: "strace",
    args: ["-f", ...seccomp, "-ttt", "-q", "-e", "trace=execve", "-e", "signal=none", "-o", traceFile, command.cmd, ...command.args],
    ...(command.env === undefined ? {} : { env: command.env }),
  });
  const spans = parseTrace(await readFile(traceFile, "utf8"));
  const steps = tsbuildRunSteps(result.output).map((step) => breakDown(step, spans));
  const medianMs = Object.fromEntries(PHASES.map((phase) => [phase, median(steps.map((step) => step.phasesMs[phase]))])) as Record<Phase, number>;
  const names = new Set(steps.flatMap((step) => Object.keys(step.programs)));
  const programsPerStep = Object.fromEntries([...names].sort().map((name) => [name, median(steps.map((step) => step.programs[name] ?? 0))]));
  await run({ cmd: "rm", args: ["-f", traceFile] });
  return { buildMs: result.ms, steps, medianMs, programsPerStep, medianStepMs: median(steps.map((step) => step.durationMs)) };
}

interface Span {
  pid: number;
  /** The first program the process ran. */
  path: string;
  args: string[];
  /** Epoch milliseconds: its first execve attempt, its exit. */
  start: number;
  end: number;
}

/** `PID SECONDS.MICROS execve("path", ["argv0", ...], ...) = 0` and `PID SECONDS.MICROS +++ exited with 0 +++` lines. */
function parseTrace(text: string): Span[] {
  const open = new Map<number, { start: number; path?: string; args?: string[]; pending?: { path: string; args: string[] } }>();
  const spans: Span[] = [];
  let root: number | undefined;
  for (const line of text.split("\n")) {
    const match = /^(\d+)\s+(\d+\.\d+)\s+(.*)$/.exec(line);
    if (match === null) continue;
    const pid = Number(match[1]);
    const time = Number(match[2]) * 1000;
    const rest = match[3] as string;
    root ??= pid;
    if (pid === root) continue;
    if (rest.startsWith("execve(")) {
      const entry = open.get(pid) ?? { start: time };
      open.set(pid, entry);
      const call = parseExecve(rest);
      if (rest.endsWith("<unfinished ...>")) entry.pending = call;
      else if (/= 0$/.test(rest) && entry.path === undefined) Object.assign(entry, call);
    } else if (rest.startsWith("<... execve resumed>")) {
      const entry = open.get(pid);
      if (entry?.pending !== undefined && /= 0$/.test(rest) && entry.path === undefined) Object.assign(entry, entry.pending);
      if (entry !== undefined) delete entry.pending;
    } else if (rest.startsWith("+++ exited") || rest.startsWith("+++ killed")) {
      const entry = open.get(pid);
      open.delete(pid);
      if (entry?.path !== undefined) spans.push({ pid, path: entry.path, args: entry.args ?? [], start: entry.start, end: time });
    }
  }
  return spans;
}

function parseExecve(rest: string): { path: string; args: string[] } {
  const path = /^execve\("((?:[^"\\]|\\.)*)"/.exec(rest)?.[1] ?? "?";
  const array = /\[(.*?)\]/.exec(rest)?.[1] ?? "";
  const args = [...array.matchAll(/"((?:[^"\\]|\\.)*)"/g)].map((arg) => arg[1] as string);
  return { path, args };
}

function breakDown(step: TsbuildStep, all: Span[]): StepBreakdown {
  // Spans that started inside the step (1 ms of slack: the events carry whole milliseconds).
  const inside = all.filter((span) => span.start >= step.start - 1 && span.start <= step.done + 1);
  const topLevel = inside.filter((span) => !inside.some((other) => other !== span && other.start <= span.start && other.end >= span.end && (other.start < span.start || other.end > span.end)));
  const sandbox = topLevel.find((span) => basename(span.path) === "tsbuild-sandbox");
  const byPhase = new Map<Phase, [number, number][]>();
  for (const span of topLevel) {
    const phase = classify(span, sandbox);
    byPhase.set(phase, [...(byPhase.get(phase) ?? []), [Math.max(span.start, step.start), Math.min(span.end, step.done)]]);
  }
  const phasesMs = Object.fromEntries(PHASES.map((phase) => [phase, unionMs(byPhase.get(phase) ?? [])])) as Record<Phase, number>;
  const programsMs = unionMs([...byPhase.values()].flat());
  phasesMs["tsbuild process"] = Math.max(0, step.durationMs - programsMs);
  const programs: Record<string, number> = {};
  for (const span of inside) programs[basename(span.path)] = (programs[basename(span.path)] ?? 0) + 1;
  return { name: step.name, durationMs: step.durationMs, phasesMs, programs };
}

const NETWORK_PROGRAMS = new Set(["ip", "iptables", "ip6tables", "unshare", "nsenter"]);

function classify(span: Span, sandbox: Span | undefined): Phase {
  const program = basename(span.path);
  if (program === "tsbuild-sandbox") return "sandbox";
  if ((program === "mount" && span.args.includes("overlay")) || program === "setfattr") return "overlay mount";
  if (program === "umount") return "overlay unmount";
  if (program === "getfattr") return "layer commit";
  if (span.path.includes("/cni/") || NETWORK_PROGRAMS.has(program) || (program === "mount" && span.args.includes("--make-shared"))) {
    return sandbox !== undefined && span.start >= sandbox.end ? "network release" : "network attach";
  }
  return "other programs";
}

/** The length of the union of [start, end] intervals, in ms. */
function unionMs(intervals: [number, number][]): number {
  const sorted = intervals.filter(([start, end]) => end > start).sort((a, b) => a[0] - b[0]);
  let total = 0;
  let current: [number, number] | undefined;
  for (const [start, end] of sorted) {
    if (current === undefined || start > current[1]) {
      if (current !== undefined) total += current[1] - current[0];
      current = [start, end];
    } else current[1] = Math.max(current[1], end);
  }
  if (current !== undefined) total += current[1] - current[0];
  return total;
}
