/**
 * Where the time of a tsbuild RUN step goes. One build runs under `perf record` of the
 * scheduler's fork, exec and exit tracepoints, which gives when every program tsbuild starts
 * (mount, umount, getfattr, the CNI plugins and the iptables they run, the sandbox helper)
 * begins and ends, at almost no cost to the build (no ptrace stops, unlike strace). Set against
 * the steps' rawjson start/done times (CLOCK_MONOTONIC converted to the wall clock), each step
 * splits into three segments — before the sandbox helper starts, the sandbox, after it exits —
 * and in each, the time the programs of each kind were running, the time tsbuild spent in
 * fsync/fdatasync, and the time tsbuild's own process was otherwise alone (JavaScript, other
 * file system calls, spawning, waiting).
 *
 * Programs overlap (tsbuild may attach the network while it mounts the overlay, or release it
 * in the background while the next step starts), so the figures of a segment can add up to
 * more than the segment. Tracepoints carry program names, not arguments: `umount` is the
 * overlay's and, with the default network, also the network namespace's.
 */
import { rm } from "node:fs/promises";
import { basename } from "node:path";
import type { Command } from "../build-cache/run.ts";
import { median, run, runChecked, succeeds } from "../build-cache/run.ts";
import { tsbuildRunSteps, type TsbuildStep } from "./steps.ts";

const EVENTS = ["sched:sched_process_fork", "sched:sched_process_exec", "sched:sched_process_exit"];
/** tsbuild's own fsync/fdatasync calls (the cache record is written durably); recorded when the kernel has these tracepoints. */
const SYNC_EVENTS = ["syscalls:sys_enter_fdatasync", "syscalls:sys_exit_fdatasync", "syscalls:sys_enter_fsync", "syscalls:sys_exit_fsync"];

/** The kinds of programs, by name. */
export const KINDS = ["overlay mount", "network", "umount", "layer commit", "other programs", "fsync"] as const;
export type Kind = (typeof KINDS)[number];

export const KIND_NOTES: Record<Kind, string> = {
  "overlay mount": "mount -t overlay, setfattr (opaque directories); the first step also mounts the netns directory",
  network: "netns (unshare + ip), CNI ADD/DEL: bridge + host-local (and iptables, once per bridge); run by tsbuild's program launcher (a shell, left out)",
  umount: "the overlay rootfs; with the default network also the netns",
  "layer commit": "getfattr -R: opaque directories of the upper directory",
  "other programs": "anything else",
  fsync: "tsbuild's own fdatasync/fsync calls (e.g. the cache record), not a program",
};

export const SEGMENTS = ["before the sandbox", "sandbox", "after the sandbox"] as const;
export type Segment = (typeof SEGMENTS)[number];

export interface SegmentBreakdown {
  ms: number;
  /** Per kind of program: how long one of that kind was running within the segment. */
  programsMs: Record<Kind, number>;
  /** How long no program ran and tsbuild was not in fsync: tsbuild's own process alone. */
  aloneMs: number;
}

export interface StepBreakdown {
  name: string;
  durationMs: number;
  segments: Record<Segment, SegmentBreakdown>;
  /** Programs started during the step, nested ones included (e.g. iptables run by a CNI plugin): name → count. */
  programs: Record<string, number>;
}

export interface TraceResult {
  /** The traced build's wall clock. */
  buildMs: number;
  steps: StepBreakdown[];
  /** The medians over the steps, figure by figure. */
  median: Record<Segment, SegmentBreakdown>;
  /** Per program: the median number of runs per step. */
  programsPerStep: Record<string, number>;
  medianStepMs: number;
}

/** Whether `perf record` can record the scheduler tracepoints here (root, perf installed, tracefs). */
export async function perfAvailable(scratchFile: string): Promise<boolean> {
  const ok = await succeeds({ cmd: "perf", args: ["record", "-q", "-k", "mono", "-e", "sched:sched_process_exec", "-o", scratchFile, "--", "true"] });
  await rm(scratchFile, { force: true });
  return ok;
}

/** Runs `command` under perf record and breaks its RUN steps down (the command must print tsbuild rawjson progress). */
export async function traceBuild(command: Command, dataFile: string): Promise<TraceResult> {
  const syncEvents = (await succeeds({ cmd: "perf", args: ["record", "-q", ...SYNC_EVENTS.flatMap((event) => ["-e", event]), "-o", dataFile, "--", "true"] })) ? SYNC_EVENTS : [];
  const events = [...EVENTS, ...syncEvents].flatMap((event) => ["-e", event]);
  const result = await runChecked({
    cmd: "perf",
    args: ["record", "-q", "-k", "mono", ...events, "-o", dataFile, "--", command.cmd, ...command.args],
    ...(command.env === undefined ? {} : { env: command.env }),
  });
  const script = await run({ cmd: "perf", args: ["script", "-i", dataFile, "-F", "pid,tid,time,event,trace"] });
  await rm(dataFile, { force: true });
  const spans = parseSchedEvents(script.output, monotonicToEpochMs());
  const steps = tsbuildRunSteps(result.output).map((step) => breakDown(step, spans));
  if (steps.length === 0) throw new Error("the traced build reported no RUN steps");
  const names = new Set(steps.flatMap((step) => Object.keys(step.programs)));
  return {
    buildMs: result.ms,
    steps,
    median: Object.fromEntries(
      SEGMENTS.map((segment) => {
        const of = (pick: (breakdown: SegmentBreakdown) => number) => median(steps.map((step) => pick(step.segments[segment])));
        const programsMs = Object.fromEntries(KINDS.map((kind) => [kind, of((breakdown) => breakdown.programsMs[kind])])) as Record<Kind, number>;
        return [segment, { ms: of((breakdown) => breakdown.ms), programsMs, aloneMs: of((breakdown) => breakdown.aloneMs) }];
      }),
    ) as Record<Segment, SegmentBreakdown>,
    programsPerStep: Object.fromEntries([...names].sort().map((name) => [name, median(steps.map((step) => step.programs[name] ?? 0))])),
    medianStepMs: median(steps.map((step) => step.durationMs)),
  };
}

/** Date.now() − CLOCK_MONOTONIC (which process.hrtime reads), in ms: the smallest of a few readings. */
function monotonicToEpochMs(): number {
  let best = Number.POSITIVE_INFINITY;
  for (let attempt = 0; attempt < 20; attempt++) best = Math.min(best, Date.now() - Number(process.hrtime.bigint()) / 1e6);
  return best;
}

interface Span {
  pid: number;
  /** The process that forked it: tsbuild's, or a program's (iptables run by a CNI plugin, the command by the sandbox). */
  parent: number;
  /** Whether tsbuild's own process started it (or, for an fsync, made the call). */
  topLevel: boolean;
  /** The first program the process ran; "fsync" for a call of tsbuild's. */
  path: string;
  /** Epoch milliseconds: its fork, its exit (a call's entry and return). */
  start: number;
  end: number;
}

/**
 * `perf script` lines: `PID/TID  SECONDS.MICROS: sched:sched_process_fork: ... child_pid=N`,
 * `...: sched:sched_process_exec: filename=PATH pid=N ...`, `...: sched:sched_process_exit: ...`.
 * A process is a forked task that execs; it ends when its thread group leader exits. The
 * traced command itself (tsbuild) is left out. The PID column of a fork is the parent's.
 *
 * tsbuild starts the network's programs through a launcher: a shell it runs once, which forks
 * a subshell per program. The launcher is left out too, and what it starts counts as started by
 * tsbuild itself.
 */
function parseSchedEvents(text: string, offsetMs: number): Span[] {
  const forked = new Map<number, { time: number; parent: number }>();
  const running = new Map<number, { path: string; start: number; parent: number }>();
  const syncing = new Map<number, number>();
  const execd = new Set<number>();
  const launchers = new Set<number>();
  const spans: Span[] = [];
  let root: number | undefined;
  // The nearest ancestor that ran a program (subshells only fork), or tsbuild.
  const programParent = (pid: number): number | undefined => {
    let parent = forked.get(pid)?.parent;
    while (parent !== undefined && parent !== root && !execd.has(parent)) parent = forked.get(parent)?.parent;
    return parent;
  };
  for (const line of text.split("\n")) {
    const match = /^\s*(\d+)\/(\d+)\s+(\d+\.\d+):\s+(?:sched|syscalls):(sched_process_\w+|sys_(?:enter|exit)_f(?:data)?sync):\s*(.*)$/.exec(line);
    if (match === null) continue;
    const pid = Number(match[1]);
    const tid = Number(match[2]);
    const time = Number(match[3]) * 1000 + offsetMs;
    const fields = match[5] as string;
    switch (match[4]) {
      case "sched_process_fork": {
        const child = Number(/child_pid=(\d+)/.exec(fields)?.[1]);
        if (!Number.isNaN(child)) forked.set(child, { time, parent: pid });
        break;
      }
      case "sched_process_exec": {
        const path = /filename=(\S+)/.exec(fields)?.[1] ?? "?";
        root ??= pid;
        // The first program a process runs names it (unshare stays unshare after it execs true).
        const fork = forked.get(pid);
        if (pid === root || running.has(pid) || launchers.has(pid)) break;
        execd.add(pid);
        const parent = programParent(pid) ?? -1;
        if (parent === root && /^(sh|dash)$/.test(basename(path))) {
          launchers.add(pid);
          break;
        }
        running.set(pid, { path, start: fork?.time ?? time, parent: launchers.has(parent) ? (root as number) : parent });
        break;
      }
      case "sys_enter_fdatasync":
      case "sys_enter_fsync":
        if (pid === root) syncing.set(tid, time);
        break;
      case "sys_exit_fdatasync":
      case "sys_exit_fsync": {
        const start = syncing.get(tid);
        syncing.delete(tid);
        if (start !== undefined) spans.push({ pid, parent: pid, topLevel: true, path: "fsync", start, end: time });
        break;
      }
      case "sched_process_exit": {
        const process = running.get(pid);
        if (process !== undefined && pid === tid) {
          running.delete(pid);
          spans.push({ pid, parent: process.parent, topLevel: process.parent === root, path: process.path, start: process.start, end: time });
        }
        break;
      }
    }
  }
  return spans;
}

const NETWORK_PROGRAMS = new Set(["ip", "iptables", "ip6tables", "unshare", "nsenter"]);

function kindOf(span: Span): Kind | "sandbox" {
  const program = basename(span.path);
  if (span.path === "fsync") return "fsync";
  if (program === "tsbuild-sandbox") return "sandbox";
  if (program === "mount" || program === "setfattr") return "overlay mount";
  if (program === "umount") return "umount";
  if (program === "getfattr") return "layer commit";
  if (span.path.includes("/cni/") || NETWORK_PROGRAMS.has(program)) return "network";
  return "other programs";
}

function breakDown(step: TsbuildStep, all: Span[]): StepBreakdown {
  // Processes that ran during the step (1 ms of slack: the events carry whole milliseconds).
  const during = all.filter((span) => span.end >= step.start - 1 && span.start <= step.done + 1);
  // Programs run by programs (iptables by a CNI plugin, the command by the sandbox) count as their parent.
  const topLevel = during.filter((span) => span.topLevel);
  const sandbox = topLevel.find((span) => kindOf(span) === "sandbox" && span.start >= step.start - 1);
  const sandboxStart = Math.max(step.start, Math.min(sandbox?.start ?? step.done, step.done));
  const sandboxEnd = Math.max(sandboxStart, Math.min(sandbox?.end ?? sandboxStart, step.done));
  const bounds: Record<Segment, [number, number]> = {
    "before the sandbox": [step.start, sandboxStart],
    sandbox: [sandboxStart, sandboxEnd],
    "after the sandbox": [sandboxEnd, step.done],
  };
  const others = topLevel.filter((span) => span !== sandbox);
  const segments = Object.fromEntries(
    SEGMENTS.map((segment) => {
      const [from, to] = bounds[segment];
      const clip = (spans: Span[]) => spans.map((span): [number, number] => [Math.max(span.start, from), Math.min(span.end, to)]);
      const programsMs = Object.fromEntries(KINDS.map((kind) => [kind, unionMs(clip(others.filter((span) => kindOf(span) === kind)))])) as Record<Kind, number>;
      const aloneMs = segment === "sandbox" ? 0 : Math.max(0, to - from - unionMs(clip(others)));
      return [segment, { ms: to - from, programsMs, aloneMs }];
    }),
  ) as Record<Segment, SegmentBreakdown>;
  const programs: Record<string, number> = {};
  for (const span of during.filter((span) => span.start >= step.start - 1 && span.path !== "fsync")) programs[basename(span.path)] = (programs[basename(span.path)] ?? 0) + 1;
  return { name: step.name, durationMs: step.durationMs, segments, programs };
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
