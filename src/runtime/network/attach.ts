import { mkdir, readFile, readdir, rm, writeFile } from "node:fs/promises";
import { join, resolve } from "node:path";
import { bridgeRulesReady, chooseBridge, ensureBridgeRules } from "./bridges.ts";
import { CNI_VERSION, DEFAULT_CNI_PATH, addList, delList, requirePlugins, type CniResult, type NetworkConfigList, type PluginConfig } from "./cni.ts";
import { NetworkError, errnoCode } from "./errors.ts";
import { formatNetwork, hostAddress, parseNetwork, type Ipv4Network } from "./ipv4.ts";
import { awaitVethsGone, createNetns, holdsNamespace, prepareNetnsDir, removeNetns } from "./netns.ts";
import { currentOwner, isOwnerAlive, withLock } from "./owner.ts";
import { ipamDir, listRecords, readRecord, removeRecord, writeRecord, type AttachedNetwork, type AttachmentRecord } from "./records.ts";

/** Where network namespaces (netns/<id>) and the bridge registry live: tmpfs, gone at reboot like what they describe. */
export const DEFAULT_RUN_DIR = "/run/tsbuild";

/** A port of the host forwarded into the namespace (the portmap plugin). */
export interface PortMapping {
  hostPort: number;
  containerPort: number;
  /** Default "tcp". */
  protocol?: "tcp" | "udp";
  /** Only connections to this host address; default every address. */
  hostIP?: string;
}

export interface AttachOptions {
  /** The state root: attachment records and IPAM leases go under <stateDir>/net/. */
  stateDir: string;
  /** Names the attachment, its network namespace file and its CNI container id: letters, digits, `_ . -`. */
  id: string;
  /** Directories searched for the plugins; default /usr/lib/cni (Debian), /opt/cni/bin. */
  cniPath?: string[];
  /** An IPv4 CIDR for a new bridge, e.g. 10.88.7.0/24; default the first 10.88.N.0/24 no host route overlaps. */
  subnet?: string;
  /** The bridge; default tsbuild0 (tsbuild1... when another state root's running builds use it). */
  bridge?: string;
  /** Host ports forwarded into the namespace. */
  portMappings?: PortMapping[];
  /** Default /run/tsbuild. */
  runDir?: string;
  /** One-line notices (IPv4 forwarding switched on, a clean-up that failed); default: stderr. */
  onNotice?: (message: string) => void;
}

export interface NetworkAttachment {
  /** The network namespace to join (SandboxSpec.netnsPath). */
  netnsPath: string;
  /** The namespace's eth0 address, CIDR (10.88.0.2/24). */
  address: string;
  /** The bridge's address: the default route and the host seen from inside. */
  gateway: string;
  id: string;
  bridge: string;
  /** CIDR of the bridge's network. */
  subnet: string;
  /** DEL of every plugin in reverse order, then the namespace and the record go. Idempotent. */
  release(): Promise<void>;
}

const ID_PATTERN = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$/;
const BRIDGE_PATTERN = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,14}$/;

function defaultNotice(message: string): void {
  process.stderr.write(`${message}\n`);
}

function checkOptions(options: AttachOptions): { subnet?: Ipv4Network } {
  if (typeof options.id !== "string" || !ID_PATTERN.test(options.id)) {
    throw new NetworkError("INVALID_OPTIONS", `the attachment id ${JSON.stringify(options.id)} is not valid`, {
      hint: "use 1 to 128 letters, digits, '_', '.' or '-', starting with a letter or digit",
    });
  }
  if (!options.stateDir) throw new NetworkError("INVALID_OPTIONS", "the state directory is missing");
  if (options.bridge !== undefined && !BRIDGE_PATTERN.test(options.bridge)) {
    throw new NetworkError("INVALID_OPTIONS", `the bridge name ${JSON.stringify(options.bridge)} is not a valid interface name`, {
      hint: "use 1 to 15 letters, digits, '_', '.' or '-'",
    });
  }
  if (options.subnet === undefined) return {};
  const subnet = parseNetwork(options.subnet);
  if (!subnet || !options.subnet.includes("/") || subnet.prefix < 8 || subnet.prefix > 29) {
    throw new NetworkError("INVALID_OPTIONS", `the subnet ${JSON.stringify(options.subnet)} is not an IPv4 network between /8 and /29`, {
      hint: "write it like 10.88.7.0/24",
    });
  }
  for (const mapping of options.portMappings ?? []) {
    const valid = (port: number) => Number.isInteger(port) && port > 0 && port < 65536;
    if (!valid(mapping.hostPort) || !valid(mapping.containerPort)) {
      throw new NetworkError("INVALID_OPTIONS", `the port mapping ${mapping.hostPort}:${mapping.containerPort} is not valid`, { hint: "ports are 1 to 65535" });
    }
  }
  return { subnet };
}

let forwardingChecked = false;

/** The bridge routes between the namespaces and the host's interfaces: IPv4 forwarding must be on. */
async function ensureIpForwarding(notice: (message: string) => void): Promise<void> {
  if (forwardingChecked) return;
  const path = "/proc/sys/net/ipv4/ip_forward";
  const value = await readFile(path, "utf8").catch(() => "");
  if (value.trim() === "0") {
    try {
      await writeFile(path, "1\n");
    } catch (error) {
      throw new NetworkError("NETNS_FAILED", `cannot enable IPv4 forwarding: ${(error as Error).message}`, {
        hint: "run sysctl -w net.ipv4.ip_forward=1 as root, or use --network=none or --network=host",
      });
    }
    notice("tsbuild: enabled IPv4 forwarding (net.ipv4.ip_forward=1) so that the default network reaches beyond this host");
  }
  forwardingChecked = true;
}

function bridgeList(stateDir: string, bridge: string, subnet: Ipv4Network, portMappings: PortMapping[] | undefined): NetworkConfigList {
  const plugins: PluginConfig[] = [
    {
      type: "bridge",
      bridge,
      isGateway: true,
      // NAT and forwarding are the bridge's rules (bridge-rules.ts), installed once: no iptables per attachment
      ipMasq: false,
      hairpinMode: true,
      ipam: {
        type: "host-local",
        ranges: [[{ subnet: formatNetwork(subnet), gateway: hostAddress(subnet, 1) }]],
        routes: [{ dst: "0.0.0.0/0" }],
        dataDir: ipamDir(stateDir),
      },
    },
  ];
  if (portMappings && portMappings.length > 0) {
    plugins.push({
      type: "portmap",
      capabilities: { portMappings: true },
      runtimeConfig: {
        portMappings: portMappings.map((m) => ({ hostPort: m.hostPort, containerPort: m.containerPort, protocol: m.protocol ?? "tcp", ...(m.hostIP ? { hostIP: m.hostIP } : {}) })),
      },
    });
  }
  return { cniVersion: CNI_VERSION, name: bridge, plugins };
}

function describeRecord(record: AttachmentRecord): string {
  return `the network namespace ${record.id} (bridge ${record.bridge}, ${record.subnet})`;
}

/**
 * Whether DEL without the namespace still undoes everything the record's
 * plugins made outside it: bridge without ipMasq frees its lease (the veth
 * goes with the namespace), portmap deletes its rules by container id.
 * Records of earlier versions (firewall, ipMasq chains) are not.
 */
function namespaceFirst(record: AttachmentRecord): boolean {
  return record.networks.every((network) =>
    network.config.plugins.every((plugin) => (plugin.type === "bridge" && plugin.ipMasq !== true && plugin.macspoofchk !== true) || plugin.type === "portmap"),
  );
}

/** The host end of the record's veth pair, from the bridge plugin's result. */
function hostVeths(record: AttachmentRecord): string[] {
  return record.networks.flatMap((network) => (network.result?.interfaces ?? []).filter((i) => !i.sandbox && i.name !== record.bridge && /^veth/.test(i.name)).map((i) => i.name));
}

/**
 * The namespace file and DEL of every network in reverse order (each list's
 * plugins in reverse), then the record. Returns what failed; the record
 * stays when something did, so that a later clean-up retries.
 *
 * The namespace goes first when DEL does not need it (namespaceFirst): the
 * kernel then deletes the veth pair with the namespace, off this process's
 * path, and the bridge plugin only frees the lease, as after a crash (it
 * neither enters the namespace nor waits for the veth's deletion). The
 * release still ends only once the host end of the veth is gone.
 */
async function teardown(record: AttachmentRecord): Promise<Error[]> {
  const errors: Error[] = [];
  const removeNamespace = async (): Promise<boolean> => {
    try {
      await removeNetns(record.netnsPath);
      return true;
    } catch (error) {
      errors.push(error as Error);
      return false;
    }
  };
  const early = namespaceFirst(record);
  const removed = early && (await removeNamespace());
  // CNI_NETNS empty when the namespace is gone (or was never mounted): plugins then free what they can (leases, rules)
  const netns = !removed && holdsNamespace(record.netnsPath) ? record.netnsPath : "";
  const context = `while detaching ${describeRecord(record)}`;
  // the networks were added side by side (different interfaces): remove them side by side
  const results = await Promise.all(
    [...record.networks]
      .reverse()
      .map((network) => delList(network.config, { containerId: record.id, netns, ifname: network.ifname, cniPath: record.cniPath }, network.result, context)),
  );
  for (const failed of results) errors.push(...failed);
  if (!early) await removeNamespace();
  if (early && netns === "") {
    try {
      await awaitVethsGone(hostVeths(record));
    } catch (error) {
      errors.push(error as Error);
    }
  }
  if (errors.length === 0) await removeRecord(record.stateDir, record.id);
  return errors;
}

async function tearDownOrKeep(record: AttachmentRecord): Promise<Error[]> {
  const errors = await teardown(record);
  if (errors.length > 0) {
    // nobody owns it any more: the next clean-up retries
    await writeRecord({ ...record, owner: { pid: 0 } }).catch(() => undefined);
  }
  return errors;
}

function isLease(name: string): boolean {
  return /^\d{1,3}(\.\d{1,3}){3}$/.test(name);
}

/**
 * Releases what processes that died (killed, crashed, or before a reboot)
 * left attached in this state root: DEL through the plugins, the namespace
 * file, the record; then leases that no attachment owns. Failures become
 * notices, not errors: the next start-up retries.
 */
export async function cleanupStaleNetworks(stateDir: string, options: { onNotice?: (message: string) => void } = {}): Promise<void> {
  const notice = options.onNotice ?? defaultNotice;
  const root = resolve(stateDir);
  for (const record of await listRecords(root)) {
    if (isOwnerAlive(record.owner)) continue;
    const errors = await tearDownOrKeep(record);
    if (errors.length > 0) {
      notice(`tsbuild: could not release ${describeRecord(record)} left by process ${record.owner.pid}: ${errors.map((e) => e.message).join("; ")}`);
    }
  }
  // leases whose attachment record is gone (a record is always written before the lease is taken)
  const ipam = ipamDir(root);
  let networks: string[] = [];
  try {
    networks = await readdir(ipam);
  } catch (error) {
    if (errnoCode(error) !== "ENOENT") throw error;
  }
  for (const network of networks) {
    let names: string[];
    try {
      names = await readdir(join(ipam, network));
    } catch {
      continue;
    }
    for (const name of names.filter(isLease)) {
      const path = join(ipam, network, name);
      const owner = (await readFile(path, "utf8").catch(() => "")).split(/\r?\n/)[0]?.trim() ?? "";
      if (!owner || !ID_PATTERN.test(owner)) continue;
      if (await readRecord(root, owner)) continue;
      await rm(path, { force: true });
    }
  }
}

const startupCleanups = new Map<string, Promise<void>>();

function cleanupOnce(stateDir: string, notice: (message: string) => void): Promise<void> {
  let done = startupCleanups.get(stateDir);
  if (!done) {
    done = cleanupStaleNetworks(stateDir, { onNotice: notice }).catch((error: unknown) => {
      startupCleanups.delete(stateDir);
      throw error;
    });
    startupCleanups.set(stateDir, done);
  }
  return done;
}

function addressOf(result: CniResult, subnet: Ipv4Network): { address: string; gateway: string } {
  const index = result.interfaces?.findIndex((i) => i.name === "eth0" && Boolean(i.sandbox)) ?? -1;
  const ipv4 = (result.ips ?? []).filter((ip) => !ip.address.includes(":"));
  const ip = ipv4.find((entry) => entry.interface === index) ?? ipv4[0];
  if (!ip) throw new NetworkError("PLUGIN_FAILED", "the bridge plugin returned no IPv4 address", { hint: "check the plugins' versions (containernetworking-plugins 1.x)" });
  return { address: ip.address, gateway: ip.gateway ?? hostAddress(subnet, 1) };
}

/** Run directories this process made sure of (it is asked at every attachment). */
const madeRunDirs = new Set<string>();

/**
 * Creates the network namespace <runDir>/netns/<id> (with `lo` up) and
 * attaches it: `eth0` on the bridge with an address of its subnet and a
 * default route through the bridge (bridge plugin with host-local IPAM).
 * Masquerading to the outside and forwarding are the bridge's rules,
 * installed when this process first uses the bridge.
 */
export async function attachDefaultNetwork(options: AttachOptions): Promise<NetworkAttachment> {
  const { subnet: requestedSubnet } = checkOptions(options);
  const stateDir = resolve(options.stateDir);
  const id = options.id;
  const cniPath = [...(options.cniPath ?? DEFAULT_CNI_PATH)];
  const runDir = resolve(options.runDir ?? DEFAULT_RUN_DIR);
  const notice = options.onNotice ?? defaultNotice;
  const portMappings = options.portMappings?.length ? options.portMappings : undefined;

  requirePlugins(["bridge", "host-local", ...(portMappings ? ["portmap"] : [])], cniPath);
  await cleanupOnce(stateDir, notice);
  await ensureIpForwarding(notice);

  const netnsDir = join(runDir, "netns");
  const netnsPath = join(netnsDir, id);
  if (!madeRunDirs.has(runDir)) {
    await mkdir(join(runDir, "net"), { recursive: true, mode: 0o755 });
    madeRunDirs.add(runDir);
  }

  const lock = join(runDir, "net", "lock");
  // bridge choice and record under one lock: another state root then sees this attachment as running
  const record = await withLock(lock, async () => {
    await prepareNetnsDir(netnsDir);
    const previous = await readRecord(stateDir, id);
    if (previous) {
      if (isOwnerAlive(previous.owner)) {
        throw new NetworkError("ALREADY_ATTACHED", `the network attachment ${id} exists already (process ${previous.owner.pid})`, {
          hint: "give each attachment its own id",
        });
      }
      const errors = await tearDownOrKeep(previous);
      if (errors.length > 0) throw new NetworkError("RELEASE_FAILED", `cannot release the stale attachment ${id}: ${errors.map((e) => e.message).join("; ")}`);
    }
    const choice = await chooseBridge({
      runDir,
      stateDir,
      ...(options.bridge ? { bridge: options.bridge } : {}),
      ...(requestedSubnet ? { subnet: requestedSubnet } : {}),
      cleanupStateRoot: (other) => cleanupStaleNetworks(other, { onNotice: notice }),
    });
    const networks: AttachedNetwork[] = [{ ifname: "eth0", config: bridgeList(stateDir, choice.bridge, choice.subnet, portMappings) }];
    const made: AttachmentRecord = {
      version: 1,
      id,
      owner: currentOwner(),
      stateDir,
      netnsPath,
      bridge: choice.bridge,
      subnet: formatNetwork(choice.subnet),
      cniPath,
      networks,
      createdAt: new Date().toISOString(),
    };
    await writeRecord(made);
    return made;
  });

  const subnet = parseNetwork(record.subnet) as Ipv4Network;
  // The bridge's rules (checked once per process and bridge: several iptables runs) matter only
  // once the namespace is used: they are checked while it is made and attached.
  const rules = bridgeRulesReady(runDir, record.bridge, subnet) ? undefined : withLock(lock, () => ensureBridgeRules(runDir, record.bridge, subnet));
  rules?.catch(() => undefined);

  // each result is on disk before the next plugin runs (DEL needs it after a crash)
  let saving: Promise<void> = Promise.resolve();
  const save = (): Promise<void> => (saving = saving.then(() => writeRecord(record)));
  const context = `while attaching ${describeRecord(record)}`;
  try {
    await createNetns(netnsPath);
  } catch (error) {
    // nothing was attached; a namespace file of that name is not ours to DEL in
    await removeRecord(stateDir, id);
    throw error;
  }
  let main: CniResult;
  try {
    const results = await Promise.allSettled(
      record.networks.map((network) =>
        addList(network.config, { containerId: id, netns: netnsPath, ifname: network.ifname, cniPath }, context, (result) => {
          network.result = result;
          return save();
        }),
      ),
    );
    for (const result of results) if (result.status === "rejected") throw result.reason;
    const eth0 = record.networks.findIndex((network) => network.ifname === "eth0");
    main = (results[eth0] as PromiseFulfilledResult<CniResult>).value;
  } catch (error) {
    await saving.catch(() => undefined);
    const errors = await tearDownOrKeep(record);
    if (errors.length > 0 && error instanceof NetworkError) {
      notice(`tsbuild: could not undo the failed attachment ${id} (retried at the next start): ${errors.map((e) => e.message).join("; ")}`);
    }
    throw error;
  }
  await saving;
  try {
    await rules;
  } catch (error) {
    const errors = await tearDownOrKeep(record);
    if (errors.length > 0) notice(`tsbuild: could not undo the attachment ${id} (retried at the next start): ${errors.map((e) => e.message).join("; ")}`);
    throw error;
  }
  const { address, gateway } = addressOf(main, subnet);

  let releasing: Promise<void> | undefined;
  const release = (): Promise<void> => {
    releasing ??= (async () => {
      const current = (await readRecord(stateDir, id)) ?? undefined;
      // gone: released already, or cleaned up as stale
      if (!current || current.createdAt !== record.createdAt) return;
      const errors = await tearDownOrKeep(current);
      if (errors.length > 0) {
        const first = errors[0] as Error;
        throw new NetworkError("RELEASE_FAILED", `cannot release ${describeRecord(current)}: ${errors.map((e) => e.message).join("; ")}`, {
          hint: `${first instanceof NetworkError && first.hint ? `${first.hint}; ` : ""}the next start of tsbuild retries`,
          cause: first,
        });
      }
    })();
    return releasing;
  };
  return { netnsPath, address, gateway, id, bridge: record.bridge, subnet: record.subnet, release };
}

/**
 * The resolv.conf of a namespace on the default network: the host's, without
 * loopback nameservers (a local resolver such as systemd-resolved's
 * 127.0.0.53 is not reachable from the namespace); Google's public servers
 * when none is left, as Docker does.
 */
export function defaultNetworkResolvConf(hostResolvConf: string): string {
  const lines = hostResolvConf.split("\n");
  const isLoopback = (line: string) => /^\s*nameserver\s+(127\.\S*|::1|0\.0\.0\.0)\s*$/.test(line);
  const kept = lines.filter((line) => !isLoopback(line));
  if (!kept.some((line) => /^\s*nameserver\s+\S/.test(line))) {
    while (kept.length > 0 && kept[kept.length - 1] === "") kept.pop();
    kept.push("nameserver 8.8.8.8", "nameserver 8.8.4.4", "");
  }
  return kept.join("\n");
}
