import { execFileSync, spawn, spawnSync, type ChildProcess } from "node:child_process";
import { existsSync, readFileSync, readdirSync, rmSync } from "node:fs";
import { randomBytes } from "node:crypto";
import { createInterface } from "node:readline";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { makeRootfs, requireHelper, requirePackages, tempDir } from "../helpers.ts";

const here = dirname(fileURLToPath(import.meta.url));

export const PLUGIN_DIR = "/usr/lib/cni";

/** containernetworking-plugins, iptables and iproute2, installed with apt-get when missing. */
export function requireNetworkTools(): void {
  requirePackages(["containernetworking-plugins", "iptables", "iproute2"], () =>
    ["bridge", "host-local", "firewall", "loopback", "portmap"].every((p) => existsSync(join(PLUGIN_DIR, p))) &&
    spawnSync("iptables", ["--version"]).status === 0 &&
    spawnSync("ip", ["-V"]).status === 0,
  );
}

/** What the namespace tests need first: the sandbox helper and network tools, a rootfs and a state directory. */
export function prepareNetworkTests(statePrefix: string): { rootfs: string; stateDir: string } {
  requireHelper();
  requireNetworkTools();
  return { rootfs: makeRootfs(), stateDir: tempDir(statePrefix) };
}

/** A bridge name no one else uses (at most 15 characters). */
export function testBridge(): string {
  return `tsbt${randomBytes(4).toString("hex")}`;
}

export function attachmentId(label: string): string {
  return `t-${label}-${randomBytes(4).toString("hex")}`;
}

/** Deletes a bridge the test created, the iptables rules its registry entry lists, and the entry. */
export function removeBridge(bridge: string, runDir = "/run/tsbuild"): void {
  spawnSync("ip", ["link", "delete", bridge], { encoding: "utf8" });
  const entryPath = join(runDir, "net", "bridges", `${bridge}.json`);
  let rules: Array<{ table: string; chain: string; args: string[] }> = [];
  try {
    rules = (JSON.parse(readFileSync(entryPath, "utf8")) as { rules?: typeof rules }).rules ?? [];
  } catch {
    // no entry
  }
  for (const rule of rules) spawnSync("iptables", ["-w", "-t", rule.table, "-D", rule.chain, ...rule.args], { encoding: "utf8" });
  rmSync(entryPath, { force: true });
}

export function iptables(table: string): string {
  return execFileSync("iptables", ["-t", table, "-S"], { encoding: "utf8" });
}

export function inNetns(netnsPath: string, args: string[]): string {
  return execFileSync("nsenter", [`--net=${netnsPath}`, ...args], { encoding: "utf8" });
}

export function isMounted(path: string): boolean {
  return readFileSync("/proc/self/mountinfo", "utf8")
    .split("\n")
    .some((line) => line.split(" ")[4] === path);
}

export function linkExists(name: string): boolean {
  return existsSync(join("/sys/class/net", name));
}

/** The record's host-side veth (the bridge plugin's result lists it without a sandbox). */
export function hostVeth(stateDir: string, id: string, bridge: string): string | undefined {
  const record = JSON.parse(readFileSync(join(stateDir, "net", "attachments", `${id}.json`), "utf8")) as {
    networks: Array<{ ifname: string; result?: { interfaces?: Array<{ name: string; sandbox?: string }> } }>;
  };
  const eth0 = record.networks.find((n) => n.ifname === "eth0");
  return eth0?.result?.interfaces?.find((i) => !i.sandbox && i.name !== bridge)?.name;
}

export interface Child {
  process: ChildProcess;
  /** Resolves with the first line parsed as JSON that has `key`. */
  waitFor: (key: string, timeoutMs?: number) => Promise<Record<string, unknown>>;
}

/** Runs attach-child.ts in a separate Node process (killed by the test). */
export function startAttachChild(options: Record<string, unknown>): Child {
  return startChild("attach-child.ts", options);
}

/** Runs pool-child.ts in a separate Node process (see there for the modes). */
export function startPoolChild(options: Record<string, unknown>): Child {
  return startChild("pool-child.ts", options);
}

function startChild(script: string, options: Record<string, unknown>): Child {
  const child = spawn(process.execPath, ["--import", "tsx", join(here, script), JSON.stringify(options)], {
    stdio: ["ignore", "pipe", "pipe"],
  });
  const lines: Array<Record<string, unknown>> = [];
  const waiters: Array<{ key: string; resolve: (v: Record<string, unknown>) => void }> = [];
  let stderr = "";
  child.stderr?.on("data", (chunk: Buffer) => (stderr += chunk.toString("utf8")));
  createInterface({ input: child.stdout as NodeJS.ReadableStream }).on("line", (line) => {
    let parsed: Record<string, unknown>;
    try {
      parsed = JSON.parse(line) as Record<string, unknown>;
    } catch {
      return;
    }
    lines.push(parsed);
    for (const w of waiters.splice(0)) {
      if (w.key in parsed) w.resolve(parsed);
      else waiters.push(w);
    }
  });
  return {
    process: child,
    waitFor: (key, timeoutMs = 20_000) => {
      const seen = lines.find((l) => key in l);
      if (seen) return Promise.resolve(seen);
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`the child printed no ${key} (stderr: ${stderr.slice(-500)})`)), timeoutMs);
        waiters.push({
          key,
          resolve: (v) => {
            clearTimeout(timer);
            resolve(v);
          },
        });
      });
    },
  };
}

export function killAndWait(child: ChildProcess): Promise<void> {
  return new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) {
      resolve();
      return;
    }
    child.once("exit", () => resolve());
    child.kill("SIGKILL");
  });
}

/** Resolves when the process has exited; its exit code, or its signal. */
export function exited(child: ChildProcess): Promise<number | NodeJS.Signals | null> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve(child.exitCode ?? child.signalCode);
  return new Promise((resolve) => child.once("exit", (code, signal) => resolve(code ?? signal)));
}

/**
 * What attachments whose ids start with `prefix` left behind: namespace files
 * (and their mounts), records and leases in the state root, iptables rules
 * naming them, and any veth on `bridge` (a bridge of the test's own). Empty
 * when nothing is left.
 */
export function leftovers(options: { stateDir: string; prefix: string; bridge?: string; runDir?: string }): string[] {
  const runDir = options.runDir ?? "/run/tsbuild";
  const found: string[] = [];
  const list = (dir: string) => (existsSync(dir) ? readdirSync(dir) : []);
  for (const name of list(join(runDir, "netns")).filter((n) => n.startsWith(options.prefix))) found.push(`namespace file ${name}`);
  for (const line of readFileSync("/proc/self/mountinfo", "utf8").split("\n")) {
    const point = line.split(" ")[4] ?? "";
    if (point.startsWith(join(runDir, "netns", options.prefix))) found.push(`mount ${point}`);
  }
  for (const name of list(join(options.stateDir, "net", "attachments")).filter((n) => n.startsWith(options.prefix))) found.push(`record ${name}`);
  const ipam = join(options.stateDir, "net", "ipam");
  for (const network of list(ipam)) {
    for (const name of list(join(ipam, network)).filter((n) => /^\d+\.\d+\.\d+\.\d+$/.test(n))) {
      const owner = readFileSync(join(ipam, network, name), "utf8").split("\n")[0] ?? "";
      if (owner.startsWith(options.prefix)) found.push(`lease ${network}/${name}`);
    }
  }
  if (options.bridge) for (const port of list(join("/sys/class/net", options.bridge, "brif"))) found.push(`veth ${port} on ${options.bridge}`);
  for (const table of ["nat", "filter"]) {
    for (const rule of iptables(table).split("\n").filter((line) => line.includes(options.prefix))) found.push(`rule ${table}: ${rule}`);
  }
  return found;
}
