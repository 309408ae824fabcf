import { createWriteStream, type WriteStream } from "node:fs";
import { mkdir } from "node:fs/promises";
import { join } from "node:path";
import { PassThrough, type Writable } from "node:stream";
import type { Vertex } from "../llb/index.ts";
import type { StateRoot } from "./store/index.ts";

const TAIL_LINES = 20;

/**
 * The whole output of a step, kept in a file under the state root (never
 * clipped), streamed to progress as it comes, with its last lines at hand for
 * the error message.
 */
export class StepLog {
  private lines: string[] = [];
  private partial = "";

  private constructor(
    readonly path: string,
    private readonly file: WriteStream,
    readonly streams: { stdout: Writable; stderr: Writable },
  ) {}

  static async open(store: StateRoot, vertex: Vertex, onData: (stream: "stdout" | "stderr", data: string) => void): Promise<StepLog> {
    const dir = join(store.dir, "logs");
    await mkdir(dir, { recursive: true });
    const path = join(dir, `${new Date().toISOString().replace(/[:.]/g, "-")}-${vertex.digest.slice(7, 19)}.log`);
    const file = createWriteStream(path);
    const streams = { stdout: new PassThrough(), stderr: new PassThrough() };
    const log = new StepLog(path, file, streams);
    for (const name of ["stdout", "stderr"] as const) {
      streams[name].on("data", (chunk: Buffer) => {
        const text = chunk.toString("utf8");
        file.write(chunk);
        log.remember(text);
        onData(name, text);
      });
    }
    return log;
  }

  tail(): string {
    return [...this.lines, this.partial].filter((line) => line !== "").slice(-TAIL_LINES).join("\n");
  }

  async close(): Promise<void> {
    this.streams.stdout.end();
    this.streams.stderr.end();
    await new Promise<void>((resolve) => this.file.end(resolve));
  }

  private remember(text: string): void {
    const pieces = (this.partial + text).split("\n");
    this.partial = pieces.pop() ?? "";
    this.lines = [...this.lines, ...pieces].slice(-TAIL_LINES);
  }
}
