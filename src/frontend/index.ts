export { convertDockerfile, TargetNotFoundError, type BuildDefinition, type ConvertOptions, type ResolvedImage } from "./convert.ts";
export { CONTEXT_SOURCE, cleanPath, expandPorts, type LayerStep } from "./stage-builder.ts";
export * from "./image-config.ts";
export { formatPlatform, hostPlatform, normalizePlatform, parsePlatform, platformArgs, platformMatches } from "./platform.ts";
