/** Choosing an index's manifest for a platform, as containerd's platform matcher does. */
import type { Descriptor, Platform } from "../exporter/index.ts";

/**
 * containerd's normalization: x86_64 → amd64 (no variant), aarch64 → arm64 whose
 * default variant is v8, arm's default variant is v7, armhf → arm/v7, armel → arm/v6.
 */
export function normalizePlatform(platform: Platform): Platform {
  const os = platform.os.toLowerCase() === "macos" ? "darwin" : platform.os.toLowerCase();
  let architecture = platform.architecture.toLowerCase();
  let variant = platform.variant?.toLowerCase() ?? "";
  switch (architecture) {
    case "i386":
      architecture = "386";
      variant = "";
      break;
    case "x86_64":
    case "x86-64":
    case "amd64":
      architecture = "amd64";
      if (variant === "v1") variant = "";
      break;
    case "aarch64":
    case "arm64":
      architecture = "arm64";
      if (variant === "" || variant === "8" || variant === "v8.0") variant = "v8";
      else if (variant === "9" || variant === "9.0" || variant === "v9.0") variant = "v9";
      break;
    case "armhf":
      architecture = "arm";
      variant = "v7";
      break;
    case "armel":
      architecture = "arm";
      variant = "v6";
      break;
    case "arm":
      if (variant === "" || variant === "7") variant = "v7";
      else if (/^[568]$/.test(variant)) variant = `v${variant}`;
      break;
  }
  return { os, architecture, ...(variant !== "" ? { variant } : {}) };
}

export function formatPlatform(platform: Platform): string {
  return [platform.os, platform.architecture, platform.variant].filter(Boolean).join("/");
}

export function platformMatches(wanted: Platform, offered: Platform): boolean {
  const a = normalizePlatform(wanted);
  const b = normalizePlatform(offered);
  return a.os === b.os && a.architecture === b.architecture && (a.variant ?? "") === (b.variant ?? "");
}

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
