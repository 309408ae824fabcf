import { createHash } from "node:crypto";
import { readFileSync, readdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { StateRoot } from "../../../src/solver/store/index.ts";
import { churnFileContent, freshDir, killHard, startWorker } from "./helpers.ts";

describe("two processes sharing a root", () => {
  it("both create the same layer and the same record; one result wins whole", async () => {
    const base = freshDir("race");
    const rootDir = join(base, "root");
    await StateRoot.open(rootDir);
    const barrier = join(base, "go");
    const key = `sha256:${"ab".repeat(32)}`;
    const workers = [0, 1].map(() => startWorker(["race", rootDir, "shared-layer", key, barrier]));
    // Both are inside fill (each staging its own copy) before either may finish.
    await Promise.all(workers.map((worker) => worker.next("filling")));
    writeFileSync(barrier, "");
    const results = await Promise.all(workers.map((worker) => worker.next("done")));
    expect(await Promise.all(workers.map((worker) => worker.exited))).toEqual([0, 0]);

    expect(results.map((result) => result.filled)).toEqual([true, true]);
    expect(results[0]!.layer).toEqual(results[1]!.layer);
    const root = await StateRoot.open(rootDir);
    const layer = await root.layerInfo("shared-layer");
    const owner = readFileSync(join(layer.dir, "owner"), "utf8");
    expect(workers.map((worker) => String(worker.child.pid))).toContain(owner);
    // The winner's layer is whole: every file written by the same process.
    for (let i = 0; i < 50; i++) expect(readFileSync(join(layer.dir, `file-${i}`), "utf8")).toBe(`${owner}:${i}`);
    expect(readdirSync(join(rootDir, "snapshots"))).toEqual(["shared-layer"]);

    const record = await root.getCacheRecord(key);
    expect(record?.layers).toEqual(["shared-layer"]);
    expect(workers.map((worker) => `written by ${String(worker.child.pid)}`)).toContain(record?.description);
    expect(readdirSync(join(rootDir, "tmp"))).toEqual([]);
  });
});

describe("kill -9 at any moment", () => {
  it("never leaves a partial blob, record or layer visible, and the root reopens cleanly", async () => {
    const rootDir = join(freshDir("crash"), "root");
    await StateRoot.open(rootDir);
    const victims: number[] = [];
    for (let round = 0; round < 6; round++) {
      const workers = [startWorker(["churn", rootDir]), startWorker(["churn", rootDir])];
      await Promise.all(workers.map((worker) => worker.next("started")));
      await new Promise((resolve) => setTimeout(resolve, 20 + Math.random() * 150));
      for (const worker of workers) {
        await killHard(worker);
        victims.push(worker.child.pid!);
      }
    }
    // Killed mid-write, the writers left staging entries in tmp/: they must stay invisible, and go at the next open.
    const leftovers = (): string[] => readdirSync(join(rootDir, "tmp")).filter((name) => victims.some((pid) => name.startsWith(`${pid}-`)));
    expect(leftovers().length).toBeGreaterThan(0);
    await StateRoot.open(rootDir);
    expect(leftovers()).toEqual([]);
    await checkConsistent(rootDir);
  }, 60_000);
});

/** Every visible blob matches its digest, every layer is complete, every record parses and lists existing layers. */
async function checkConsistent(rootDir: string): Promise<void> {
  const blobsDir = join(rootDir, "content", "blobs", "sha256");
  for (const hex of readdirSync(blobsDir)) {
    expect(createHash("sha256").update(readFileSync(join(blobsDir, hex))).digest("hex")).toBe(hex);
  }
  const layerIds = readdirSync(join(rootDir, "snapshots"));
  expect(layerIds.length).toBeGreaterThan(0);
  for (const id of layerIds) {
    const meta = JSON.parse(readFileSync(join(rootDir, "snapshots", id, "meta.json"), "utf8")) as { id: string };
    expect(meta.id).toBe(id);
    const match = /^churn-(\d+-\d+)-(\d+)$/.exec(id);
    expect(match).not.toBeNull();
    const [seed, count] = [match![1]!, Number(match![2])];
    const dataDir = join(rootDir, "snapshots", id, "fs", "data");
    expect(readdirSync(dataDir).length).toBe(count);
    for (let i = 0; i < count; i++) expect(readFileSync(join(dataDir, `f${i}`), "utf8")).toBe(churnFileContent(seed, i));
  }
  const root = await StateRoot.open(rootDir);
  let records = 0;
  for (const shard of readdirSync(join(rootDir, "cache"))) {
    for (const name of readdirSync(join(rootDir, "cache", shard))) {
      const key = name.slice(0, -".json".length);
      const record = await root.getCacheRecord(key);
      expect(record, name).toBeDefined();
      records++;
    }
  }
  expect(records).toBeGreaterThan(0);
}
