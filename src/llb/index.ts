export type * from "./types.ts";
export { canonicalJson, sha256 } from "./digest.ts";
export { GraphBuilder } from "./graph.ts";
export { toDot } from "./dot.ts";
export { configPlatform, formatPlatform, normalizePlatform, parsePlatform, platformKey, platformMatches } from "./platform.ts";
