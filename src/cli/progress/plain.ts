import type { SolveEvent } from "../../solver/events.ts";
import type { ProgressRenderer } from "./index.ts";

/** One line per event, numbered per step like BuildKit's plain output; step output is never clipped. */
export class PlainProgress implements ProgressRenderer {
  private readonly numbers = new Map<string, number>();

  constructor(private readonly out: NodeJS.WritableStream) {}

  event(event: SolveEvent): void {
    const number = this.number(event.vertex);
    switch (event.type) {
      case "start":
        this.out.write(`#${number} ${event.name}\n`);
        return;
      case "cached":
        this.out.write(`#${number} ${event.name}\n#${number} CACHED\n`);
        return;
      case "done":
        this.out.write(`#${number} DONE ${(event.durationMs / 1000).toFixed(1)}s\n`);
        return;
      case "error":
        this.out.write(`#${number} ERROR: ${event.message}\n`);
        return;
      case "log":
        for (const line of event.data.replace(/\n$/, "").split("\n")) this.out.write(`#${number} ${line}\n`);
        return;
      case "status":
        this.out.write(`#${number} ${event.message}\n`);
        return;
    }
  }

  note(message: string): void {
    this.out.write(`${message}\n`);
  }

  finish(): void {}

  private number(vertex: string): number {
    let number = this.numbers.get(vertex);
    if (number === undefined) {
      number = this.numbers.size + 1;
      this.numbers.set(vertex, number);
    }
    return number;
  }
}
