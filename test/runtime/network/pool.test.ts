import { execFileSync, spawnSync } from "node:child_process";
import { chmodSync, existsSync, symlinkSync, writeFileSync } from "node:fs";
import { createServer, type Server } from "node:http";
import { randomBytes } from "node:crypto";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runSandbox, type SandboxSpec } from "../../../src/runtime/index.ts";
import { cleanupStaleNetworks, NetworkError, NetworkPool, type NetworkAttachment, type NetworkPoolOptions } from "../../../src/runtime/network/index.ts";
import { Collector, isRoot, shellSpec, tempDir } from "../helpers.ts";
import { PLUGIN_DIR, exited, isMounted, killAndWait, leftovers, removeBridge, prepareNetworkTests, startPoolChild, testBridge } from "./helpers.ts";

let rootfs: string;
let stateDir: string;
const bridge = testBridge();
const pools: NetworkPool[] = [];
const taken: NetworkAttachment[] = [];
const quiet = { onNotice: () => undefined };

/** pool.take(), remembered: a failing test must not leave namespaces behind either. */
async function take(from: NetworkPool): Promise<NetworkAttachment> {
  const attachment = await from.take();
  taken.push(attachment);
  return attachment;
}

/** A pool on the test's bridge whose attachment ids start with a prefix of its own. */
function pool(extra: Partial<NetworkPoolOptions> = {}): { pool: NetworkPool; prefix: string } {
  const prefix = `tp${randomBytes(3).toString("hex")}`;
  const made = new NetworkPool({ stateDir, bridge, idPrefix: prefix, ...quiet, ...extra });
  pools.push(made);
  return { pool: made, prefix };
}

async function sh(attachment: NetworkAttachment, script: string): Promise<{ exitCode: number; out: string; err: string }> {
  const out = new Collector();
  const err = new Collector();
  const spec: SandboxSpec = shellSpec(rootfs, script, { network: "default", netnsPath: attachment.netnsPath });
  const result = await runSandbox(spec, { stdout: out, stderr: err });
  return { exitCode: result.exitCode, out: out.text, err: err.text };
}

function listen(server: Server, host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, host, () => {
      const address = server.address();
      resolve(typeof address === "object" && address ? address.port : 0);
    });
  });
}

/** The inode of the network namespace a file holds (different namespaces, different inodes). */
function namespaceInode(netnsPath: string): string {
  return execFileSync("stat", ["-L", "-c", "%i", netnsPath], { encoding: "utf8" }).trim();
}

describe.skipIf(!isRoot)("the pool of attached namespaces (real kernel, as root)", () => {
  beforeAll(() => {
    ({ rootfs, stateDir } = prepareNetworkTests("tsbuild-pool-state-"));
  }, 180_000);

  afterAll(async () => {
    for (const attachment of taken.splice(0)) await attachment.release().catch(() => undefined);
    for (const made of pools.splice(0)) await made.close();
    removeBridge(bridge);
  });

  it("hands out a namespace it attached ahead, and attaches the next one while it is used", async () => {
    const { pool: made, prefix } = pool();
    await made.warm();
    expect(made.spares).toBe(1);
    // attached before anyone asked: its namespace file is mounted and its record written
    const ahead = `${prefix}-${process.pid}`;
    const before = leftovers({ stateDir, prefix });
    expect(before.filter((what) => what.startsWith("namespace file"))).toHaveLength(1);
    const first = await take(made);
    expect(first.id.startsWith(ahead)).toBe(true);
    expect(isMounted(first.netnsPath)).toBe(true);
    // the next one comes in the background
    await made.warm();
    expect(made.spares).toBe(1);
    const second = await take(made);
    expect(second.netnsPath).not.toBe(first.netnsPath);
    await Promise.all([first.release(), second.release()]);
    await made.close();
    expect(leftovers({ stateDir, prefix, bridge })).toEqual([]);
  });

  it("gives every step a namespace of its own: distinct, working, and with nothing of the step before", async () => {
    const { pool: made, prefix } = pool();
    const server = createServer((req, res) => res.end(`hello ${req.socket.remoteAddress}\n`));
    const seen: Array<{ inode: string; address: string }> = [];
    let port = 0;
    try {
      for (let step = 0; step < 3; step++) {
        const network = await take(made);
        if (port === 0) port = await listen(server, network.gateway);
        const address = network.address.split("/")[0] as string;
        // what a step sees: lo and eth0 only, its own address, no socket and no TCP connection of an earlier step
        const r = await sh(
          network,
          [
            "readlink /proc/self/ns/net",
            "ls /sys/class/net | tr '\\n' ' '; echo",
            "ip -4 -o addr show dev eth0 | awk '{print $4}'",
            "cat /proc/net/tcp /proc/net/tcp6 | grep -v local_address | wc -l",
            "awk '/^Tcp: [0-9]/ {print $6}' /proc/net/snmp",
            // leave a connection behind (TIME_WAIT, counters) and a listener that the next step must not see
            `timeout 10 wget -q -O - http://${network.gateway}:${port}/`,
            "(nc -l -p 7001 >/dev/null 2>&1 &) ; sleep 0.1",
            "cat /proc/net/tcp /proc/net/tcp6 | grep -v local_address | wc -l",
            "awk '/^Tcp: [0-9]/ {print $6}' /proc/net/snmp",
          ].join("; "),
        );
        expect(r.err).toBe("");
        const [nsLink, links, eth0, sockets, activeOpens, answer, socketsAfter, activeOpensAfter] = r.out.split("\n");
        // there was something for the next step to see, had it the same namespace
        expect(Number(socketsAfter)).toBeGreaterThanOrEqual(1);
        expect(Number(activeOpensAfter)).toBeGreaterThanOrEqual(1);
        expect(r.exitCode).toBe(0);
        expect(nsLink).toMatch(/^net:\[\d+\]$/);
        expect(links?.trim().split(" ").sort()).toEqual(["eth0", "lo"]);
        expect(eth0).toBe(network.address);
        expect(sockets?.trim()).toBe("0");
        expect(activeOpens?.trim()).toBe("0");
        expect(answer).toBe(`hello ${address}`);
        expect(namespaceInode(network.netnsPath)).toBe(nsLink?.replace(/\D/g, ""));
        seen.push({ inode: nsLink as string, address: network.address });
        await network.release();
      }
    } finally {
      server.close();
    }
    expect(new Set(seen.map((s) => s.inode)).size).toBe(3);
    expect(new Set(seen.map((s) => s.address)).size).toBe(3);
    await made.close();
    expect(leftovers({ stateDir, prefix, bridge })).toEqual([]);
  }, 60_000);

  it("routes out through the bridge to a server on another address of the host, set up by the test", async () => {
    // a veth pair of the test's own on the host, with an address of a subnet no route of the host covers
    const routes = JSON.parse(execFileSync("ip", ["-j", "-4", "route", "show", "table", "all"], { encoding: "utf8" })) as Array<{ dst: string }>;
    const free = [...Array(200).keys()].map((n) => n + 30).find((n) => !routes.some((r) => r.dst.startsWith(`10.66.${n}.`)));
    const suffix = randomBytes(3).toString("hex");
    const dummy = `tspd${suffix}`;
    const address = `10.66.${free}.1`;
    execFileSync("ip", ["link", "add", dummy, "type", "veth", "peer", "name", `tspe${suffix}`]);
    execFileSync("ip", ["link", "set", `tspe${suffix}`, "up"]);
    const server = createServer((req, res) => res.end(`outside saw ${req.socket.remoteAddress}\n`));
    const { pool: made, prefix } = pool();
    try {
      execFileSync("ip", ["addr", "add", `${address}/32`, "dev", dummy]);
      execFileSync("ip", ["link", "set", dummy, "up"]);
      const port = await listen(server, address);
      const network = await take(made);
      const r = await sh(network, `ip route show | head -1; timeout 10 wget -q -O - http://${address}:${port}/`);
      expect(r.err).toBe("");
      const [route, answer] = r.out.split("\n");
      expect(route?.trim()).toBe(`default via ${network.gateway} dev eth0`);
      expect(answer).toBe(`outside saw ${network.address.split("/")[0]}`);
      expect(r.exitCode).toBe(0);
      await network.release();
    } finally {
      server.close();
      spawnSync("ip", ["link", "delete", dummy]);
      await made.close();
    }
    expect(leftovers({ stateDir, prefix, bridge })).toEqual([]);
  }, 60_000);

  it("gives concurrent takers different namespaces", async () => {
    const { pool: made, prefix } = pool();
    await made.warm();
    const all = await Promise.all([1, 2, 3, 4].map(() => take(made)));
    expect(new Set(all.map((a) => a.netnsPath)).size).toBe(4);
    expect(new Set(all.map((a) => namespaceInode(a.netnsPath))).size).toBe(4);
    expect(new Set(all.map((a) => a.address)).size).toBe(4);
    await Promise.all(all.map((a) => a.release()));
    await made.close();
    expect(leftovers({ stateDir, prefix, bridge })).toEqual([]);
  }, 60_000);

  it("on close releases the spares, also one still being attached, and then attaches on demand only", async () => {
    const { pool: made, prefix } = pool();
    const first = await take(made);
    // the spare is being attached right now
    expect(made.spares).toBe(1);
    await made.close();
    expect(made.spares).toBe(0);
    // only the one taken is still there
    expect(leftovers({ stateDir, prefix }).filter((what) => what.startsWith("namespace file") || what.startsWith("record"))).toEqual([
      `namespace file ${first.id}`,
      `record ${first.id}.json`,
    ]);
    const late = await take(made);
    expect(made.spares).toBe(0);
    await Promise.all([first.release(), late.release()]);
    expect(leftovers({ stateDir, prefix, bridge })).toEqual([]);
  }, 60_000);

  it("releases a spare nobody takes after the idle time", async () => {
    const { pool: made, prefix } = pool({ idleMs: 200 });
    const used = await take(made);
    await used.release();
    await made.warm();
    expect(made.spares).toBe(1);
    const deadline = Date.now() + 10_000;
    while (made.spares > 0 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 50));
    expect(made.spares).toBe(0);
    await made.close(); // waits for the release under way
    expect(leftovers({ stateDir, prefix, bridge })).toEqual([]);
  }, 30_000);

  it("reports a failing attach to the taker and leaves nothing behind", async () => {
    const plugins = tempDir("tsbuild-pool-fail-");
    symlinkSync(join(PLUGIN_DIR, "host-local"), join(plugins, "host-local"));
    writeFileSync(join(plugins, "bridge"), '#!/bin/sh\n[ "$CNI_COMMAND" = ADD ] || exit 0\necho \'{"cniVersion":"1.0.0","code":11,"msg":"no bridge today"}\'\nexit 1\n');
    chmodSync(join(plugins, "bridge"), 0o755);
    const { pool: made, prefix } = pool({ cniPath: [plugins] });
    for (let i = 0; i < 2; i++) {
      const error = (await take(made).catch((e: unknown) => e)) as NetworkError;
      expect(error).toBeInstanceOf(NetworkError);
      expect(error.code).toBe("PLUGIN_FAILED");
      expect(error.message).toContain("no bridge today");
    }
    await made.warm();
    await made.close();
    expect(leftovers({ stateDir, prefix, bridge })).toEqual([]);
  }, 30_000);

  it("releases its spares when its process runs out of work without closing it", async () => {
    const prefix = `tp${randomBytes(3).toString("hex")}`;
    const child = startPoolChild({ stateDir, bridge, idPrefix: prefix, mode: "drain" });
    const ready = (await child.waitFor("ready")).ready as { spares: number };
    expect(ready.spares).toBe(1);
    expect(await exited(child.process)).toBe(0);
    expect(leftovers({ stateDir, prefix, bridge })).toEqual([]);
  }, 60_000);

  it("releases what it holds on SIGINT, as a build does on Ctrl-C", async () => {
    const prefix = `tp${randomBytes(3).toString("hex")}`;
    const child = startPoolChild({ stateDir, bridge, idPrefix: prefix, mode: "sigint" });
    await child.waitFor("ready");
    expect(leftovers({ stateDir, prefix })).not.toEqual([]);
    child.process.kill("SIGINT");
    expect(await exited(child.process)).toBe(130);
    expect(leftovers({ stateDir, prefix, bridge })).toEqual([]);
  }, 60_000);

  it("leaves what a process killed with SIGKILL held to the next clean-up, which releases all of it", async () => {
    const prefix = `tp${randomBytes(3).toString("hex")}`;
    const child = startPoolChild({ stateDir, bridge, idPrefix: prefix, mode: "hang" });
    const ready = (await child.waitFor("ready")).ready as { netnsPath: string };
    await killAndWait(child.process);
    const left = leftovers({ stateDir, prefix, bridge });
    // the namespace in use and the spare: files, mounts, records, leases, veths
    expect(left.filter((what) => what.startsWith("record"))).toHaveLength(2);
    expect(left.filter((what) => what.startsWith("veth"))).toHaveLength(2);
    expect(existsSync(ready.netnsPath)).toBe(true);
    await cleanupStaleNetworks(stateDir, quiet);
    expect(leftovers({ stateDir, prefix, bridge })).toEqual([]);
  }, 60_000);
});
