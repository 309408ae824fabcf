/**
 * The runtime: a sandbox spec → a process in new namespaces (mounts, PID,
 * UTS, IPC, network), with Docker's default capabilities, seccomp profile,
 * masked paths and cgroup limits. The native helper (native/) runs it; the
 * same spec can be written as an OCI bundle for runc or crun.
 */
export {
  DEFAULT_DEVICES,
  DEFAULT_MASKED_PATHS,
  DEFAULT_PATH,
  DEFAULT_READONLY_PATHS,
  defaultHostsFile,
  planSandbox,
  standardMounts,
  type CgroupLimits,
  type EtcFiles,
  type NetworkMode,
  type PlannedMount,
  type Rlimit,
  type SandboxMount,
  type SandboxPlan,
  type SandboxProcessSpec,
  type SandboxSpec,
  type SecurityMode,
} from "./spec.ts";
export {
  runSandbox,
  sandboxHelperPath,
  startSandbox,
  type SandboxHandle,
  type SandboxResult,
  type SandboxRunOptions,
  type StdioTarget,
} from "./sandbox.ts";
export { runWithOciRuntime, toOciConfig, writeOciBundle, type OciConfig, type OciRuntime } from "./oci-bundle.ts";
export { resolveInRoot, resolveUser, type ResolvedUser } from "./users.ts";
export {
  CAPABILITY_NAMES,
  DEFAULT_CAPABILITIES,
  capabilityMask,
  formatCapabilityMask,
  type CapabilityName,
} from "./capabilities.ts";
export { defaultSeccompProfile, type SeccompProfile, type SeccompRule } from "./seccomp.ts";
export { SandboxError, type SandboxErrorCode } from "./errors.ts";
