/** IPv4 networks as (address, prefix length) pairs: parsing, overlap, and picking a free /24. */

export interface Ipv4Network {
  /** The network address as an unsigned 32-bit number (host bits cleared). */
  base: number;
  prefix: number;
}

function parseAddress(text: string): number | undefined {
  const parts = text.split(".");
  if (parts.length !== 4) return undefined;
  let value = 0;
  for (const part of parts) {
    if (!/^\d{1,3}$/.test(part)) return undefined;
    const n = Number(part);
    if (n > 255) return undefined;
    value = value * 256 + n;
  }
  return value;
}

function mask(prefix: number): number {
  return prefix === 0 ? 0 : (0xffffffff << (32 - prefix)) >>> 0;
}

export function formatAddress(value: number): string {
  return [value >>> 24, (value >>> 16) & 255, (value >>> 8) & 255, value & 255].join(".");
}

/** "10.88.0.0/24" → network; a bare address is a /32. Undefined when malformed. */
export function parseNetwork(text: string): Ipv4Network | undefined {
  const [address, prefixText, extra] = text.trim().split("/");
  if (address === undefined || extra !== undefined) return undefined;
  const value = parseAddress(address);
  if (value === undefined) return undefined;
  let prefix = 32;
  if (prefixText !== undefined) {
    if (!/^\d{1,2}$/.test(prefixText)) return undefined;
    prefix = Number(prefixText);
    if (prefix > 32) return undefined;
  }
  return { base: (value & mask(prefix)) >>> 0, prefix };
}

export function formatNetwork(network: Ipv4Network): string {
  return `${formatAddress(network.base)}/${network.prefix}`;
}

/** The address `offset` after the network address (".1" is offset 1). */
export function hostAddress(network: Ipv4Network, offset: number): string {
  return formatAddress((network.base + offset) >>> 0);
}

export function overlaps(a: Ipv4Network, b: Ipv4Network): boolean {
  const m = mask(Math.min(a.prefix, b.prefix));
  return ((a.base & m) >>> 0) === ((b.base & m) >>> 0);
}

export function contains(network: Ipv4Network, address: string): boolean {
  const value = parseAddress(address);
  return value !== undefined && ((value & mask(network.prefix)) >>> 0) === network.base;
}

/** The /24s tried in order for a new bridge: 10.88.0.0/24, 10.88.1.0/24, ... 10.88.255.0/24. */
export function* defaultSubnetCandidates(): Generator<Ipv4Network> {
  const base = parseAddress("10.88.0.0") as number;
  for (let i = 0; i < 256; i++) yield { base: base + i * 256, prefix: 24 };
}

/** The first candidate that overlaps none of `taken` (routes and addresses of the host, other bridges' subnets). */
export function pickFreeSubnet(taken: readonly Ipv4Network[], candidates: Iterable<Ipv4Network> = defaultSubnetCandidates()): Ipv4Network | undefined {
  for (const candidate of candidates) {
    if (!taken.some((t) => overlaps(candidate, t))) return candidate;
  }
  return undefined;
}
