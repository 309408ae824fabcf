import type { Platform } from "./image.ts";

/**
 * Docker's canonical form of a platform, so that "linux/aarch64" and "linux/arm64/v8" name
 * the same image: x86_64 → amd64, aarch64 → arm64 (variant v8 dropped), armhf → arm/v7.
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
  if (architecture === "arm64" && variant === "v8") variant = undefined;
  if (architecture === "amd64" && variant === "v1") variant = undefined;
  if (architecture === "arm" && !variant) variant = "v7";
  const normal: Platform = { architecture, os: String(platform.os ?? "").toLowerCase() };
  if (variant) normal.variant = variant;
  if (platform["os.version"]) normal["os.version"] = platform["os.version"];
  if (platform["os.features"]) normal["os.features"] = [...platform["os.features"]];
  return normal;
}

/** "os/arch[/variant]", normalized: a key two spellings of one platform share. */
export function platformKey(platform: Platform): string {
  const normal = normalizePlatform(platform);
  return [normal.os, normal.architecture, normal.variant].filter(Boolean).join("/");
}

/** Parses "os/arch[/variant]" or a bare "arch" (linux); undefined if it is neither. */
export function parsePlatform(text: string): Platform | undefined {
  const parts = text.trim().split("/");
  if (parts.length > 3 || parts.some((part) => !/^[A-Za-z0-9._-]+$/.test(part))) return undefined;
  const [first = "", second, third] = parts;
  if (second === undefined) return normalizePlatform({ os: "linux", architecture: first });
  return normalizePlatform({ os: first, architecture: second, ...(third ? { variant: third } : {}) });
}

/** The platform an image config declares. */
export function configPlatform(config: { architecture: string; os: string; variant?: string; "os.version"?: string }): Platform {
  const platform: Platform = { architecture: config.architecture, os: config.os };
  if (config.variant) platform.variant = config.variant;
  if (config["os.version"]) platform["os.version"] = config["os.version"];
  return platform;
}
