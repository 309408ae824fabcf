import fc from "fast-check";
import { describe, expect, it } from "vitest";
import type { StoredRecord } from "../../../src/solver/store/cache-index.ts";
import type { StoredLayer } from "../../../src/solver/store/layer-store.ts";
import { planPrune, type Inventory } from "../../../src/solver/store/prune-plan.ts";

const NOW = 1_000_000;

/** Random stores: layers l0..lN with sizes and last uses, records listing random layers, blobs. */
const inventories = fc
  .record({
    layers: fc.array(fc.record({ size: fc.nat(1000), lastUsedAt: fc.nat(NOW) }), { maxLength: 8 }),
    records: fc.array(fc.record({ layers: fc.array(fc.nat(9), { maxLength: 4 }), lastUsedAt: fc.nat(NOW) }), { maxLength: 8 }),
    blobs: fc.array(fc.record({ size: fc.nat(1000), lastUsedAt: fc.nat(NOW) }), { maxLength: 4 }),
  })
  .map(({ layers, records, blobs }): Inventory => ({
    layers: layers.map(
      (layer, index): StoredLayer => ({
        id: `l${index}`,
        path: `/s/l${index}`,
        lastUsedAt: layer.lastUsedAt,
        meta: { id: `l${index}`, size: layer.size, opaqueDirs: [], createdAt: 0 },
        bytes: layer.size,
      }),
    ),
    records: records.map(
      (record, index): StoredRecord => ({
        path: `/c/r${index}`,
        lastUsedAt: record.lastUsedAt,
        record: { key: `r${index}`, layers: record.layers.map((n) => `l${n}`), createdAt: 0, lastUsedAt: record.lastUsedAt, description: "" },
      }),
    ),
    blobs: blobs.map((blob, index) => ({ path: `/b/sha256/${index}`, ...blob })),
    imageBlobs: new Set(["sha256:0"]),
  }));

const options = fc.record(
  { all: fc.boolean(), olderThanMs: fc.nat(NOW), keepBytes: fc.nat(5000) },
  { requiredKeys: [] },
);

describe("planPrune", () => {
  it("never removes what is protected, and never leaves a record without its layers", () => {
    fc.assert(
      fc.property(inventories, options, fc.nat(NOW), (inventory, pruneOptions, protectedSince) => {
        const plan = planPrune(inventory, pruneOptions, NOW, protectedSince);
        const removedRecords = new Set(plan.records.map((record) => record.path));
        const removedLayers = new Set(plan.layers.map((layer) => layer.id));
        const existingLayers = new Set(inventory.layers.map((layer) => layer.id));
        for (const stored of inventory.records) {
          const valid = stored.record!.layers.every((id) => existingLayers.has(id));
          if (!valid) {
            expect(removedRecords.has(stored.path)).toBe(true); // debris always goes
            continue;
          }
          if (stored.lastUsedAt >= protectedSince) expect(removedRecords.has(stored.path)).toBe(false);
          if (!removedRecords.has(stored.path)) for (const id of stored.record!.layers) expect(removedLayers.has(id)).toBe(false);
        }
        for (const layer of plan.layers) expect(layer.lastUsedAt).toBeLessThan(protectedSince);
        for (const blob of plan.blobs) expect(blob.lastUsedAt).toBeLessThan(protectedSince);
        if (pruneOptions.olderThanMs !== undefined) {
          for (const item of [...plan.layers, ...plan.blobs]) expect(item.lastUsedAt).toBeLessThan(NOW - pruneOptions.olderThanMs);
        }
        const bytes = plan.layers.reduce((sum, layer) => sum + (layer.meta?.size ?? 0), 0) + plan.blobs.reduce((sum, blob) => sum + blob.size, 0);
        expect(plan.bytes).toBe(bytes);
      }),
      { numRuns: 500 },
    );
  });

  it("stops at the keepBytes budget, oldest first", () => {
    const layer = (id: string, size: number, lastUsedAt: number): StoredLayer => ({
      id,
      path: `/s/${id}`,
      lastUsedAt,
      meta: { id, size, opaqueDirs: [], createdAt: 0 },
      bytes: size,
    });
    const inventory: Inventory = {
      layers: [layer("a", 100, 10), layer("b", 100, 30), layer("c", 100, 20)],
      records: [],
      blobs: [{ path: "/b/x", size: 100, lastUsedAt: 40 }],
      imageBlobs: new Set(),
    };
    const plan = planPrune(inventory, { keepBytes: 200 }, NOW, NOW);
    expect(plan.layers.map((removed) => removed.id)).toEqual(["a", "c"]);
    expect(plan.bytes).toBe(200);
    expect(planPrune(inventory, { keepBytes: 200 }, NOW, 25).layers.map((removed) => removed.id)).toEqual(["a", "c"]);
    expect(planPrune(inventory, { keepBytes: 200 }, NOW, 15).layers.map((removed) => removed.id)).toEqual(["a"]);
  });

  it("never removes a blob that a stored image name reaches", () => {
    const blob = (hex: string) => ({ path: `/b/sha256/${hex}`, size: 10, lastUsedAt: 1 });
    const inventory: Inventory = { layers: [], records: [], blobs: [blob("aa"), blob("bb")], imageBlobs: new Set(["sha256:aa"]) };
    expect(planPrune(inventory, { all: true }, NOW, NOW).blobs.map((removed) => removed.path)).toEqual(["/b/sha256/bb"]);
  });
});
