import { spawn } from "node:child_process";
import { existsSync, mkdirSync, readdirSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { StateRoot } from "../../../src/solver/store/index.ts";
import { backdate, freshDir, killHard, startWorker } from "./helpers.ts";

const HOUR = 3_600_000;

function keyOf(name: string): string {
  return `sha256:${Buffer.from(name).toString("hex").padEnd(64, "0").slice(0, 64)}`;
}

/** A layer of `bytes` bytes and a record listing `base` layers plus it; both last used `ageMs` ago. */
async function step(root: StateRoot, name: string, bytes: number, ageMs: number, base: string[] = []): Promise<string> {
  await root.createLayer(name, async (fsDir) => writeFile(join(fsDir, "data"), Buffer.alloc(bytes)));
  await root.putCacheRecord({ key: keyOf(name), layers: [...base, name], description: name });
  await age(root, name, ageMs);
  return keyOf(name);
}

async function age(root: StateRoot, name: string, ageMs: number): Promise<void> {
  const key = keyOf(name);
  const recordPath = join(root.dir, "cache", key.slice(7, 9), `${key}.json`);
  if (existsSync(recordPath)) await backdate(recordPath, ageMs);
  await backdate(join(root.dir, "snapshots", name, "meta.json"), ageMs);
}

function layersOf(root: StateRoot): string[] {
  return readdirSync(join(root.dir, "snapshots")).sort();
}

describe("du", () => {
  it("counts layers, blobs, records and what prune --all would free", async () => {
    const root = await StateRoot.open(freshDir("du"));
    await step(root, "a", 1000, HOUR);
    await step(root, "b", 500, HOUR, ["a"]);
    await root.writeBlob(Buffer.alloc(300));
    await backdate(root.blobPath(await root.writeBlob(Buffer.alloc(300))), HOUR);
    const lease = await root.acquireLease();
    await step(root, "fresh", 200, 0); // used under a live lease: not reclaimable
    expect(await root.du()).toEqual({
      layers: { count: 3, bytes: 1700 },
      blobs: { count: 1, bytes: 300 },
      cacheRecords: 3,
      reclaimable: 1800,
    });
    await lease.release();
  });
});

describe("prune", () => {
  it("without options removes only dangling layers and debris", async () => {
    const root = await StateRoot.open(freshDir("prune-dangling"));
    await step(root, "kept", 100, HOUR);
    await root.createLayer("dangling", async (fsDir) => writeFile(join(fsDir, "x"), "12345"));
    await age(root, "dangling", HOUR);
    await root.writeBlob("blob");
    mkdirSync(join(root.dir, "cache", "zz"));
    writeFileSync(join(root.dir, "cache", "zz", "junk.json"), "{"); // hand-made garbage
    expect(await root.prune({})).toEqual({ removedRecords: 1, removedLayers: 1, removedBlobs: 0, reclaimedBytes: 5 });
    expect(layersOf(root)).toEqual(["kept"]);
    expect(await root.getCacheRecord(keyOf("kept"))).toBeDefined();
  });

  it("--all removes everything not protected, records before their layers", async () => {
    const root = await StateRoot.open(freshDir("prune-all"));
    await step(root, "base", 1000, HOUR);
    await step(root, "top", 10, HOUR, ["base"]);
    const blob = await root.writeBlob("old blob");
    await backdate(root.blobPath(blob), HOUR);
    await new Promise((resolve) => setTimeout(resolve, 5));
    expect(await root.prune({ all: true })).toEqual({ removedRecords: 2, removedLayers: 2, removedBlobs: 1, reclaimedBytes: 1018 });
    expect(layersOf(root)).toEqual([]);
    expect(await root.getCacheRecord(keyOf("top"))).toBeUndefined();
    expect(await root.hasBlob(blob)).toBe(false);
    expect(readdirSync(join(root.dir, "tmp"))).toEqual([]);
    expect(await root.du()).toMatchObject({ layers: { count: 0, bytes: 0 }, blobs: { count: 0, bytes: 0 }, cacheRecords: 0 });
  });

  it("olderThanMs keeps recent records and the layers they share", async () => {
    const root = await StateRoot.open(freshDir("prune-older"));
    await step(root, "base", 1000, 3 * HOUR);
    await step(root, "old", 100, 3 * HOUR, ["base"]);
    await step(root, "recent", 10, HOUR / 4, ["base"]);
    const result = await root.prune({ olderThanMs: HOUR });
    // The records of "base" and "old" go; the layer "base" stays, "recent" lists it.
    expect(result).toEqual({ removedRecords: 2, removedLayers: 1, removedBlobs: 0, reclaimedBytes: 100 });
    expect(await root.getCacheRecord(keyOf("base"))).toBeUndefined();
    expect(layersOf(root)).toEqual(["base", "recent"]);
    expect(await root.getCacheRecord(keyOf("recent"))).toMatchObject({ layers: ["base", "recent"] });
  });

  it("keepBytes removes least recently used first until under budget", async () => {
    const root = await StateRoot.open(freshDir("prune-keep"));
    await step(root, "oldest", 1000, 3 * HOUR);
    await step(root, "middle", 1000, 2 * HOUR);
    await step(root, "newest", 1000, HOUR);
    const result = await root.prune({ keepBytes: 1500 });
    expect(result).toEqual({ removedRecords: 2, removedLayers: 2, removedBlobs: 0, reclaimedBytes: 2000 });
    expect(layersOf(root)).toEqual(["newest"]);
    expect(await root.prune({ keepBytes: 1000 })).toMatchObject({ removedLayers: 0 });
  });

  it("counts a use as recent: a looked-up record survives olderThanMs", async () => {
    const root = await StateRoot.open(freshDir("prune-use"));
    await step(root, "used", 100, 3 * HOUR);
    await step(root, "unused", 100, 3 * HOUR);
    expect(await root.getCacheRecord(keyOf("used"))).toBeDefined();
    await root.prune({ olderThanMs: HOUR });
    expect(layersOf(root)).toEqual(["used"]);
  });

  it("rejects nonsense options", async () => {
    const root = await StateRoot.open(freshDir("prune-options"));
    await expect(root.prune({ keepBytes: -1 })).rejects.toThrow(/keepBytes must be a number >= 0/);
    await expect(root.prune({ olderThanMs: Number.NaN })).rejects.toThrow(/olderThanMs/);
  });
});

describe("leases", () => {
  it("protect what another live process created or used since its lease started, until it dies", async () => {
    const rootDir = join(freshDir("lease"), "root");
    const root = await StateRoot.open(rootDir);
    await step(root, "reused", 100, 3 * HOUR);
    await step(root, "stale", 100, 3 * HOUR);
    const holder = startWorker(["hold-lease", rootDir, "held", keyOf("held"), keyOf("reused")]);
    try {
      expect((await holder.next("used")).record).toMatchObject({ layers: ["reused"] });
      await holder.next("ready");
      await root.prune({ all: true });
      expect(layersOf(root)).toEqual(["held", "reused"]);
      expect(await root.getCacheRecord(keyOf("held"))).toBeDefined();
      expect(await root.du()).toMatchObject({ reclaimable: 0 });
    } finally {
      await killHard(holder);
    }
    // The holder was killed without releasing: its lease is stale now.
    await new Promise((resolve) => setTimeout(resolve, 5));
    expect(await root.prune({ all: true })).toMatchObject({ removedRecords: 2, removedLayers: 2 });
    expect(layersOf(root)).toEqual([]);
    expect(readdirSync(join(rootDir, "locks", "leases"))).toEqual([]);
  });

  it("are released explicitly and on exit", async () => {
    const root = await StateRoot.open(freshDir("lease-release"));
    const lease = await root.acquireLease();
    expect(readdirSync(join(root.dir, "locks", "leases"))).toEqual([`${lease.id}.json`]);
    await step(root, "x", 10, 0);
    await root.prune({ all: true });
    expect(layersOf(root)).toEqual(["x"]);
    await lease.release();
    await lease.release();
    expect(readdirSync(join(root.dir, "locks", "leases"))).toEqual([]);
    await new Promise((resolve) => setTimeout(resolve, 5));
    await root.prune({ all: true });
    expect(layersOf(root)).toEqual([]);
  });
});

describe("removeUnreachableBlobs (rmi)", () => {
  it("removes what no name reaches, unless used since a live lease started", async () => {
    const root = await StateRoot.open(freshDir("rmi"));
    const named = await root.writeBlob('{"schemaVersion":2}');
    await root.putImageRef({ name: "docker.io/library/kept:latest", target: { mediaType: "application/vnd.oci.image.manifest.v1+json", digest: named, size: 19 }, createdAt: "", origin: "load" });
    const old = await root.writeBlob("old");
    const inUse = await root.writeBlob("in use");
    for (const digest of [named, old, inUse]) await backdate(root.blobPath(digest), HOUR);
    const lease = await root.acquireLease();
    try {
      expect(await root.hasBlob(inUse)).toBe(true); // a running build reads it
      const result = await root.removeUnreachableBlobs([named, old, inUse, keyOf("never stored")]);
      expect(result).toEqual({ removed: [old], bytes: 3 });
      expect(existsSync(root.blobPath(old))).toBe(false);
      expect(existsSync(root.blobPath(inUse))).toBe(true);
      expect(existsSync(root.blobPath(named))).toBe(true);
    } finally {
      await lease.release();
    }
  });
});

describe("a use while a prune is deciding", () => {
  it("waits for the prune to finish, then sees whether the item survived", async () => {
    const root = await StateRoot.open(freshDir("gate"));
    await step(root, "kept", 10, HOUR);
    await step(root, "removed", 10, HOUR);
    // A live process (standing in for a prune that is deciding) holds a prune marker.
    const sleeper = spawn("sleep", ["30"]);
    const marker = join(root.dir, "locks", "pruning", `${sleeper.pid}-test.json`);
    writeFileSync(marker, JSON.stringify({ pid: sleeper.pid }));
    try {
      const settled: string[] = [];
      const kept = root.getCacheRecord(keyOf("kept")).finally(() => settled.push("kept"));
      const removed = root.hasLayer("removed").finally(() => settled.push("removed"));
      await new Promise((resolve) => setTimeout(resolve, 150));
      expect(settled).toEqual([]);
      // The "prune" decides to remove one layer, moves it away, and finishes.
      renameSync(join(root.dir, "snapshots", "removed"), join(root.dir, "tmp", `${sleeper.pid}-pruned`));
      rmSync(marker);
      expect(await kept).toMatchObject({ layers: ["kept"] });
      expect(await removed).toBe(false);
    } finally {
      sleeper.kill("SIGKILL");
    }
  });

  it("ignores (and removes) the marker of a prune that was killed", async () => {
    const root = await StateRoot.open(freshDir("gate-dead"));
    await step(root, "item", 10, 0);
    const short = spawn("true");
    await new Promise((resolve) => short.on("close", resolve));
    const marker = join(root.dir, "locks", "pruning", `${short.pid}-test.json`);
    writeFileSync(marker, JSON.stringify({ pid: short.pid }));
    expect(await root.getCacheRecord(keyOf("item"))).toBeDefined();
    expect(existsSync(marker)).toBe(false);
  });
});
