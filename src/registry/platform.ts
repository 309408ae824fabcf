/** Choosing an index's manifest for a platform, as containerd's platform matcher does. */
import type { Descriptor, Platform } from "../exporter/index.ts";
import { platformMatches } from "../llb/index.ts";

export { formatPlatform, normalizePlatform, platformMatches } from "../llb/index.ts";

/** The first manifest of an index made for `platform`, or undefined. Entries without a platform never match. */
export function selectManifest(manifests: readonly Descriptor[], platform: Platform): Descriptor | undefined {
  return manifests.find((entry) => entry.platform !== undefined && platformMatches(platform, entry.platform));
}

/** The platforms an index offers (attestations and other entries without a real platform left out). */
export function offeredPlatforms(manifests: readonly Descriptor[]): Platform[] {
  return manifests
    .filter((entry) => entry.platform !== undefined && entry.platform.os !== "unknown" && entry.platform.architecture !== "unknown")
    .map((entry) => entry.platform!);
}
