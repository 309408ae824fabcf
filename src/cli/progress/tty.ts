import type { SolveEvent } from "../../solver/events.ts";
import type { ProgressRenderer } from "./index.ts";

interface Step {
  name: string;
  started: number;
  state: "running" | "done" | "cached" | "error";
  durationMs?: number;
  tail: string[];
}

const TAIL_LINES = 6;

/** A live list of steps with timings, CACHED markers and the last lines of each running step's output. */
export class TtyProgress implements ProgressRenderer {
  private readonly steps = new Map<string, Step>();
  private readonly notes: string[] = [];
  private readonly started = Date.now();
  private drawnLines = 0;
  private timer: NodeJS.Timeout | undefined;

  constructor(private readonly out: NodeJS.WriteStream) {
    this.timer = setInterval(() => this.draw(), 100);
    this.timer.unref();
  }

  event(event: SolveEvent): void {
    const step = this.steps.get(event.vertex);
    switch (event.type) {
      case "start":
        this.steps.set(event.vertex, { name: event.name, started: event.time, state: "running", tail: [] });
        break;
      case "cached":
        this.steps.set(event.vertex, { name: event.name, started: event.time, state: "cached", tail: [] });
        break;
      case "done":
        if (step) Object.assign(step, { state: "done", durationMs: event.durationMs, tail: [] });
        break;
      case "error":
        if (step) Object.assign(step, { state: "error" });
        break;
      case "log":
        if (step) step.tail = [...step.tail, ...event.data.replace(/\n$/, "").split("\n")].slice(-TAIL_LINES);
        break;
      case "status":
        if (step) step.tail = [...step.tail, event.message].slice(-TAIL_LINES);
        break;
    }
  }

  note(message: string): void {
    this.notes.push(message);
  }

  finish(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    this.draw();
  }

  private draw(): void {
    const seconds = ((Date.now() - this.started) / 1000).toFixed(1);
    const steps = [...this.steps.values()];
    const finished = steps.filter((step) => step.state !== "running").length;
    const width = Math.max(40, (this.out.columns ?? 100) - 1);
    const lines = [`[+] Building ${seconds}s (${finished}/${steps.length})`];
    for (const step of steps) {
      const time = step.state === "cached" ? "CACHED" : step.state === "error" ? "ERROR" : `${((step.durationMs ?? Date.now() - step.started) / 1000).toFixed(1)}s`;
      const label = ` => ${step.name}`;
      lines.push(`${label.slice(0, width - time.length - 1).padEnd(width - time.length - 1)} ${time}`);
      if (step.state === "running") for (const line of step.tail) lines.push(`    ${line}`.slice(0, width));
    }
    lines.push(...this.notes);
    const clear = this.drawnLines > 0 ? `\x1b[${this.drawnLines}A\x1b[J` : "";
    this.out.write(clear + lines.join("\n") + "\n");
    this.drawnLines = lines.length;
  }
}
