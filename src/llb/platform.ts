import type { Platform } from "./types.ts";

/**
 * Docker's canonical form of a platform, so that "linux/aarch64", "linux/arm64/v8" and
 * "linux/arm64" name the same image: x86_64 → amd64, aarch64 → arm64 (variant v8 dropped),
 * armhf → arm/v7, armel → arm/v6, arm without a variant → arm/v7, i386 → 386.
 */
export function normalizePlatform(platform: Platform): Platform {
  // Tolerates a config without os or architecture: the caller reports that, not a TypeError here.
  let architecture = String(platform.architecture ?? "").toLowerCase();
  let variant = platform.variant?.toLowerCase();
  if (architecture === "x86_64" || architecture === "x86-64") architecture = "amd64";
  if (architecture === "aarch64") architecture = "arm64";
  if (architecture === "armhf") [architecture, variant] = ["arm", "v7"];
  if (architecture === "armel") [architecture, variant] = ["arm", "v6"];
  if (architecture === "i386") architecture = "386";
  if (architecture === "arm64" && (variant === "v8" || variant === "8" || variant === "v8.0")) variant = undefined;
  if (architecture === "amd64" && variant === "v1") variant = undefined;
  if (architecture === "arm" && /^[5678]$/.test(variant ?? "")) variant = `v${variant}`;
  if (architecture === "arm" && !variant) variant = "v7";
  const os = String(platform.os ?? "").toLowerCase();
  const normal: Platform = { os: os === "macos" ? "darwin" : os, architecture };
  if (variant) normal.variant = variant;
  if (platform["os.version"]) normal["os.version"] = platform["os.version"];
  if (platform["os.features"]) normal["os.features"] = [...platform["os.features"]];
  return normal;
}

/** Parses "os/arch[/variant]" or a bare "arch" (linux), normalized; undefined if it is neither. */
export function parsePlatform(text: string): Platform | undefined {
  const parts = text.trim().split("/");
  if (parts.length > 3 || parts.some((part) => !/^[A-Za-z0-9._-]+$/.test(part))) return undefined;
  const [first = "", second, third] = parts;
  if (second === undefined) return normalizePlatform({ os: "linux", architecture: first });
  return normalizePlatform({ os: first, architecture: second, ...(third ? { variant: third } : {}) });
}

/** "os/arch[/variant]" as given. */
export function formatPlatform(platform: Platform): string {
  return [platform.os, platform.architecture, platform.variant].filter(Boolean).join("/");
}

/** "os/arch[/variant]", normalized: a key two spellings of one platform share. */
export function platformKey(platform: Platform): string {
  return formatPlatform(normalizePlatform(platform));
}

/** Whether an image made for `offered` serves `wanted` (both normalized first). */
export function platformMatches(offered: Platform, wanted: Platform): boolean {
  return platformKey(offered) === platformKey(wanted);
}

/** The platform an image config declares. */
export function configPlatform(config: { architecture: string; os: string; variant?: string; "os.version"?: string }): Platform {
  const platform: Platform = { architecture: config.architecture, os: config.os };
  if (config.variant) platform.variant = config.variant;
  if (config["os.version"]) platform["os.version"] = config["os.version"];
  return platform;
}
