import type { Writable } from "node:stream";
// types only: the network code loads with the first RUN step, not with every build
import type { NetworkPool } from "../../runtime/network/index.ts";

/** One pool per state root (leases and records live under it). */
const pools = new Map<string, NetworkPool>();
const pendingReleases = new Set<Promise<void>>();

/**
 * The build's pool of default-network namespaces for a state root, made by
 * `create` on first use; `networkReleases` closes it when the build ends.
 */
export function defaultNetworkPool(stateDir: string, create: () => NetworkPool): NetworkPool {
  let pool = pools.get(stateDir);
  if (!pool) {
    pool = create();
    pools.set(stateDir, pool);
  }
  return pool;
}

/**
 * The step's result does not depend on its network's teardown, so that
 * finishes while the build goes on. The build waits for all of them before
 * it exits (`networkReleases`).
 */
export function releaseInBackground(attaching: Promise<{ release(): Promise<void> }>, stderr: Writable): void {
  const release = attaching
    .then((network) => network.release())
    .catch((error: unknown) => void stderr.write(`warning: ${(error as Error).message}\n`))
    .finally(() => pendingReleases.delete(release));
  pendingReleases.add(release);
}

/**
 * Resolves once every network of a finished step is released and the
 * namespaces attached ahead but never used are too. Called when a build ends,
 * whichever way it ends; a later step starts a new pool.
 */
export async function networkReleases(): Promise<void> {
  while (pools.size > 0 || pendingReleases.size > 0) {
    const closing = [...pools.values()].map((pool) => pool.close());
    pools.clear();
    await Promise.all([...closing, ...pendingReleases]);
  }
}
