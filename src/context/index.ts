export { LocalContext } from "./local-context.ts";
export type {
  ChecksumOptions,
  ContextCounters,
  ContextFile,
  ContextFileType,
  LocalContextOptions,
  SelectedEntry,
  Selection,
  SelectOptions,
} from "./local-context.ts";
export { ContextError, type ContextErrorCode } from "./errors.ts";
export { hashFile } from "./hash.ts";
export { safeJoin } from "./paths.ts";
export { DEFAULT_DOCKERFILE_NAME, readDockerfile, resolveDockerfilePath } from "./dockerfile.ts";
