/**
 * A second tsbuild-like process for the store tests: run with
 * `node --import tsx worker.ts <mode> <root> [args]`. It reports on stdout, one JSON per line.
 */
import { createHash } from "node:crypto";
import { existsSync } from "node:fs";
import { mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { StateRoot } from "../../../src/solver/store/index.ts";
import { churnFileContent } from "./churn-content.ts";

const [mode, rootDir, ...args] = process.argv.slice(2);

function report(message: Record<string, unknown>): void {
  process.stdout.write(`${JSON.stringify({ pid: process.pid, ...message })}\n`);
}

async function waitForFile(path: string): Promise<void> {
  while (!existsSync(path)) await sleep(5);
}

async function race(root: StateRoot, layerId: string, key: string, barrier: string): Promise<void> {
  const lease = await root.acquireLease();
  let filled = false;
  const layer = await root.createLayer(layerId, async (fsDir) => {
    filled = true;
    await writeFile(join(fsDir, "owner"), String(process.pid));
    report({ event: "filling" });
    await waitForFile(barrier);
    for (let i = 0; i < 50; i++) await writeFile(join(fsDir, `file-${i}`), `${process.pid}:${i}`);
  });
  await root.putCacheRecord({ key, layers: [layerId], description: `written by ${process.pid}` });
  const record = await root.getCacheRecord(key);
  await lease.release();
  report({ event: "done", filled, layer, record });
}

/** Writes blobs, layers and records forever (until killed). */
async function churn(root: StateRoot): Promise<never> {
  for (let round = 0; ; round++) {
    const seed = `${process.pid}-${round}`;
    const fileCount = 40 + (round % 5) * 40;
    const layerId = `churn-${seed}-${fileCount}`;
    await root.createLayer(layerId, async (fsDir) => {
      await mkdir(join(fsDir, "data"));
      for (let i = 0; i < fileCount; i++) await writeFile(join(fsDir, "data", `f${i}`), churnFileContent(seed, i));
    });
    await root.writeBlob(Buffer.alloc(256 * 1024 + round, round % 251));
    await root.putCacheRecord({ key: `sha256:${createHash("sha256").update(seed).digest("hex")}`, layers: [layerId], description: seed });
    if (round === 0) report({ event: "started" });
  }
}

async function holdLease(root: StateRoot, layerId: string, key: string, useKey: string | undefined): Promise<void> {
  await root.acquireLease();
  if (useKey !== undefined) report({ event: "used", record: await root.getCacheRecord(useKey) });
  await root.createLayer(layerId, async (fsDir) => writeFile(join(fsDir, "held"), "x".repeat(1000)));
  await root.putCacheRecord({ key, layers: [layerId], description: "held" });
  report({ event: "ready" });
  await sleep(10 * 60_000);
}

const root = await StateRoot.open(rootDir ?? "");
switch (mode) {
  case "race":
    await race(root, args[0] ?? "", args[1] ?? "", args[2] ?? "");
    break;
  case "churn":
    await churn(root);
    break;
  case "hold-lease":
    await holdLease(root, args[0] ?? "", args[1] ?? "", args[2]);
    break;
  default:
    throw new Error(`unknown mode ${String(mode)}`);
}
