/**
 * The iptables rules of a bridge, installed once when the bridge is first
 * used and kept while the bridge is (as dockerd does for docker0): one
 * MASQUERADE rule for the bridge's subnet in nat POSTROUTING, and two
 * forwarding rules in TSBUILD-FORWARD (first in filter FORWARD, which Docker
 * sets to DROP). Attachments then add no rules of their own.
 */
import { NetworkError, errnoCode } from "./errors.ts";
import { pluginHint } from "./cni.ts";
import { programPath, runProgram } from "./programs.ts";

/** The chain of the forwarding rules, jumped to from the top of filter FORWARD; shared by every bridge, it stays. */
export const FORWARD_CHAIN = "TSBUILD-FORWARD";

/** One rule: table, chain and match/target arguments, as `iptables -t TABLE -A CHAIN ...ARGS` takes them. */
export interface BridgeRule {
  table: "nat" | "filter";
  chain: string;
  args: string[];
}

/** What a bridge with this subnet needs: NAT to the outside, forwarding of its traffic (and of the answers to it). */
export function bridgeRules(bridge: string, subnet: string): BridgeRule[] {
  const comment = ["-m", "comment", "--comment", `tsbuild bridge ${bridge}`];
  return [
    { table: "nat", chain: "POSTROUTING", args: ["-s", subnet, "!", "-d", subnet, ...comment, "-j", "MASQUERADE"] },
    { table: "filter", chain: FORWARD_CHAIN, args: ["-i", bridge, ...comment, "-j", "ACCEPT"] },
    { table: "filter", chain: FORWARD_CHAIN, args: ["-o", bridge, "-m", "conntrack", "--ctstate", "RELATED,ESTABLISHED", ...comment, "-j", "ACCEPT"] },
  ];
}

export function sameRule(a: BridgeRule, b: BridgeRule): boolean {
  return a.table === b.table && a.chain === b.chain && a.args.length === b.args.length && a.args.every((arg, i) => arg === b.args[i]);
}

function iptablesEnv(): NodeJS.ProcessEnv {
  return { ...process.env, PATH: programPath() };
}

/** Runs iptables (waiting for the xtables lock); resolves whether it exited 0, rejects when it cannot run at all. */
async function iptables(args: string[]): Promise<{ ok: boolean; output: string }> {
  const result = await runProgram("iptables", ["-w", ...args], { env: iptablesEnv() });
  if (result.error && errnoCode(result.error) === "ENOENT") {
    throw new NetworkError("PLUGIN_FAILED", "cannot set up the bridge's NAT: iptables is not installed", { hint: "install iptables (apt-get install iptables)" });
  }
  const ok = result.code === 0 && !result.error;
  return { ok, output: `${result.stdout}${result.stderr}`.trim() || (ok ? "" : (result.error?.message ?? `exit status ${result.code ?? result.signal}`)) };
}

async function must(args: string[], what: string): Promise<void> {
  const result = await iptables(args);
  if (!result.ok) {
    throw new NetworkError("PLUGIN_FAILED", `cannot ${what} (iptables ${args.join(" ")}): ${result.output}`, { hint: pluginHint("iptables", result.output) });
  }
}

let forwardChainReady = false;

/** A rule as `iptables -S` prints it (arguments with spaces in double quotes). */
function listed(command: "-A" | "-N", chain: string, args: readonly string[] = []): string {
  return [command, chain, ...args.map((arg) => (/\s/.test(arg) ? `"${arg}"` : arg))].join(" ");
}

/** The lines of `iptables -t TABLE -S`, or nothing when it cannot list them. */
async function listRules(table: string): Promise<Set<string>> {
  const result = await iptables(["-t", table, "-S"]);
  return new Set(result.ok ? result.output.split("\n").map((line) => line.trim()) : []);
}

/** TSBUILD-FORWARD exists and FORWARD jumps to it first. */
async function ensureForwardChain(filter: Set<string>): Promise<void> {
  if (forwardChainReady) return;
  // fails when it exists already, which is fine; a real failure shows at the next command
  if (!filter.has(listed("-N", FORWARD_CHAIN))) await iptables(["-t", "filter", "-N", FORWARD_CHAIN]);
  const jump = ["FORWARD", "-m", "comment", "--comment", "tsbuild bridges", "-j", FORWARD_CHAIN];
  if (!filter.has(listed("-A", "FORWARD", jump.slice(1))) && !(await iptables(["-t", "filter", "-C", ...jump])).ok) {
    await must(["-t", "filter", "-I", "FORWARD", "1", ...jump.slice(1)], "add the forwarding rules of the bridges");
  }
  forwardChainReady = true;
}

/**
 * Adds the rules that are missing: idempotent. One listing per table (the
 * tables side by side) finds those there already; a rule it does not show
 * is checked with `-C` before `-A`, so a listing printed differently only
 * costs time.
 */
export async function installRules(rules: readonly BridgeRule[]): Promise<void> {
  const tables = [...new Set([...rules.map((rule) => rule.table), ...(rules.some((rule) => rule.chain === FORWARD_CHAIN) ? ["filter" as const] : [])])];
  const listings = new Map(await Promise.all(tables.map(async (table) => [table, await listRules(table)] as const)));
  if (rules.some((rule) => rule.chain === FORWARD_CHAIN)) await ensureForwardChain(listings.get("filter") ?? new Set());
  for (const rule of rules) {
    if (listings.get(rule.table)?.has(listed("-A", rule.chain, rule.args))) continue;
    if ((await iptables(["-t", rule.table, "-C", rule.chain, ...rule.args])).ok) continue;
    await must(["-t", rule.table, "-A", rule.chain, ...rule.args], `add the ${rule.table} rule of the bridge`);
  }
}

/** Deletes the rules that are there (every copy); missing ones are no error. */
export async function removeRules(rules: readonly BridgeRule[]): Promise<void> {
  for (const rule of rules) {
    for (let i = 0; i < 8; i++) {
      if (!(await iptables(["-t", rule.table, "-D", rule.chain, ...rule.args])).ok) break;
    }
  }
}
