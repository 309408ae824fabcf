/**
 * The default network of RUN steps (and of containers): a network namespace
 * with `lo` and an `eth0` on a bridge with outbound access (NAT), set up by
 * the CNI plugins of Debian's containernetworking-plugins (bridge,
 * host-local, portmap) driven as the CNI specification says; a pool attaches
 * namespaces ahead of the steps that take them.
 */
export {
  DEFAULT_RUN_DIR,
  attachDefaultNetwork,
  cleanupStaleNetworks,
  defaultNetworkResolvConf,
  type AttachOptions,
  type NetworkAttachment,
  type PortMapping,
} from "./attach.ts";
export { DEFAULT_BRIDGE } from "./bridges.ts";
export { CNI_VERSION, DEFAULT_CNI_PATH, PluginError, execPlugin, findPlugin, type CniResult, type NetworkConfigList } from "./cni.ts";
export { NetworkError, type NetworkErrorCode } from "./errors.ts";
export { NetworkPool, type NetworkPoolOptions } from "./pool.ts";
