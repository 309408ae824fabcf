export type * from "./ast.ts";
export { KEYWORDS } from "./ast.ts";
export { DockerfileSyntaxError } from "./errors.ts";
export { parseDockerfile, type ParseOptions } from "./parse.ts";
export type { Position, Span } from "./span.ts";
export { chompHeredocContent } from "./heredoc.ts";
export { parseMountSpec, MountSpecError, type MountSpec, type MountType } from "./mount.ts";
export { parseGoDuration } from "./validate.ts";
