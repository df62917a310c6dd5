import ipaddr from "ipaddr.js";
import type { IPv4, IPv6 } from "ipaddr.js";
import { HotCache } from "./hot-cache.js";

type Address = IPv4 | IPv6;

/**
 * Parses a client address. IPv4-mapped IPv6 (`::ffff:203.0.113.45`, as Node reports IPv4
 * peers on dual-stack sockets) becomes plain IPv4 so one allowlist entry matches both.
 * Returns null for anything that is not an address.
 */
export function parseIp(value: string): Address | null {
  if (!ipaddr.isValid(value)) return null;
  try {
    return ipaddr.process(value);
  } catch {
    return null;
  }
}

/**
 * Normalises an allowlist entry (`203.0.113.45`, `198.51.100.0/24`, `2001:db8::/32`) to its
 * canonical CIDR text, or returns null when it is neither an address nor a valid range.
 *
 * @example
 * normalizeCidr("203.0.113.45");    // "203.0.113.45/32"
 * normalizeCidr("10.0.0.0/33");     // null
 */
export function normalizeCidr(entry: string): string | null {
  const text = entry.trim();
  if (text.includes("/")) {
    if (!ipaddr.isValidCIDR(text)) return null;
    const [addr, bits] = ipaddr.parseCIDR(text);
    const a = addr.kind() === "ipv6" && (addr as IPv6).isIPv4MappedAddress() ? (addr as IPv6).toIPv4Address() : addr;
    const prefix = a.kind() !== addr.kind() ? bits - 96 : bits;
    if (prefix < 0) return null;
    return `${a.toString()}/${prefix}`;
  }
  const a = parseIp(text);
  return a ? `${a.toString()}/${a.kind() === "ipv4" ? 32 : 128}` : null;
}

/** A compiled allowlist: true when the address falls in one of its ranges. */
export type IpMatcher = (address: Address) => boolean;

/** Compiled allowlists by their entries: keys and accounts with the same list share one matcher. */
const compiled = new HotCache<string, IpMatcher>(10_000);

/** An IPv4 address as an unsigned 32-bit number. */
const v4Number = (address: IPv4): number => {
  const o = address.octets;
  return ((o[0]! << 24) | (o[1]! << 16) | (o[2]! << 8) | o[3]!) >>> 0;
};

/**
 * Compiles normalised CIDR entries once, so matching does no parsing. Lists with the same
 * entries share one matcher (held for up to 10,000 distinct lists): a verification then
 * reaches one small object however many keys carry the list.
 *
 * IPv4 ranges are matched by hand, as a network number and a mask, rather than with
 * ipaddr.js's `match`, which walks both addresses' octet arrays per range: this runs on every
 * verification of a key with an allowlist. IPv6 ranges use ipaddr.js. Entries are parsed by
 * ipaddr.js either way.
 */
export function compileAllowlist(entries: readonly string[]): IpMatcher | null {
  if (entries.length === 0) return null;
  const id = entries.join(",");
  let matcher = compiled.get(id);
  if (matcher === undefined) compiled.set(id, matcher = buildMatcher(entries));
  return matcher;
}

function buildMatcher(entries: readonly string[]): IpMatcher {
  // Pairs of (network, mask) for IPv4; [network, prefix] for IPv6.
  const v4: number[] = [];
  const v6: Array<[IPv6, number]> = [];
  for (const entry of entries) {
    const [net, bits] = ipaddr.parseCIDR(entry);
    if (net.kind() === "ipv4") {
      const mask = bits === 0 ? 0 : (~0 << (32 - bits)) >>> 0;
      v4.push((v4Number(net as IPv4) & mask) >>> 0, mask);
    } else {
      v6.push([net as IPv6, bits]);
    }
  }
  return (address) => {
    if (address.kind() === "ipv4") {
      const n = v4Number(address as IPv4);
      for (let i = 0; i < v4.length; i += 2) if (((n & v4[i + 1]!) >>> 0) === v4[i]) return true;
      return false;
    }
    for (const [net, bits] of v6) if ((address as IPv6).match(net, bits)) return true;
    return false;
  };
}

export type { Address as IpAddress };
