import { arch } from "node:os";
import type { Platform } from "../llb/index.ts";

/** Parses `os/arch[/variant]` (e.g. linux/arm64, linux/arm/v7); also accepts a bare arch. */
export function parsePlatform(text: string): Platform | undefined {
  const parts = text.trim().toLowerCase().split("/");
  if (parts.length > 3 || parts.some((part) => part === "" || !/^[a-z0-9._-]+$/.test(part))) return undefined;
  if (parts.length === 1) return normalizePlatform({ os: "linux", architecture: parts[0] as string });
  const [os = "", architecture = "", variant] = parts;
  return normalizePlatform({ os, architecture, ...(variant ? { variant } : {}) });
}

/** Docker's canonical names: x86_64 → amd64, aarch64 → arm64 (variant v8 dropped), armhf → arm/v7. */
export function normalizePlatform(platform: Platform): Platform {
  let { architecture, variant } = platform;
  if (architecture === "x86_64" || architecture === "x86-64") architecture = "amd64";
  if (architecture === "aarch64") architecture = "arm64";
  if (architecture === "armhf") [architecture, variant] = ["arm", "v7"];
  if (architecture === "armel") [architecture, variant] = ["arm", "v6"];
  if (architecture === "arm64" && variant === "v8") variant = undefined;
  if (architecture === "arm" && !variant) variant = "v7";
  return { os: platform.os, architecture, ...(variant ? { variant } : {}) };
}

export function formatPlatform(platform: Platform): string {
  return [platform.os, platform.architecture, platform.variant].filter(Boolean).join("/");
}

/** The machine tsbuild runs on. */
export function hostPlatform(): Platform {
  const architectures: Record<string, string> = { x64: "amd64", arm64: "arm64", arm: "arm", ia32: "386", ppc64: "ppc64le", s390x: "s390x", riscv64: "riscv64" };
  return normalizePlatform({ os: "linux", architecture: architectures[arch()] ?? arch() });
}

/** BUILDPLATFORM, BUILDOS, … and TARGETPLATFORM, TARGETOS, … as Docker defines them. */
export function platformArgs(build: Platform, target: Platform): Map<string, string> {
  return new Map([
    ["BUILDPLATFORM", formatPlatform(build)],
    ["BUILDOS", build.os],
    ["BUILDARCH", build.architecture],
    ["BUILDVARIANT", build.variant ?? ""],
    ["TARGETPLATFORM", formatPlatform(target)],
    ["TARGETOS", target.os],
    ["TARGETARCH", target.architecture],
    ["TARGETVARIANT", target.variant ?? ""],
  ]);
}

/** Whether an image of platform `candidate` serves `wanted` (names normalized first; a missing arm64 variant is v8). */
export function platformMatches(candidate: Platform, wanted: Platform): boolean {
  const a = normalizePlatform(candidate);
  const b = normalizePlatform(wanted);
  return a.os === b.os && a.architecture === b.architecture && (a.variant ?? "") === (b.variant ?? "");
}
