/** What the solver reports while it works; progress renderers draw these. */
export type SolveEvent =
  | { type: "start"; vertex: string; name: string; time: number }
  | { type: "cached"; vertex: string; name: string; time: number }
  | { type: "done"; vertex: string; name: string; time: number; durationMs: number }
  | { type: "error"; vertex: string; name: string; time: number; message: string }
  | { type: "log"; vertex: string; time: number; stream: "stdout" | "stderr"; data: string }
  | { type: "status"; vertex: string; time: number; message: string };

export type SolveListener = (event: SolveEvent) => void;
