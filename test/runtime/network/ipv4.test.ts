import { describe, expect, it } from "vitest";
import { defaultNetworkResolvConf } from "../../../src/runtime/network/index.ts";
import { contains, formatNetwork, hostAddress, overlaps, parseNetwork, pickFreeSubnet, type Ipv4Network } from "../../../src/runtime/network/ipv4.ts";

const net = (text: string): Ipv4Network => parseNetwork(text) as Ipv4Network;

describe("IPv4 networks", () => {
  it("parses CIDRs (clearing host bits) and bare addresses, and refuses malformed ones", () => {
    expect(formatNetwork(net("10.88.3.7/24"))).toBe("10.88.3.0/24");
    expect(formatNetwork(net("192.0.2.2"))).toBe("192.0.2.2/32");
    expect(formatNetwork(net("0.0.0.0/0"))).toBe("0.0.0.0/0");
    for (const bad of ["10.88.0.0/33", "10.88.0/24", "10.256.0.0/16", "fd00::/64", "10.0.0.0/24/1", "a.b.c.d", ""]) {
      expect(parseNetwork(bad), bad).toBeUndefined();
    }
  });

  it("tells overlapping networks apart and computes host addresses", () => {
    expect(overlaps(net("10.88.0.0/24"), net("10.88.0.128/25"))).toBe(true);
    expect(overlaps(net("10.88.0.0/24"), net("10.0.0.0/8"))).toBe(true);
    expect(overlaps(net("10.88.0.0/24"), net("10.88.1.0/24"))).toBe(false);
    expect(overlaps(net("10.88.0.0/24"), net("10.88.0.1"))).toBe(true);
    expect(hostAddress(net("10.88.7.0/24"), 1)).toBe("10.88.7.1");
    expect(contains(net("10.88.7.0/24"), "10.88.7.200")).toBe(true);
    expect(contains(net("10.88.7.0/24"), "10.88.8.1")).toBe(false);
  });

  it("picks the first 10.88.N.0/24 that no host route or address overlaps", () => {
    expect(formatNetwork(pickFreeSubnet([net("192.0.2.0/24")]) as Ipv4Network)).toBe("10.88.0.0/24");
    expect(formatNetwork(pickFreeSubnet([net("10.88.0.0/23"), net("10.88.2.5")]) as Ipv4Network)).toBe("10.88.3.0/24");
    expect(pickFreeSubnet([net("10.88.0.0/16")])).toBeUndefined();
    expect(pickFreeSubnet([net("10.0.0.0/8")])).toBeUndefined();
  });
});

describe("the resolv.conf of the default network", () => {
  it("drops loopback nameservers, which the namespace cannot reach", () => {
    expect(defaultNetworkResolvConf("search lan\nnameserver 127.0.0.53\nnameserver 192.0.2.53\noptions edns0\n")).toBe(
      "search lan\nnameserver 192.0.2.53\noptions edns0\n",
    );
  });

  it("falls back to public resolvers when only loopback ones were configured, as Docker does", () => {
    expect(defaultNetworkResolvConf("nameserver 127.0.0.53\nnameserver ::1\n")).toBe("nameserver 8.8.8.8\nnameserver 8.8.4.4\n");
    expect(defaultNetworkResolvConf("")).toBe("nameserver 8.8.8.8\nnameserver 8.8.4.4\n");
  });

  it("keeps a configuration without loopback nameservers as it is", () => {
    const text = "nameserver 10.255.255.53\n";
    expect(defaultNetworkResolvConf(text)).toBe(text);
  });
});
