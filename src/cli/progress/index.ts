import type { SolveEvent } from "../../solver/events.ts";
import { PlainProgress } from "./plain.ts";
import { TtyProgress } from "./tty.ts";

export type ProgressMode = "auto" | "tty" | "plain" | "quiet" | "rawjson";
export const PROGRESS_MODES: readonly ProgressMode[] = ["auto", "tty", "plain", "quiet", "rawjson"];

/** Draws solver events for a person (tty), a CI log (plain) or a program (rawjson). */
export interface ProgressRenderer {
  event(event: SolveEvent): void;
  /** A line about the build as a whole (not tied to a step). */
  note(message: string): void;
  finish(): void;
}

export function createProgress(mode: ProgressMode, out: NodeJS.WriteStream = process.stderr): ProgressRenderer {
  const resolved = mode === "auto" ? (out.isTTY ? "tty" : "plain") : mode;
  switch (resolved) {
    case "tty":
      return new TtyProgress(out);
    case "plain":
      return new PlainProgress(out);
    case "rawjson":
      return {
        event: (event) => out.write(JSON.stringify(event) + "\n"),
        note: (message) => out.write(JSON.stringify({ type: "note", time: Date.now(), message }) + "\n"),
        finish: () => undefined,
      };
    case "quiet":
      return { event: () => undefined, note: () => undefined, finish: () => undefined };
  }
}
