import { CacheMounts } from "../../solver/cache-mounts.ts";
import { StateRoot } from "../../solver/store/index.ts";
import { UserError } from "../errors.ts";
import { stateRootDir } from "../state-root.ts";
import type { PruneArgs } from "./prune.ts";

export async function runPrune(args: PruneArgs): Promise<void> {
  if (!args.all && args.olderThan === undefined && args.keepStorage === undefined && !args.cacheMounts) {
    throw new UserError("say what to remove", "use --all, --older-than DURATION, --keep-storage SIZE or --cache-mounts");
  }
  const store = await StateRoot.open(stateRootDir(args.root));
  if (args.cacheMounts) {
    const removed = await new CacheMounts(store.dir, false).prune();
    process.stdout.write(`removed ${removed} cache mounts\n`);
    if (!args.all && args.olderThan === undefined && args.keepStorage === undefined) return;
  }
  const result = await store.prune({
    ...(args.all ? { all: true } : {}),
    ...(args.olderThan !== undefined ? { olderThanMs: parseDuration(args.olderThan) } : {}),
    ...(args.keepStorage !== undefined ? { keepBytes: parseSize(args.keepStorage) } : {}),
  });
  process.stdout.write(`removed ${result.removedRecords} cache records and ${result.removedLayers} layers, ${formatBytes(result.reclaimedBytes)} reclaimed\n`);
}

export async function runDu(args: { root?: string }): Promise<void> {
  const store = await StateRoot.open(stateRootDir(args.root));
  const [usage, images] = await Promise.all([store.du(), store.listImageRefs()]);
  const rows = [
    ["image names", String(images.length), ""],
    ["layers", String(usage.layers.count), formatBytes(usage.layers.bytes)],
    ["blobs", String(usage.blobs.count), formatBytes(usage.blobs.bytes)],
    ["cache records", String(usage.cacheRecords), ""],
    ["reclaimable", "", formatBytes(usage.reclaimable)],
  ];
  for (const [name = "", count, size] of rows) process.stdout.write(`${name.padEnd(15)}${(count ?? "").padStart(8)}  ${size}\n`);
}

/** `30m`, `24h`, `7d`, `90s` → milliseconds. */
export function parseDuration(text: string): number {
  const match = /^(\d+(?:\.\d+)?)(ms|s|m|h|d)$/.exec(text.trim());
  if (!match) throw new UserError(`invalid duration "${text}"`, "e.g. 30m, 24h or 7d");
  const units: Record<string, number> = { ms: 1, s: 1e3, m: 60e3, h: 3600e3, d: 86400e3 };
  return Number(match[1]) * (units[match[2] as string] as number);
}

/** `512MB`, `5GB`, `1.5GiB`, `1000` (bytes) → bytes. */
export function parseSize(text: string): number {
  const match = /^(\d+(?:\.\d+)?)\s*([kmgt]?i?b?)$/i.exec(text.trim());
  if (!match) throw new UserError(`invalid size "${text}"`, "e.g. 512MB or 5GB");
  const unit = (match[2] ?? "").toLowerCase().replace(/b$/, "").replace("i", "");
  const powers: Record<string, number> = { "": 0, k: 1, m: 2, g: 3, t: 4 };
  return Math.round(Number(match[1]) * 1024 ** (powers[unit] ?? 0));
}

function formatBytes(bytes: number): string {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return `${value.toFixed(unit === 0 ? 0 : 1)} ${units[unit]}`;
}
