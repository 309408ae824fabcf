/** What every side-by-side bench needs around its measurements. */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Builder } from "./builders.ts";

export interface BenchSession {
  /** A fresh directory under the system temp dir: short, as dockerd's sockets live below it. */
  workDir: string;
  /** Builders to close at the end (a daemon the bench started is stopped). */
  track(...builders: Builder[]): void;
}

/**
 * Runs a bench's main: closes its builders and removes its work directory at the end and on
 * Ctrl-C (exit 130). A failure after Ctrl-C (files removed under a build) is not reported;
 * another failure is printed as "NAME: message" with exit code 1.
 */
export function runBench(name: string, log: (line: string) => void, main: (session: BenchSession) => Promise<void>): void {
  let interrupted = false;
  const builders: Builder[] = [];
  let workDir: string | undefined;
  const cleanUp = async () => {
    for (const builder of builders.splice(0)) await builder.close().catch((error: Error) => log(`cleanup of ${builder.id}: ${error.message}`));
    if (workDir !== undefined) await rm(workDir, { recursive: true, force: true });
  };
  process.once("SIGINT", () => {
    interrupted = true;
    log(`${name}: interrupted: stopping what the bench started`);
    void cleanUp().finally(() => process.exit(130));
  });
  const session = async () => {
    workDir = await mkdtemp(join(tmpdir(), "tsbuild-bench-"));
    try {
      await main({ workDir, track: (...more) => builders.push(...more) });
    } finally {
      await cleanUp();
    }
  };
  session().catch((error: Error) => {
    if (interrupted) return;
    console.error(`${name}: ${error.message}`);
    process.exitCode = 1;
  });
}
