import { chmodSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { addList, delList, execPlugin, findPlugin, pluginHint, requirePlugins, PluginError, type NetworkConfigList } from "../../../src/runtime/network/cni.ts";
import { NetworkError } from "../../../src/runtime/network/errors.ts";
import { tempDir } from "../helpers.ts";

/** A shell script standing in for a plugin: logs its command, environment and stdin, then runs `body`. */
function fakePlugin(dir: string, name: string, body: string): void {
  const path = join(dir, name);
  writeFileSync(
    path,
    [
      "#!/bin/sh",
      `input=$(cat)`,
      `echo "$CNI_COMMAND ${name} $CNI_CONTAINERID $CNI_NETNS $CNI_IFNAME $CNI_PATH" >> ${join(dir, "calls.log")}`,
      `printf '%s\\n' "$input" > ${join(dir, `${name}.stdin`)}`,
      body,
      "",
    ].join("\n"),
  );
  chmodSync(path, 0o755);
}

const invocation = (dir: string) => ({ containerId: "c1", netns: "/run/tsbuild/netns/c1", ifname: "eth0", cniPath: [dir] });

describe("driving CNI plugins", () => {
  it("finds a plugin in the first directory of the CNI path that has it as an executable", () => {
    const a = tempDir("tsbuild-cni-a-");
    const b = tempDir("tsbuild-cni-b-");
    writeFileSync(join(a, "bridge"), "not executable");
    fakePlugin(b, "bridge", "exit 0");
    fakePlugin(a, "loopback", "exit 0");
    fakePlugin(b, "loopback", "exit 0");
    expect(findPlugin("bridge", [a, b])).toBe(join(b, "bridge"));
    expect(findPlugin("loopback", [a, b])).toBe(join(a, "loopback"));
    expect(findPlugin("../bin/sh", [a, b])).toBeUndefined();
    expect(() => requirePlugins(["bridge", "firewall", "portmap"], [a, b])).toThrow(/"firewall", "portmap" are not installed/);
  });

  it("passes the parameters in CNI_* variables and the configuration on stdin, and parses the result", async () => {
    const dir = tempDir("tsbuild-cni-run-");
    fakePlugin(dir, "bridge", `echo '{"cniVersion":"1.0.0","ips":[{"address":"10.88.0.2/24","gateway":"10.88.0.1"}]}'`);
    const result = await execPlugin({ type: "bridge", cniVersion: "1.0.0", name: "net", bridge: "br" }, { ...invocation(dir), command: "ADD" }, "in a test");
    expect(result?.ips?.[0]?.address).toBe("10.88.0.2/24");
    expect(readFileSync(join(dir, "calls.log"), "utf8")).toBe(`ADD bridge c1 /run/tsbuild/netns/c1 eth0 ${dir}\n`);
    expect(JSON.parse(readFileSync(join(dir, "bridge.stdin"), "utf8"))).toEqual({ type: "bridge", cniVersion: "1.0.0", name: "net", bridge: "br" });
  });

  it("turns the spec's error object into an error naming the plugin, what it said and what to do", async () => {
    const dir = tempDir("tsbuild-cni-err-");
    fakePlugin(dir, "bridge", `echo '{"cniVersion":"1.0.0","code":11,"msg":"could not add IP address to \\"br\\"","details":"permission denied"}'; exit 1`);
    const error = (await execPlugin({ type: "bridge" }, { ...invocation(dir), command: "ADD" }, "while attaching x").catch((e: unknown) => e)) as PluginError;
    expect(error).toBeInstanceOf(PluginError);
    expect(error.code).toBe("PLUGIN_FAILED");
    expect(error.plugin).toBe("bridge");
    expect(error.cniCode).toBe(11);
    expect(error.message).toBe('the CNI plugin "bridge" failed to ADD while attaching x: could not add IP address to "br": permission denied');
    expect(error.hint).toContain("root");
  });

  it("reports stderr when a plugin fails without an error object, and a result that is not JSON", async () => {
    const dir = tempDir("tsbuild-cni-raw-");
    fakePlugin(dir, "firewall", "echo 'iptables: executable file not found in $PATH' >&2; exit 2");
    fakePlugin(dir, "loopback", "echo garbage");
    const failed = (await execPlugin({ type: "firewall" }, { ...invocation(dir), command: "ADD" }, "here").catch((e: unknown) => e)) as PluginError;
    expect(failed.message).toContain("iptables: executable file not found in $PATH");
    expect(failed.hint).toBe("install iptables (apt-get install iptables)");
    const garbled = (await execPlugin({ type: "loopback" }, { ...invocation(dir), command: "ADD" }, "here").catch((e: unknown) => e)) as PluginError;
    expect(garbled.message).toContain('it printed something that is not a CNI result: "garbage\\n"');
  });

  it("kills a plugin that does not answer", async () => {
    const dir = tempDir("tsbuild-cni-hang-");
    fakePlugin(dir, "bridge", "exec sleep 30");
    const error = (await execPlugin({ type: "bridge" }, { ...invocation(dir), command: "ADD", timeoutMs: 300 }, "here").catch((e: unknown) => e)) as PluginError;
    expect(error.message).toContain("no answer after 300 ms");
  });

  it("runs a list in order on ADD, each plugin getting the list's name and version and the previous result", async () => {
    const dir = tempDir("tsbuild-cni-list-");
    fakePlugin(dir, "first", `echo '{"cniVersion":"1.0.0","ips":[{"address":"10.1.0.2/24"}]}'`);
    fakePlugin(dir, "second", `echo '{"cniVersion":"1.0.0","ips":[{"address":"10.1.0.2/24"}],"dns":{}}'`);
    const list: NetworkConfigList = { cniVersion: "1.0.0", name: "mynet", plugins: [{ type: "first", cniVersion: "0.3.1", name: "other" }, { type: "second" }] };
    const seen: unknown[] = [];
    const result = await addList(list, invocation(dir), "here", async (r) => {
      seen.push(r);
    });
    expect(seen).toHaveLength(2);
    expect(result.dns).toEqual({});
    const first = JSON.parse(readFileSync(join(dir, "first.stdin"), "utf8")) as Record<string, unknown>;
    const second = JSON.parse(readFileSync(join(dir, "second.stdin"), "utf8")) as Record<string, unknown>;
    expect(first).toMatchObject({ type: "first", cniVersion: "1.0.0", name: "mynet" });
    expect(first.prevResult).toBeUndefined();
    expect(second).toMatchObject({ type: "second", cniVersion: "1.0.0", name: "mynet", prevResult: { ips: [{ address: "10.1.0.2/24" }] } });
  });

  it("runs every plugin of a list in reverse order on DEL, with the ADD result, even after a failure", async () => {
    const dir = tempDir("tsbuild-cni-del-");
    fakePlugin(dir, "first", "exit 0");
    fakePlugin(dir, "second", `echo '{"code":999,"msg":"boom"}'; exit 1`);
    fakePlugin(dir, "third", "exit 0");
    const list: NetworkConfigList = { cniVersion: "1.0.0", name: "mynet", plugins: [{ type: "first" }, { type: "second" }, { type: "third" }] };
    const errors = await delList(list, invocation(dir), { cniVersion: "1.0.0", ips: [{ address: "10.1.0.2/24" }] }, "here");
    expect(errors.map((e) => e.message)).toEqual(['the CNI plugin "second" failed to DEL here: boom']);
    const calls = readFileSync(join(dir, "calls.log"), "utf8").trim().split("\n").map((l) => l.split(" ").slice(0, 2).join(" "));
    expect(calls).toEqual(["DEL third", "DEL second", "DEL first"]);
    expect(JSON.parse(readFileSync(join(dir, "first.stdin"), "utf8"))).toMatchObject({ prevResult: { ips: [{ address: "10.1.0.2/24" }] } });
  });

  it("says what to do for the usual failures", () => {
    expect(pluginHint("bridge", 'failed to find plugin "host-local" in path [/x]')).toContain("containernetworking-plugins");
    expect(pluginHint("bridge", "failed to create bridge: operation not supported")).toContain("modprobe bridge veth");
    expect(pluginHint("bridge", "running [/usr/sbin/iptables -t nat -N CNI-x]: can't initialize iptables table `nat': Table does not exist")).toContain("modprobe br_netfilter");
    expect(pluginHint("bridge", "failed to allocate for range 0: no IP addresses available in range set")).toContain("subnet");
    expect(pluginHint("firewall", "something new")).toContain("netfilter");
    expect(new NetworkError("PLUGIN_NOT_FOUND", "x")).toBeInstanceOf(Error);
  });
});
