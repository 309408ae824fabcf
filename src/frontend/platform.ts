import { arch } from "node:os";
import { formatPlatform, normalizePlatform, type Platform } from "../llb/index.ts";

export { formatPlatform, normalizePlatform, parsePlatform, platformMatches } from "../llb/index.ts";

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
