/**
 * A process with a pool of attached namespaces, for the tests that end it.
 * argv[2]: the pool's options as JSON, plus `mode`:
 * - "hang": takes one, lets the spare attach, prints {"ready": ...} and waits to be killed;
 * - "drain": the same, then releases the one it took and returns without closing the pool
 *   (the pool must release its spare before the process exits);
 * - "sigint": the same as hang, but closes the pool on SIGINT, as a build does.
 */
import { NetworkPool, type NetworkPoolOptions } from "../../../src/runtime/network/index.ts";

const { mode, ...options } = JSON.parse(process.argv[2] ?? "{}") as NetworkPoolOptions & { mode: "hang" | "drain" | "sigint" };
const pool = new NetworkPool({ ...options, onNotice: () => undefined });

async function main(): Promise<void> {
  const taken = await pool.take();
  await pool.warm();
  process.stdout.write(`${JSON.stringify({ ready: { taken: taken.id, netnsPath: taken.netnsPath, spares: pool.spares } })}\n`);
  if (mode === "drain") {
    await taken.release();
    return;
  }
  if (mode === "sigint") {
    process.once("SIGINT", () => {
      void Promise.all([taken.release(), pool.close()]).then(() => process.exit(130));
    });
  }
  setInterval(() => undefined, 60_000);
}

main().catch((error: unknown) => {
  process.stdout.write(`${JSON.stringify({ error: String(error) })}\n`);
  process.exit(1);
});
