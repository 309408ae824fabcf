/**
 * Runs CNI plugins as the CNI specification says: the plugin is the executable
 * named after the configuration's `type`, found in the CNI path; parameters
 * travel in CNI_* environment variables, the network configuration as JSON on
 * stdin; the result (or an error object) comes back as JSON on stdout.
 */
import { accessSync, constants, statSync } from "node:fs";
import { join } from "node:path";
import { NetworkError } from "./errors.ts";
import { programPath, runProgram, type ProgramOutput } from "./programs.ts";

/** The spec version we speak; Debian 12's plugins (1.1.x) support it. */
export const CNI_VERSION = "1.0.0";

/** Debian's containernetworking-plugins, then the upstream default location. */
export const DEFAULT_CNI_PATH: readonly string[] = ["/usr/lib/cni", "/opt/cni/bin"];

export const INSTALL_HINT = "install Debian's containernetworking-plugins (apt-get install containernetworking-plugins), or pass the directory holding the plugins as cniPath";

export type CniCommand = "ADD" | "DEL" | "CHECK";

/** One plugin's configuration: `type` names the plugin; the rest is the plugin's own. */
export interface PluginConfig {
  type: string;
  [key: string]: unknown;
}

/** A network configuration list (spec section 1): plugins run in order on ADD, in reverse on DEL. */
export interface NetworkConfigList {
  cniVersion: string;
  name: string;
  plugins: PluginConfig[];
}

export interface CniInterface {
  name: string;
  mac?: string;
  sandbox?: string;
}

export interface CniIpConfig {
  address: string;
  gateway?: string;
  interface?: number;
}

/** The success result of ADD (spec section 5). */
export interface CniResult {
  cniVersion: string;
  interfaces?: CniInterface[];
  ips?: CniIpConfig[];
  routes?: Array<{ dst: string; gw?: string }>;
  dns?: Record<string, unknown>;
}

/** Where and as what one plugin runs. */
export interface PluginInvocation {
  command: CniCommand;
  containerId: string;
  netns: string;
  ifname: string;
  cniPath: readonly string[];
  /** CNI_ARGS, e.g. "IgnoreUnknown=1". */
  args?: string;
  timeoutMs?: number;
}

/** Plugins found (name and CNI path → file): looked for at every attachment and every call. */
const foundPlugins = new Map<string, string>();

/** The first directory of `cniPath` that holds an executable `name`. */
export function findPlugin(name: string, cniPath: readonly string[]): string | undefined {
  if (!/^[A-Za-z0-9][A-Za-z0-9._-]*$/.test(name)) return undefined;
  const key = `${name}\0${cniPath.join("\0")}`;
  const known = foundPlugins.get(key);
  if (known !== undefined) return known;
  const found = searchPlugin(name, cniPath);
  if (found !== undefined) foundPlugins.set(key, found);
  return found;
}

function searchPlugin(name: string, cniPath: readonly string[]): string | undefined {
  for (const dir of cniPath) {
    const candidate = join(dir, name);
    try {
      if (!statSync(candidate).isFile()) continue;
      accessSync(candidate, constants.X_OK);
      return candidate;
    } catch {
      // not here
    }
  }
  return undefined;
}

/** Throws PLUGIN_NOT_FOUND naming every missing plugin at once. */
export function requirePlugins(names: readonly string[], cniPath: readonly string[]): void {
  const missing = names.filter((name) => findPlugin(name, cniPath) === undefined);
  if (missing.length === 0) return;
  throw new NetworkError(
    "PLUGIN_NOT_FOUND",
    `the CNI plugin${missing.length > 1 ? "s" : ""} ${missing.map((m) => JSON.stringify(m)).join(", ")} ` +
      `${missing.length > 1 ? "are" : "is"} not installed (looked in ${cniPath.join(", ") || "an empty CNI path"})`,
    { hint: INSTALL_HINT },
  );
}

/** What a failing plugin said, and what the user can do about it. */
export function pluginHint(plugin: string, message: string): string {
  const m = message.toLowerCase();
  if (/failed to find plugin|exec format error|no such file or directory.*\/(cni|bin)\//.test(m)) return INSTALL_HINT;
  if (/iptables.*(executable file not found|not found in \$path)|exec: "iptables"/.test(m)) {
    return "install iptables (apt-get install iptables)";
  }
  if (/can't initialize iptables|table does not exist|no chain\/target\/match|could not fetch rule set|extension .* not supported|protocol not supported|address family not supported/.test(m)) {
    return (
      "the kernel lacks the netfilter features the plugins use: load the modules " +
      "(modprobe br_netfilter iptable_nat iptable_filter xt_MASQUERADE xt_conntrack nf_nat), " +
      "or switch the iptables backend (update-alternatives --set iptables /usr/sbin/iptables-legacy)"
    );
  }
  if (/operation not supported|not supported/.test(m) && plugin === "bridge") {
    return "the kernel cannot create bridges or veth pairs: load the modules (modprobe bridge veth)";
  }
  if (/operation not permitted|permission denied/.test(m)) {
    return "networks need root (CAP_NET_ADMIN and CAP_SYS_ADMIN): run tsbuild as root, or use --network=none or --network=host";
  }
  if (/no ip addresses available|range is full/.test(m)) {
    return "every address of the subnet is in use: finish some builds, or give the network a bigger subnet";
  }
  if (/already has an ip address different from/.test(m)) {
    return "the bridge has an address outside the subnet: delete it (ip link delete <bridge>) or use another bridge or subnet";
  }
  return "the plugin's message above says what failed; the default network needs the bridge, veth and netfilter (iptables) support of the kernel";
}

function runBinary(path: string, env: NodeJS.ProcessEnv, input: string, timeoutMs: number): Promise<ProgramOutput> {
  return runProgram(path, [], { env, input, timeoutMs });
}

function pluginEnv(invocation: PluginInvocation): NodeJS.ProcessEnv {
  return {
    // the plugins run iptables, ip6tables...: PATH must reach them
    PATH: programPath(),
    CNI_COMMAND: invocation.command,
    CNI_CONTAINERID: invocation.containerId,
    CNI_NETNS: invocation.netns,
    CNI_IFNAME: invocation.ifname,
    CNI_PATH: invocation.cniPath.join(":"),
    ...(invocation.args ? { CNI_ARGS: invocation.args } : {}),
  };
}

/** The spec's error object: `{ cniVersion, code, msg, details }`. */
function describeFailure(output: ProgramOutput): { code?: number; text: string } {
  const stdout = output.stdout.trim();
  if (stdout) {
    try {
      const parsed = JSON.parse(stdout) as { code?: unknown; msg?: unknown; details?: unknown };
      if (typeof parsed.msg === "string") {
        const details = typeof parsed.details === "string" && parsed.details && parsed.details !== parsed.msg ? `: ${parsed.details}` : "";
        return { ...(typeof parsed.code === "number" ? { code: parsed.code } : {}), text: `${parsed.msg}${details}` };
      }
    } catch {
      // not JSON: show it as it is
    }
  }
  const stderr = output.stderr.trim();
  const how = output.error ? output.error.message : output.signal ? `killed by ${output.signal}` : `exit status ${output.code}`;
  return { text: [stdout, stderr].filter(Boolean).join("\n") || how };
}

/** Thrown for a plugin that reported an error; `cniCode` is the spec's error code when it gave one. */
export class PluginError extends NetworkError {
  readonly plugin: string;
  readonly cniCode: number | undefined;
  readonly pluginMessage: string;

  constructor(plugin: string, command: CniCommand, pluginMessage: string, cniCode: number | undefined, context: string) {
    super("PLUGIN_FAILED", `the CNI plugin "${plugin}" failed to ${command} ${context}: ${pluginMessage}`, { hint: pluginHint(plugin, pluginMessage) });
    this.plugin = plugin;
    this.cniCode = cniCode;
    this.pluginMessage = pluginMessage;
  }
}

/**
 * Runs one plugin. ADD resolves to its result; DEL and CHECK to undefined.
 * `context` completes the error message ("the network tsbuild0 of attachment x").
 */
export async function execPlugin(config: Record<string, unknown> & { type: string }, invocation: PluginInvocation, context: string): Promise<CniResult | undefined> {
  const path = findPlugin(config.type, invocation.cniPath);
  if (!path) {
    throw new NetworkError("PLUGIN_NOT_FOUND", `the CNI plugin "${config.type}" is not installed (looked in ${invocation.cniPath.join(", ")})`, {
      hint: INSTALL_HINT,
    });
  }
  const output = await runBinary(path, pluginEnv(invocation), JSON.stringify(config), invocation.timeoutMs ?? 60_000);
  if (output.code !== 0 || output.error) {
    const failure = describeFailure(output);
    throw new PluginError(config.type, invocation.command, failure.text, failure.code, context);
  }
  if (invocation.command !== "ADD") return undefined;
  try {
    const result = JSON.parse(output.stdout) as CniResult;
    if (typeof result !== "object" || result === null) throw new Error("not an object");
    return result;
  } catch {
    throw new PluginError(config.type, "ADD", `it printed something that is not a CNI result: ${JSON.stringify(output.stdout.slice(0, 200))}`, undefined, context);
  }
}

/** The configuration one plugin of a list gets: the list's name and version, and the previous result. */
export function pluginConfig(list: NetworkConfigList, plugin: PluginConfig, prevResult: CniResult | undefined): Record<string, unknown> & { type: string } {
  return { ...plugin, cniVersion: list.cniVersion, name: list.name, ...(prevResult ? { prevResult } : {}) };
}

/**
 * ADD of a configuration list: each plugin in order, each after the first
 * getting the previous one's result. `onResult` sees every intermediate result
 * (so that a crash leaves what DEL needs on disk).
 */
export async function addList(
  list: NetworkConfigList,
  invocation: Omit<PluginInvocation, "command">,
  context: string,
  onResult: (result: CniResult) => Promise<void>,
): Promise<CniResult> {
  let result: CniResult | undefined;
  for (const plugin of list.plugins) {
    const next = await execPlugin(pluginConfig(list, plugin, result), { ...invocation, command: "ADD" }, context);
    if (!next) throw new PluginError(plugin.type, "ADD", "it printed no result", undefined, context);
    result = next;
    await onResult(result);
  }
  if (!result) throw new NetworkError("INVALID_OPTIONS", `the network ${list.name} has no plugins`);
  return result;
}

/**
 * DEL of a configuration list: every plugin in reverse order with the list's
 * last ADD result as `prevResult` (when known), all of them even when one
 * fails; the errors are returned.
 */
export async function delList(
  list: NetworkConfigList,
  invocation: Omit<PluginInvocation, "command">,
  prevResult: CniResult | undefined,
  context: string,
): Promise<Error[]> {
  const errors: Error[] = [];
  for (const plugin of [...list.plugins].reverse()) {
    try {
      await execPlugin(pluginConfig(list, plugin, prevResult), { ...invocation, command: "DEL" }, context);
    } catch (error) {
      errors.push(error as Error);
    }
  }
  return errors;
}
