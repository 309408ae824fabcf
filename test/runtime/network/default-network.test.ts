import { execFileSync } from "node:child_process";
import { chmodSync, existsSync, readFileSync, readdirSync, symlinkSync, writeFileSync } from "node:fs";
import { createServer as createHttpServer, type Server } from "node:http";
import { connect } from "node:net";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runSandbox, startSandbox, type SandboxSpec } from "../../../src/runtime/index.ts";
import { attachDefaultNetwork, cleanupStaleNetworks, NetworkError, type NetworkAttachment } from "../../../src/runtime/network/index.ts";
import { Collector, isRoot, shellSpec, tempDir } from "../helpers.ts";
import {
  PLUGIN_DIR,
  attachmentId,
  hostVeth,
  iptables,
  isMounted,
  killAndWait,
  linkExists,
  prepareNetworkTests,
  removeBridge,
  startAttachChild,
  testBridge,
} from "./helpers.ts";

let rootfs: string;
let stateDir: string;
const bridge = testBridge();
const bridges = [bridge];
const open: NetworkAttachment[] = [];
const quiet = { onNotice: () => undefined };

async function attach(label: string, extra: Partial<Parameters<typeof attachDefaultNetwork>[0]> = {}): Promise<NetworkAttachment> {
  const attachment = await attachDefaultNetwork({ stateDir, id: attachmentId(label), bridge, ...quiet, ...extra });
  open.push(attachment);
  return attachment;
}

async function sh(attachment: NetworkAttachment, script: string): Promise<{ exitCode: number; out: string; err: string }> {
  const out = new Collector();
  const err = new Collector();
  const spec: SandboxSpec = shellSpec(rootfs, script, { network: "default", netnsPath: attachment.netnsPath });
  const result = await runSandbox(spec, { stdout: out, stderr: err });
  return { exitCode: result.exitCode, out: out.text, err: err.text };
}

function inSubnet(address: string, subnet: string): boolean {
  // the tests' subnets are /24s
  const prefix = subnet.split(".").slice(0, 3).join(".");
  return address.startsWith(`${prefix}.`);
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

function fetchOverTcp(host: string, port: number, timeoutMs = 10_000): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host, port });
    let data = "";
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`no answer from ${host}:${port}`));
    }, timeoutMs);
    socket.on("data", (chunk: Buffer) => (data += chunk.toString("utf8")));
    socket.on("error", (error) => {
      clearTimeout(timer);
      reject(error);
    });
    socket.on("close", () => {
      clearTimeout(timer);
      resolve(data);
    });
  });
}

describe.skipIf(!isRoot)("the default network (CNI bridge, real kernel, as root)", () => {
  beforeAll(() => {
    ({ rootfs, stateDir } = prepareNetworkTests("tsbuild-net-state-"));
  }, 180_000);

  afterAll(async () => {
    for (const attachment of open.splice(0)) await attachment.release().catch(() => undefined);
    for (const name of bridges) removeBridge(name);
  });

  it("gives a sandbox lo and eth0 with an address of the subnet and a default route through the gateway", async () => {
    const a = await attach("shape");
    expect(a.bridge).toBe(bridge);
    expect(a.address).toMatch(/^\d+\.\d+\.\d+\.\d+\/24$/);
    expect(inSubnet(a.address, a.subnet)).toBe(true);
    expect(a.gateway).toBe(`${a.subnet.split(".").slice(0, 3).join(".")}.1`);
    expect(a.netnsPath).toMatch(/^\/run\/tsbuild\/netns\/t-shape-/);

    const r = await sh(a, "ls /sys/class/net | tr '\\n' ' '; echo; ip -4 -o addr show; ip route show; cat /sys/class/net/lo/operstate");
    expect(r.exitCode).toBe(0);
    const [links, ...rest] = r.out.split("\n");
    expect(links?.trim().split(" ").sort()).toEqual(["eth0", "lo"]);
    const text = rest.join("\n");
    expect(text).toMatch(/\blo\s+inet 127\.0\.0\.1\/8/);
    expect(text).toMatch(new RegExp(`eth0\\s+inet ${a.address.replace(/\./g, "\\.")}`));
    expect(text).toMatch(new RegExp(`^default via ${a.gateway.replace(/\./g, "\\.")} dev eth0`, "m"));
    expect(text).toMatch(/unknown\n$/); // lo is up (loopback has no carrier state)
    await a.release();
  });

  it("reaches a TCP server of the host bound to the bridge's gateway address", async () => {
    const a = await attach("host");
    const server = createHttpServer((_req, res) => res.end(`hello from the host to ${a.address}\n`));
    const port = await listen(server, a.gateway);
    try {
      // (busybox 1.35's wget -T crashes: the time limit comes from timeout)
      const r = await sh(a, `timeout 10 wget -q -O - http://${a.gateway}:${port}/`);
      expect(r.err).toBe("");
      expect(r.out).toBe(`hello from the host to ${a.address}\n`);
      expect(r.exitCode).toBe(0);
    } finally {
      server.close();
      await a.release();
    }
  });

  it("reaches a server in another attached namespace (namespace to namespace over the bridge)", async () => {
    const server = await attach("server");
    const client = await attach("client");
    const serverAddress = server.address.split("/")[0] as string;
    const out = new Collector();
    const handle = startSandbox(shellSpec(rootfs, "echo listening; echo hello-from-the-server | nc -l -p 7000", { network: "default", netnsPath: server.netnsPath }), {
      stdout: out,
      stderr: out,
    });
    try {
      await out.waitFor("listening");
      const r = await sh(client, `for i in $(seq 50); do nc -w 2 ${serverAddress} 7000 < /dev/null && exit 0; sleep 0.1; done; exit 1`);
      expect(r.out).toBe("hello-from-the-server\n");
      expect(r.exitCode).toBe(0);
    } finally {
      handle.kill("SIGKILL");
      await handle.result;
      await client.release();
      await server.release();
    }
  });

  it("masquerades the subnet's traffic to the outside and forwards the bridge's traffic with one set of rules per bridge", async () => {
    const a = await attach("nat");
    const b = await attach("nat2");
    const masquerade = `-A POSTROUTING -s ${a.subnet} ! -d ${a.subnet} -m comment --comment "tsbuild bridge ${bridge}" -j MASQUERADE`;
    const forwardOut = `-A TSBUILD-FORWARD -i ${bridge} -m comment --comment "tsbuild bridge ${bridge}" -j ACCEPT`;
    const forwardIn = `-A TSBUILD-FORWARD -o ${bridge} -m conntrack --ctstate RELATED,ESTABLISHED -m comment --comment "tsbuild bridge ${bridge}" -j ACCEPT`;
    const count = (text: string, line: string) => text.split("\n").filter((l) => l === line).length;
    const nat = iptables("nat");
    expect(count(nat, masquerade), nat).toBe(1);
    // no per-attachment rules
    expect(nat).not.toContain(a.id);
    expect(nat).not.toContain(b.id);
    const filter = iptables("filter");
    expect(count(filter, forwardOut), filter).toBe(1);
    expect(count(filter, forwardIn), filter).toBe(1);
    expect(filter.split("\n").find((l) => l.startsWith("-A FORWARD "))).toContain("-j TSBUILD-FORWARD");
    // recorded with the bridge
    const entry = JSON.parse(readFileSync(`/run/tsbuild/net/bridges/${bridge}.json`, "utf8")) as { rules: Array<{ table: string }> };
    expect(entry.rules.map((r) => r.table).sort()).toEqual(["filter", "filter", "nat"]);
    await b.release();
    await a.release();
    // the rules stay with the bridge, as docker0's do
    expect(count(iptables("nat"), masquerade)).toBe(1);
    expect(count(iptables("filter"), forwardOut)).toBe(1);
  });

  it("gives concurrent attachments different addresses", async () => {
    const all = await Promise.all([1, 2, 3, 4].map((n) => attach(`concurrent${n}`)));
    const addresses = all.map((a) => a.address);
    expect(new Set(addresses).size).toBe(4);
    for (const a of all) expect(inSubnet(a.address, a.subnet)).toBe(true);
    await Promise.all(all.map((a) => a.release()));
  });

  it("release removes the veth, the namespace, the lease, the rules and the record, and can be repeated", async () => {
    const a = await attach("release");
    const ip = a.address.split("/")[0] as string;
    const veth = hostVeth(stateDir, a.id, bridge) as string;
    const lease = join(stateDir, "net", "ipam", bridge, ip);
    expect(veth).toMatch(/^veth/);
    expect(linkExists(veth)).toBe(true);
    expect(isMounted(a.netnsPath)).toBe(true);
    expect(readFileSync(lease, "utf8")).toContain(a.id);

    await a.release();
    expect(linkExists(veth)).toBe(false);
    expect(isMounted(a.netnsPath)).toBe(false);
    expect(existsSync(a.netnsPath)).toBe(false);
    expect(existsSync(lease)).toBe(false);
    expect(existsSync(join(stateDir, "net", "attachments", `${a.id}.json`))).toBe(false);
    expect(iptables("nat")).not.toContain(a.id);
    await a.release();
  });

  it("cleanupStaleNetworks releases what a build killed with SIGKILL left attached", async () => {
    const id = attachmentId("crash");
    const child = startAttachChild({ stateDir, id, bridge });
    const attached = (await child.waitFor("attached")).attached as { netnsPath: string; address: string };
    await killAndWait(child.process);
    const ip = attached.address.split("/")[0] as string;
    const lease = join(stateDir, "net", "ipam", bridge, ip);
    const veth = hostVeth(stateDir, id, bridge) as string;
    // what the killed process left
    expect(isMounted(attached.netnsPath)).toBe(true);
    expect(existsSync(lease)).toBe(true);
    expect(linkExists(veth)).toBe(true);

    await cleanupStaleNetworks(stateDir);
    expect(isMounted(attached.netnsPath)).toBe(false);
    expect(existsSync(attached.netnsPath)).toBe(false);
    expect(existsSync(lease)).toBe(false);
    expect(linkExists(veth)).toBe(false);
    expect(iptables("nat")).not.toContain(id);
    expect(iptables("filter")).not.toContain(`-s ${ip}/32 -j ACCEPT`);
    expect(existsSync(join(stateDir, "net", "attachments", `${id}.json`))).toBe(false);
  }, 60_000);

  it("cleanupStaleNetworks also undoes an attachment killed halfway through its plugins", async () => {
    // a portmap plugin that hangs on ADD: the process is killed after bridge's ADD, before portmap's finished
    const plugins = tempDir("tsbuild-cni-hang-");
    for (const name of ["bridge", "host-local"]) symlinkSync(join(PLUGIN_DIR, name), join(plugins, name));
    const marker = join(plugins, "hanging.pid");
    writeFileSync(
      join(plugins, "portmap"),
      `#!/bin/sh\nif [ "$CNI_COMMAND" = ADD ]; then echo $$ > ${marker}; exec sleep 600; fi\nexec ${PLUGIN_DIR}/portmap\n`,
    );
    chmodSync(join(plugins, "portmap"), 0o755);
    const id = attachmentId("half");
    const hostPort = 20000 + Math.floor(Math.random() * 20000);
    const child = startAttachChild({ stateDir, id, bridge, cniPath: [plugins], portMappings: [{ hostPort, containerPort: 80 }] });
    await child.waitFor("attaching");
    const deadline = Date.now() + 20_000;
    while (!existsSync(marker) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    expect(existsSync(marker)).toBe(true);
    await killAndWait(child.process);
    // the plugin's own process (the test started it, through the child)
    const hanging = Number(readFileSync(marker, "utf8"));
    if (hanging > 0) process.kill(hanging, "SIGKILL");

    const record = JSON.parse(readFileSync(join(stateDir, "net", "attachments", `${id}.json`), "utf8")) as {
      netnsPath: string;
      networks: Array<{ ifname: string; result?: { ips?: Array<{ address: string }> } }>;
    };
    const address = record.networks.find((n) => n.ifname === "eth0")?.result?.ips?.[0]?.address as string;
    expect(address).toBeDefined();
    const ip = address.split("/")[0] as string;
    expect(existsSync(join(stateDir, "net", "ipam", bridge, ip))).toBe(true);

    await cleanupStaleNetworks(stateDir);
    expect(existsSync(join(stateDir, "net", "ipam", bridge, ip))).toBe(false);
    expect(isMounted(record.netnsPath)).toBe(false);
    expect(existsSync(record.netnsPath)).toBe(false);
    expect(iptables("nat")).not.toContain(id);
    expect(existsSync(join(stateDir, "net", "attachments", `${id}.json`))).toBe(false);
  }, 60_000);

  it("names the missing plugins and says what to install", async () => {
    const empty = tempDir("tsbuild-cni-empty-");
    const id = attachmentId("missing");
    const error = (await attachDefaultNetwork({ stateDir, id, bridge, cniPath: [empty], ...quiet }).catch((e: unknown) => e)) as NetworkError;
    expect(error).toBeInstanceOf(NetworkError);
    expect(error.code).toBe("PLUGIN_NOT_FOUND");
    expect(error.message).toContain('"bridge"');
    expect(error.message).toContain('"host-local"');
    expect(error.message).toContain(empty);
    expect(error.hint).toContain("apt-get install containernetworking-plugins");
    expect(existsSync(join("/run/tsbuild/netns", id))).toBe(false);
  });

  it("reports a failing plugin with its message and a hint, and undoes the partial attachment with DEL", async () => {
    const plugins = tempDir("tsbuild-cni-fail-");
    for (const name of ["host-local"]) symlinkSync(join(PLUGIN_DIR, name), join(plugins, name));
    const log = join(plugins, "calls.log");
    writeFileSync(
      join(plugins, "bridge"),
      [
        "#!/bin/sh",
        `echo "$CNI_COMMAND $CNI_IFNAME $CNI_CONTAINERID" >> ${log}`,
        'if [ "$CNI_COMMAND" = ADD ]; then',
        '  echo \'{"cniVersion":"1.0.0","code":100,"msg":"failed to create bridge \\"x\\"","details":"operation not supported"}\'',
        "  exit 1",
        "fi",
        "exit 0",
        "",
      ].join("\n"),
    );
    chmodSync(join(plugins, "bridge"), 0o755);
    const id = attachmentId("failing");
    const error = (await attachDefaultNetwork({ stateDir, id, bridge, cniPath: [plugins], ...quiet }).catch((e: unknown) => e)) as NetworkError;
    expect(error).toBeInstanceOf(NetworkError);
    expect(error.code).toBe("PLUGIN_FAILED");
    expect(error.message).toContain('the CNI plugin "bridge" failed to ADD');
    expect(error.message).toContain('failed to create bridge "x": operation not supported');
    expect(error.hint).toContain("modprobe bridge veth");
    expect(readFileSync(log, "utf8")).toBe(`ADD eth0 ${id}\nDEL eth0 ${id}\n`);
    expect(existsSync(join("/run/tsbuild/netns", id))).toBe(false);
    expect(existsSync(join(stateDir, "net", "attachments", `${id}.json`))).toBe(false);
  });

  it("forwards a host port into the namespace (portmap)", async () => {
    // a free port of the gateway address, found by binding it
    const probe = createHttpServer();
    const a0 = await attach("portprobe");
    const hostPort = await listen(probe, a0.gateway);
    await new Promise((r) => probe.close(r));
    await a0.release();

    const a = await attach("ports", { portMappings: [{ hostPort, containerPort: 8080 }] });
    const out = new Collector();
    const handle = startSandbox(shellSpec(rootfs, "echo listening; echo hello-through-the-port | nc -l -p 8080", { network: "default", netnsPath: a.netnsPath }), {
      stdout: out,
      stderr: out,
    });
    try {
      await out.waitFor("listening");
      let answer = "";
      for (let i = 0; i < 50 && !answer; i++) {
        answer = await fetchOverTcp(a.gateway, hostPort, 2000).catch(() => "");
        if (!answer) await new Promise((r) => setTimeout(r, 100));
      }
      expect(answer).toBe("hello-through-the-port\n");
      expect(iptables("nat")).toContain(`--to-destination ${a.address.split("/")[0]}:8080`);
    } finally {
      handle.kill("SIGKILL");
      await handle.result;
      await a.release();
    }
    expect(iptables("nat")).not.toContain(`--to-destination ${a.address.split("/")[0]}:8080`);
  });

  it("keeps a bridge to one state root while its attachments run, and hands it over afterwards", async () => {
    const other = tempDir("tsbuild-net-other-");
    const a = await attach("owner");
    const id = attachmentId("intruder");
    const error = (await attachDefaultNetwork({ stateDir: other, id, bridge, ...quiet }).catch((e: unknown) => e)) as NetworkError;
    expect(error).toBeInstanceOf(NetworkError);
    expect(error.code).toBe("BRIDGE_IN_USE");
    expect(error.message).toContain(stateDir);
    await a.release();

    const b = await attachDefaultNetwork({ stateDir: other, id, bridge, ...quiet });
    try {
      expect(b.subnet).toBe(a.subnet);
      expect(JSON.parse(readFileSync(`/run/tsbuild/net/bridges/${bridge}.json`, "utf8"))).toMatchObject({ stateDir: other });
    } finally {
      await b.release();
    }
  });

  it("uses the subnet asked for, and refuses one that overlaps a host route", async () => {
    const own = testBridge();
    bridges.push(own);
    const routes = JSON.parse(execFileSync("ip", ["-j", "-4", "route", "show", "table", "all"], { encoding: "utf8" })) as Array<{ dst: string }>;
    const used = new Set(routes.map((r) => r.dst));
    const third = [...Array(200).keys()].map((n) => n + 20).find((n) => ![...used].some((d) => d.startsWith(`10.77.${n}.`)));
    const subnet = `10.77.${third}.0/24`;
    const a = await attachDefaultNetwork({ stateDir, id: attachmentId("subnet"), bridge: own, subnet, ...quiet });
    try {
      expect(a.subnet).toBe(subnet);
      expect(a.address.startsWith(`10.77.${third}.`)).toBe(true);
      expect(a.gateway).toBe(`10.77.${third}.1`);
    } finally {
      await a.release();
    }

    const hostRoute = routes.find((r) => /^\d+\.\d+\.\d+\.\d+\/(1[6-9]|2\d)$/.test(r.dst) && !r.dst.startsWith("10.77."));
    if (hostRoute) {
      const fresh = testBridge();
      bridges.push(fresh);
      const error = (await attachDefaultNetwork({ stateDir, id: attachmentId("clash"), bridge: fresh, subnet: hostRoute.dst, ...quiet }).catch((e: unknown) => e)) as NetworkError;
      expect(error).toBeInstanceOf(NetworkError);
      expect(error.code).toBe("SUBNET_UNAVAILABLE");
      expect(error.message).toContain(hostRoute.dst);
    }
  });

  it("attaches and releases fast enough for every RUN step (measured)", async () => {
    const attachMs: number[] = [];
    const releaseMs: number[] = [];
    for (let i = 0; i < 8; i++) {
      const t0 = performance.now();
      const a = await attachDefaultNetwork({ stateDir, id: attachmentId("timing"), bridge, ...quiet });
      const t1 = performance.now();
      await a.release();
      attachMs.push(t1 - t0);
      releaseMs.push(performance.now() - t1);
    }
    const median = (values: number[]) => [...values].sort((x, y) => x - y)[Math.floor(values.length / 2)] as number;
    console.log(
      `default network: attach median ${median(attachMs).toFixed(0)} ms (min ${Math.min(...attachMs).toFixed(0)}), ` +
        `release median ${median(releaseMs).toFixed(0)} ms (min ${Math.min(...releaseMs).toFixed(0)}), over ${attachMs.length} runs`,
    );
    expect(median(attachMs) + median(releaseMs)).toBeLessThan(2000);
    // nothing left behind in the state root
    expect(readdirSync(join(stateDir, "net", "attachments")).filter((n) => n.endsWith(".json"))).toEqual([]);
  }, 60_000);
});
