import type { Writable } from "node:stream";

const pendingReleases = new Set<Promise<void>>();

/**
 * Network teardown takes longer than the attach; the step's result does not
 * depend on it, so it finishes while the build goes on. The build waits for
 * all of them before it exits (`networkReleases`).
 */
export function releaseInBackground(attaching: Promise<{ release(): Promise<void> }>, stderr: Writable): void {
  const release = attaching
    .then((network) => network.release())
    .catch((error: unknown) => void stderr.write(`warning: ${(error as Error).message}\n`))
    .finally(() => pendingReleases.delete(release));
  pendingReleases.add(release);
}

/** Resolves once every network of a finished step is released. */
export async function networkReleases(): Promise<void> {
  while (pendingReleases.size > 0) await Promise.all([...pendingReleases]);
}
